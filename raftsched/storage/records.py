"""Record framing of every file the disk layer writes (see docs/storage.md).

A record is a 12-byte header followed by its body, little-endian:

    offset 0   u32  crc    CRC32C (Castagnoli) over bytes [4, 12 + length): the rest of the
                           header and the body
    offset 4   u32  length of the body in bytes
    offset 8   u8   type   a `RecordType`
    offset 9   2B   magic  b"RS": lets recovery find a later record after a bad header
    offset 11  u8   check  XOR of the bytes at offsets 4..8 (length, type) and 0xA5

The check byte makes the header self-validating, so a record whose header is sound but
whose body runs past the end of the file is certainly a partial write (a torn tail), while
a flipped length byte shows up as a bad header rather than as a record that seems to run
past the end (which would hide the good records after it).

`inspect_at` says what is at an offset: a whole valid record, or why not (`Bad`: partial,
bad header, or bad CRC). `classify_stop` decides whether a bad record is a torn tail
(nothing valid after it) or corruption (a valid record follows). What a stop means for the
segment (truncate or refuse) is recovery's job, not this module's.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import crc32c as _crc32c

MAGIC: Final = b"RS"
MAGIC_OFFSET: Final = 9
HEADER: Final = struct.Struct("<III")  # crc, length, tag = type | magic << 8 | check << 24
HEADER_BYTES: Final = HEADER.size
MAX_BODY_BYTES: Final = 1 << 30  # no record is larger; a bigger length is a bad header
CHECK_SEED: Final = 0xA5
_MAGIC_TAG: Final = int.from_bytes(MAGIC, "little") << 8
TYPE_AND_MAGIC: Final = 0xFFFFFF  # tag mask without the check byte
_LENGTH_AND_TAG: Final = struct.Struct("<II")
crc32c = _crc32c.crc32c


class RecordType(enum.IntEnum):
    """Record types. On disk: never renumber."""

    ENTRY = 1  # body: ENTRY_HEAD (term, index, kind) + data
    HARD_STATE = 2  # body: HARD_STATE (term, vote, commit)
    SNAPSHOT = 3  # body: SNAPSHOT_REF (index, term, reset): a snapshot file is now current
    COMPACT = 4  # body: COMPACT (index, term): entries up to index are discarded
    SEGMENT_HEADER = 5  # body: SEGMENT_HEADER: the whole state when the segment was created
    SEAL = 6  # body: see seal.py: the segment's summary, written as its last record
    IDENTITY = 7  # body: IDENTITY (cluster_id, node_id)
    SNAPSHOT_FILE = 8  # body: snapshot meta (wire codec) length + meta + data


ENTRY_TAG: Final = int(RecordType.ENTRY) | _MAGIC_TAG  # tag & TYPE_AND_MAGIC of an entry
TAG_TO_TYPE: Final[dict[int, RecordType]] = {int(t) | _MAGIC_TAG: t for t in RecordType}


def check_byte(length: int, rtype: int) -> int:
    """The header's check byte: XOR of the length's four bytes, the type and a seed."""
    return (length ^ length >> 8 ^ length >> 16 ^ length >> 24 ^ rtype ^ CHECK_SEED) & 0xFF


def tag(length: int, rtype: int) -> int:
    return rtype | _MAGIC_TAG | check_byte(length, rtype) << 24


ENTRY_HEAD: Final = struct.Struct("<QQB")  # term, index, kind
HARD_STATE: Final = struct.Struct("<QQQ")  # term, vote, commit
SNAPSHOT_REF: Final = struct.Struct("<QQQB")  # index, term, file number, reset (1: log replaced)
COMPACT: Final = struct.Struct("<QQ")  # index, term
# seq, then the state (WalState): hard state (term, vote, commit), snapshot (index, term,
# file number; 0: no file yet), log base (index, term: the last discarded entry), last index.
SEGMENT_HEADER: Final = struct.Struct("<QQQQQQQQQQ")
IDENTITY: Final = struct.Struct("<QQ")  # cluster_id, node_id


@dataclass(frozen=True, slots=True)
class WalState:
    """Everything but the entries, as of some point of the log: what a segment header and a
    seal record carry so that deleting older segments loses nothing."""

    hard_term: int
    hard_vote: int
    hard_commit: int
    snap_index: int
    snap_term: int
    snap_number: int
    base_index: int
    base_term: int
    last_index: int

    def pack(self, seq: int) -> bytes:
        return SEGMENT_HEADER.pack(
            seq,
            self.hard_term,
            self.hard_vote,
            self.hard_commit,
            self.snap_index,
            self.snap_term,
            self.snap_number,
            self.base_index,
            self.base_term,
            self.last_index,
        )

    @classmethod
    def unpack(cls, buf: bytes | memoryview, offset: int) -> tuple[int, WalState]:
        seq, *fields = SEGMENT_HEADER.unpack_from(buf, offset)
        return seq, cls(*fields)


def encode(rtype: RecordType, body: bytes) -> bytes:
    """One framed record."""
    assert len(body) <= MAX_BODY_BYTES, "record body too large"
    rest = _LENGTH_AND_TAG.pack(len(body), tag(len(body), int(rtype)))
    return crc32c(body, crc32c(rest)).to_bytes(4, "little") + rest + body


_ENTRY_REST: Final = struct.Struct("<IIQQB")  # length, tag, then ENTRY_HEAD


def encode_entry(term: int, index: int, kind: int, data: bytes) -> bytes:
    """An ENTRY record, built with one pack and two CRC calls (the hot path)."""
    length = ENTRY_HEAD.size + len(data)
    rest = _ENTRY_REST.pack(length, tag(length, RecordType.ENTRY), term, index, kind)
    return b"".join((crc32c(data, crc32c(rest)).to_bytes(4, "little"), rest, data))


class StopKind(enum.Enum):
    END = "end"  # the buffer ends exactly after a valid record
    TORN = "torn"  # a partial or bad record with nothing valid after it
    CORRUPT = "corrupt"  # a bad record followed by a valid one


@dataclass(frozen=True, slots=True)
class Stop:
    kind: StopKind
    offset: int  # where the first bad or partial record starts
    reason: str  # what was expected there


class BadKind(enum.Enum):
    PARTIAL = "partial"  # the buffer ends inside the header, or inside a sound record
    HEADER = "header"  # magic, type, length or check byte wrong
    CRC = "crc"  # a sound header and a whole extent, but the CRC does not match


@dataclass(frozen=True, slots=True)
class Bad:
    kind: BadKind
    reason: str  # what was expected
    end: int  # for CRC: where the record's extent ends


def inspect_at(buf: bytes | memoryview, offset: int) -> tuple[RecordType, int] | Bad:
    """The record at `offset` as (type, end offset) when it is whole and valid, else `Bad`."""
    size = len(buf)
    if offset + HEADER_BYTES > size:
        return Bad(
            BadKind.PARTIAL,
            f"a {HEADER_BYTES}-byte record header, found {size - offset} bytes before the end",
            size,
        )
    crc, length, raw_tag = HEADER.unpack_from(buf, offset)
    rtype = TAG_TO_TYPE.get(raw_tag & TYPE_AND_MAGIC)
    if rtype is None or length > MAX_BODY_BYTES or raw_tag >> 24 != check_byte(length, rtype):
        return Bad(BadKind.HEADER, "a record header (magic, known type, length, check)", 0)
    end = offset + HEADER_BYTES + length
    if end > size:
        found = size - offset - HEADER_BYTES
        return Bad(BadKind.PARTIAL, f"a {length}-byte record body, found {found} bytes", size)
    actual = crc32c(memoryview(buf)[offset + 4 : end])
    if actual != crc:
        return Bad(BadKind.CRC, f"CRC32C {crc:#010x} over the record, computed {actual:#010x}", end)
    return rtype, end


def check_at(buf: bytes | memoryview, offset: int) -> tuple[RecordType, int] | str:
    """`inspect_at` with the reason as text, for callers that only accept or refuse."""
    found = inspect_at(buf, offset)
    return found.reason if isinstance(found, Bad) else found


def find_valid_from(buf: bytes | memoryview, start: int) -> int | None:
    """The offset of the first whole, valid record starting at or after `start`, if any.
    Scans for the magic in C (bytes.find) and verifies each candidate's header and CRC."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = start
    while True:
        hit = data.find(MAGIC, pos + MAGIC_OFFSET)
        if hit < 0:
            return None
        candidate = hit - MAGIC_OFFSET
        if not isinstance(inspect_at(data, candidate), Bad):
            return candidate
        pos = candidate + 1


def classify_stop(buf: bytes | memoryview, offset: int, bad: Bad) -> Stop:
    """A bad or partial record at `offset`: torn when nothing valid follows it.

    A partial record is torn (whatever follows lies inside its own extent: its payload);
    after a bad CRC the search starts at the record's end; after a bad header, anywhere."""
    if bad.kind is BadKind.PARTIAL:
        return Stop(StopKind.TORN, offset, bad.reason)
    later = find_valid_from(buf, bad.end if bad.kind is BadKind.CRC else offset + 1)
    if later is None:
        return Stop(StopKind.TORN, offset, bad.reason)
    return Stop(
        StopKind.CORRUPT, offset, f"{bad.reason} (a valid record follows at offset {later})"
    )

"""Record framing of every file the disk layer writes (see docs/storage.md).

A record is a 12-byte header followed by its body, little-endian:

    offset 0   u32  crc    CRC32C (Castagnoli) over bytes [4, 12 + length): the rest of the
                           header and the body, so a flipped length or type is caught too
    offset 4   u32  length of the body in bytes
    offset 8   u8   type   a `RecordType`
    offset 9   3B   magic  b"RSW": lets recovery find a later record after a bad header
    offset 12  body

`scan` walks a buffer of records and classifies where it stops: the clean end, a torn tail
(the buffer ends inside a record, or a bad record with nothing valid after it), or
corruption (a bad record followed by a valid one). Deciding what a stop means for the
segment (truncate or refuse) is recovery's job, not this module's.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import crc32c as _crc32c

MAGIC: Final = b"RSW"
HEADER: Final = struct.Struct("<III")  # crc, length, type | magic << 8
HEADER_BYTES: Final = HEADER.size
MAX_BODY_BYTES: Final = 1 << 30  # no record is larger; a bigger length is a bad header
_MAGIC_TAG: Final = int.from_bytes(MAGIC, "little") << 8
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


ENTRY_TAG: Final = int(RecordType.ENTRY) | _MAGIC_TAG
TAG_TO_TYPE: Final[dict[int, RecordType]] = {int(t) | _MAGIC_TAG: t for t in RecordType}

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
    rest = _LENGTH_AND_TAG.pack(len(body), int(rtype) | _MAGIC_TAG)
    return crc32c(body, crc32c(rest)).to_bytes(4, "little") + rest + body


_ENTRY_REST: Final = struct.Struct("<IIQQB")  # length, tag, then ENTRY_HEAD


def encode_entry(term: int, index: int, kind: int, data: bytes) -> bytes:
    """An ENTRY record, built with one pack and two CRC calls (the hot path)."""
    rest = _ENTRY_REST.pack(ENTRY_HEAD.size + len(data), ENTRY_TAG, term, index, kind)
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


def check_at(buf: bytes | memoryview, offset: int) -> tuple[RecordType, int] | str:
    """The record at `offset` as (type, end offset) when it is whole and valid, else why
    not (a short text naming what was expected)."""
    size = len(buf)
    if offset + HEADER_BYTES > size:
        return f"a {HEADER_BYTES}-byte record header, found {size - offset} bytes before the end"
    crc, length, tag = HEADER.unpack_from(buf, offset)
    rtype = TAG_TO_TYPE.get(tag)
    if rtype is None or length > MAX_BODY_BYTES:
        return "a record header (magic, known type, sane length)"
    end = offset + HEADER_BYTES + length
    if end > size:
        return f"a {length}-byte record body, found {size - offset - HEADER_BYTES} bytes"
    actual = crc32c(memoryview(buf)[offset + 4 : end])
    if actual != crc:
        return f"CRC32C {crc:#010x} over the record, computed {actual:#010x}"
    return rtype, end


def find_valid_after(buf: bytes | memoryview, offset: int) -> int | None:
    """The offset of the first whole, valid record starting after `offset`, if any. Scans
    for the magic in C (bytes.find) and verifies each candidate's CRC."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = offset + 1
    while True:
        hit = data.find(MAGIC, pos + 9)
        if hit < 0:
            return None
        start = hit - 9
        if start > offset and not isinstance(check_at(data, start), str):
            return start
        pos = start + 1


def classify_stop(buf: bytes | memoryview, offset: int, reason: str) -> Stop:
    """A bad or partial record at `offset`: torn when nothing valid follows it."""
    later = find_valid_after(buf, offset)
    if later is None:
        return Stop(StopKind.TORN, offset, reason)
    return Stop(StopKind.CORRUPT, offset, f"{reason} (a valid record follows at offset {later})")

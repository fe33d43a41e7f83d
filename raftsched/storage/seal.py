"""The SEAL record: a finished segment's summary, so opening need not replay its records.

When a sync leaves the active segment at or above its size, a SEAL record is appended in
the same write (no extra fsync) and the next write starts a new segment. Its body:

    SEGMENT_HEADER layout   seq and the WalState after the segment's last record
    u64 lo                  first index of the segment's run (live entries it holds)
    u32 count               entries in the run
    u32 x count             byte offset of each entry's record in this file
    u32 runs                term runs, then per run: u32 position in the run, u64 term
    u32 file_crc            CRC32C of the file's bytes before the SEAL record
    u64 seal_offset         where the SEAL record starts (the file's last 8 bytes)

Opening reads a sealed file, checks `file_crc` in one C call (catching a flipped byte
anywhere, then a record scan names the offset) and takes the run from the summary: 16
bytes per entry copied from arrays, nothing decoded.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from typing import Final

from . import records
from .records import WalState

_LO_COUNT: Final = struct.Struct("<QI")
_U32: Final = struct.Struct("<I")
_TERM_RUN: Final = struct.Struct("<IQ")
_TAIL: Final = struct.Struct("<IQ")  # file_crc, seal_offset
MAX_SEALED_OFFSET: Final = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class SealSummary:
    seq: int
    state: WalState
    lo: int
    offsets: array[int]  # typecode "Q"
    terms: array[int]  # typecode "Q"
    file_crc: int


def encode_seal(
    *,
    seq: int,
    state: WalState,
    lo: int,
    offsets: array[int],
    terms: array[int],
    file_crc: int,
    seal_offset: int,
) -> bytes:
    assert len(offsets) == len(terms)
    assert not offsets or offsets[-1] < seal_offset <= MAX_SEALED_OFFSET
    runs: list[bytes] = []
    previous = -1
    for pos, term in enumerate(terms):
        if term != previous:
            runs.append(_TERM_RUN.pack(pos, term))
            previous = term
    body = b"".join(
        (
            state.pack(seq),
            _LO_COUNT.pack(lo, len(offsets)),
            array("I", offsets).tobytes(),
            _U32.pack(len(runs)),
            *runs,
            _TAIL.pack(file_crc, seal_offset),
        )
    )
    return records.encode(records.RecordType.SEAL, body)


def find_seal(buf: bytes) -> int | None:
    """The offset of the SEAL record ending `buf`, if the file is sealed."""
    if len(buf) < records.HEADER_BYTES + _TAIL.size:
        return None
    seal_offset: int = struct.unpack_from("<Q", buf, len(buf) - 8)[0]
    if seal_offset > len(buf) - records.HEADER_BYTES:
        return None
    checked = records.check_at(buf, seal_offset)
    if isinstance(checked, str) or checked != (records.RecordType.SEAL, len(buf)):
        return None
    return seal_offset


def decode_seal(buf: bytes, seal_offset: int) -> SealSummary:
    """The summary of the (already CRC-checked) SEAL record at `seal_offset`. Raises
    ValueError when its inner layout is inconsistent."""
    pos = seal_offset + records.HEADER_BYTES
    seq, state = WalState.unpack(buf, pos)
    pos += records.SEGMENT_HEADER.size
    lo, count = _LO_COUNT.unpack_from(buf, pos)
    pos += _LO_COUNT.size
    narrow = array("I")
    narrow.frombytes(buf[pos : pos + 4 * count])
    if len(narrow) != count:
        raise ValueError("offsets run past the record")
    pos += 4 * count
    (nruns,) = _U32.unpack_from(buf, pos)
    pos += 4
    terms = array("Q")
    starts = [_TERM_RUN.unpack_from(buf, pos + i * _TERM_RUN.size) for i in range(nruns)]
    pos += nruns * _TERM_RUN.size
    for i, (start, term) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < nruns else count
        if start != len(terms) or stop <= start:
            raise ValueError("term runs are not consecutive")
        terms.extend(array("Q", [term]) * (stop - start))
    if len(terms) != count:
        raise ValueError("term runs do not cover the run")
    file_crc, stored_offset = _TAIL.unpack_from(buf, pos)
    if pos + _TAIL.size != len(buf) or stored_offset != seal_offset:
        raise ValueError("seal layout does not end the file")
    return SealSummary(seq, state, lo, array("Q", narrow), terms, file_crc)

"""Opening a data directory: rebuild the log index and state, repairing only a torn tail.

Rules (each decision is logged on logger "raftsched.storage"):
- Segments are taken in `seq` order; a missing seq refuses (a segment was lost).
- Every segment starts with a SEGMENT_HEADER whose state must equal the state replayed from
  the segments before it (the first surviving segment initializes the state from its own).
- A sealed segment whose file CRC matches is applied from its SEAL summary; otherwise its
  records are replayed one by one.
- A bad or partial record in the LAST segment with no valid record after it is a torn tail
  (a crash during the last write): the file is truncated there. A bad record anywhere else,
  or one followed by a valid record, refuses with `CorruptStorageError(file, offset, what)`.
  A last segment without a complete header (a crash while creating it) is removed.
- Entries must continue the log (index <= last + 1); an entry at or below the last index
  replaces the tail from there (a conflicting append). At the end, every index from the
  base to the last must be held by some segment, or the open refuses.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Final

from ..raft.types import HardState
from . import records
from .errors import CorruptStorageError
from .files import DiskIO
from .logindex import LogIndex
from .records import Bad, RecordType, Stop, StopKind, WalState
from .seal import SealSummary, decode_seal, find_seal
from .segment import SEGMENT_NAME, Segment

_QQ: Final = struct.Struct("<QQ")


@dataclass(slots=True)
class SnapRef:
    index: int
    term: int
    number: int  # 0: no file (the empty initial snapshot)


@dataclass(slots=True)
class Recovered:
    segments: list[Segment]
    index: LogIndex
    hard_state: HardState
    snap: SnapRef


def list_segments(data_dir: Path) -> list[tuple[int, int, Path]]:
    found = []
    for path in data_dir.iterdir():
        match = SEGMENT_NAME.match(path.name)
        if match:
            found.append((int(match[1], 16), int(match[2], 16), path))
    return sorted(found)


class _Replay:
    """The state machine that replays segments in order."""

    def __init__(self, io: DiskIO, log: logging.Logger) -> None:
        self.io = io
        self.log = log
        self.index: LogIndex | None = None
        self.hard_state = HardState()
        self.snap = SnapRef(0, 0, 0)

    def state(self) -> WalState:
        assert self.index is not None
        hs = self.hard_state
        return WalState(
            hs.term,
            hs.vote,
            hs.commit,
            self.snap.index,
            self.snap.term,
            self.snap.number,
            self.index.base_index,
            self.index.base_term,
            self.index.last,
        )

    def set_state(self, state: WalState) -> None:
        self.hard_state = HardState(state.hard_term, state.hard_vote, state.hard_commit)
        self.snap = SnapRef(state.snap_index, state.snap_term, state.snap_number)

    # -- one segment ----------------------------------------------------------------------

    def segment(self, seg: Segment, buf: bytes, is_last: bool) -> bool:
        """Replay one segment file; False when it was a torn creation and got removed."""
        checked = records.inspect_at(buf, 0)
        if isinstance(checked, Bad):
            stop = records.classify_stop(buf, 0, checked)
            if is_last and stop.kind is StopKind.TORN:
                self.log.warning(
                    "storage recovery: %s has no complete header (%s): a crash while creating"
                    " it; removing the file",
                    seg.path,
                    checked.reason,
                )
                self.io.unlink(seg.path)
                self.io.fsync_dir(seg.path.parent)
                return False
            raise CorruptStorageError(seg.path, 0, stop.reason)
        if checked[0] is not RecordType.SEGMENT_HEADER:
            raise CorruptStorageError(seg.path, 0, f"a SEGMENT_HEADER, found {checked[0].name}")
        header_end = checked[1]
        seq, state = WalState.unpack(buf, records.HEADER_BYTES)
        if seq != seg.seq or state.last_index + 1 != seg.first:
            raise CorruptStorageError(
                seg.path,
                0,
                f"a header for seq {seg.seq} first index {seg.first} (the file name), found seq"
                f" {seq} first index {state.last_index + 1}",
            )
        if self.index is None:
            self.index = LogIndex(state.base_index, state.base_term, state.last_index)
            self.set_state(state)
            self.log.info(
                "storage recovery: log starts at %s (base index %d, last index %d at its creation)",
                seg.path.name,
                state.base_index,
                state.last_index,
            )
        elif state != self.state():
            raise CorruptStorageError(
                seg.path,
                0,
                f"a header state equal to the state replayed from the earlier segments"
                f" ({self.state()}), found {state}: a segment is missing or was altered",
            )
        seal_offset = find_seal(buf)
        if seal_offset is not None:
            summary = self._summary(seg, buf, seal_offset)
            if summary is not None:
                self.log.debug("storage recovery: %s indexed from its SEAL", seg.path.name)
                self._apply_summary(seg, summary)
                seg.sealed = True
                seg.durable_bytes = seg.end = len(buf)
                return True
        self._records(seg, buf, header_end, is_last)
        self.log.info(
            "storage recovery: replayed %d records of %s (%s segment)",
            seg.records,
            seg.path.name,
            "the open" if is_last else "an unsealed",
        )
        return True

    def _summary(self, seg: Segment, buf: bytes, seal_offset: int) -> SealSummary | None:
        try:
            summary = decode_seal(buf, seal_offset)
        except (ValueError, struct.error) as exc:
            raise CorruptStorageError(
                seg.path, seal_offset, f"a consistent SEAL record: {exc}"
            ) from exc
        if records.crc32c(memoryview(buf)[:seal_offset]) == summary.file_crc:
            return summary
        self.log.warning(
            "storage recovery: %s fails its whole-file CRC32C; scanning its records to find"
            " the damage",
            seg.path,
        )
        return None

    def _apply_summary(self, seg: Segment, s: SealSummary) -> None:
        index = self.index
        assert index is not None
        count = len(s.offsets)
        reach = s.lo - 1 if count else s.state.last_index  # the earlier log must reach this
        if reach > index.last and reach > s.state.base_index:
            raise CorruptStorageError(
                seg.path,
                0,
                f"entries continuing the log after index {index.last}, found a run from {s.lo}",
            )
        index.truncate_after(max(index.base_index, min(index.last, reach)))
        if s.state.base_index > index.base_index:
            index.compact_to(s.state.base_index, s.state.base_term)
        if count:
            seg.lo, seg.offsets, seg.terms = s.lo, s.offsets, s.terms
            index.runs.append(seg)
            index.last = seg.hi - 1
        index.base_index, index.base_term = s.state.base_index, s.state.base_term
        index.last = s.state.last_index
        self.set_state(s.state)
        if self.state() != s.state:
            raise CorruptStorageError(
                seg.path, 0, f"a SEAL state consistent with its run, found {s.state}"
            )

    def _records(self, seg: Segment, buf: bytes, offset: int, is_last: bool) -> None:
        index = self.index
        assert index is not None
        view = memoryview(buf)
        size = len(buf)
        unpack_header = records.HEADER.unpack_from
        unpack_entry = _QQ.unpack_from
        crc32c = records.crc32c
        entry_tag = records.ENTRY_TAG
        type_and_magic = records.TYPE_AND_MAGIC
        hb = records.HEADER_BYTES
        count = 0
        while offset < size:
            count += 1
            # Fast path for well-formed ENTRY records continuing this segment's run (the
            # common case, inlined: it is the loop that bounds the open time); anything
            # else takes check_at and _record.
            if offset + hb <= size:
                crc, length, tag = unpack_header(buf, offset)
                end = offset + hb + length
                if (
                    tag & type_and_magic == entry_tag
                    and end <= size
                    and crc32c(view[offset + 4 : end]) == crc
                ):
                    term, idx = unpack_entry(buf, offset + hb)
                    if idx == index.last + 1 and seg.offsets:
                        seg.offsets.append(offset)
                        seg.terms.append(term)
                        index.last = idx
                    else:
                        self._entry(seg, offset, idx, term)
                    offset = end
                    continue
            checked = records.inspect_at(buf, offset)
            if isinstance(checked, Bad):
                self._stop(seg, records.classify_stop(buf, offset, checked), is_last)
                break
            rtype, end = checked
            self._record(seg, buf, offset, rtype, end)
            offset = end
        seg.durable_bytes = seg.end = min(offset, size)
        seg.records = count
        seg.crc = crc32c(view[: seg.end])

    def _entry(self, seg: Segment, offset: int, idx: int, term: int) -> None:
        index = self.index
        assert index is not None
        if idx > index.last + 1 or idx <= index.base_index:
            raise CorruptStorageError(
                seg.path,
                offset,
                f"an entry index in {index.base_index + 1}..{index.last + 1}, found {idx}",
            )
        if idx <= index.last:
            index.truncate_after(idx - 1)
        index.append(seg, idx, term, offset)

    def _record(self, seg: Segment, buf: bytes, offset: int, rtype: RecordType, end: int) -> None:
        index = self.index
        assert index is not None
        body = offset + records.HEADER_BYTES
        if rtype is RecordType.ENTRY:
            term, idx = _QQ.unpack_from(buf, body)
            self._entry(seg, offset, idx, term)
        elif rtype is RecordType.HARD_STATE:
            self.hard_state = HardState(*records.HARD_STATE.unpack_from(buf, body))
        elif rtype is RecordType.SNAPSHOT:
            snap_index, snap_term, number, reset = records.SNAPSHOT_REF.unpack_from(buf, body)
            self.snap = SnapRef(snap_index, snap_term, number)
            if reset:
                index.reset(snap_index, snap_term)
        elif rtype is RecordType.COMPACT:
            compact_index, compact_term = records.COMPACT.unpack_from(buf, body)
            if compact_index > index.base_index:
                index.compact_to(compact_index, compact_term)
        elif rtype is RecordType.SEAL and end == len(buf):
            raise CorruptStorageError(seg.path, offset, "a SEAL record matching the file's CRC")
        else:
            raise CorruptStorageError(seg.path, offset, f"a log record, found {rtype.name}")

    def _stop(self, seg: Segment, stop: Stop, is_last: bool) -> None:
        if stop.kind is StopKind.TORN and is_last and not seg.sealed:
            self.log.warning(
                "storage recovery: torn tail in %s at offset %d (%s): truncating the file there;"
                " nothing after it was ever acknowledged",
                seg.path,
                stop.offset,
                stop.reason,
            )
            self.io.truncate(seg.path, stop.offset)
            return
        where = "" if is_last else " (not the last segment, so no crash explains it)"
        raise CorruptStorageError(seg.path, stop.offset, stop.reason + where)


def recover(data_dir: Path, io: DiskIO, log: logging.Logger) -> Recovered | None:
    """Replay the segments of `data_dir`; None when it holds none (a new node)."""
    found = list_segments(data_dir)
    for (seq_a, _, path_a), (seq_b, _, path_b) in pairwise(found):
        if seq_b != seq_a + 1:
            raise CorruptStorageError(
                path_b, 0, f"segment seq {seq_a + 1} after {path_a.name}: a segment is missing"
            )
    replay = _Replay(io, log)
    segments: list[Segment] = []
    for i, (seq, first, path) in enumerate(found):
        seg = Segment(seq, first, path, on_disk=True)
        if replay.segment(seg, path.read_bytes(), is_last=i == len(found) - 1):
            segments.append(seg)
    if replay.index is None:
        return None
    missing = replay.index.first_missing()
    if missing is not None:
        raise CorruptStorageError(
            segments[0].path,
            0,
            f"a segment holding entry {missing} (the log runs from {replay.index.base_index + 1}"
            f" to {replay.index.last}): a segment is missing",
        )
    log.info(
        "storage recovery: %d segment(s), entries %d..%d, %s, snapshot at %d",
        len(segments),
        replay.index.base_index + 1,
        replay.index.last,
        replay.hard_state,
        replay.snap.index,
    )
    return Recovered(segments, replay.index, replay.hard_state, replay.snap)

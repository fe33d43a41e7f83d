"""Where each live log entry's newest record is: the in-memory index of the log.

The log is `base` (the last discarded entry: the snapshot's or the compaction's index and
term) followed by entries base+1 .. last. Each entry lives in the run of exactly one
segment; the runs of `runs` are in seq order and cover consecutive index ranges. Recovery
may see a *hole* for a while (the first surviving segment's header says the log reached an
index whose entries were in deleted segments); `first_missing` tells whether one remains.

Truncation (a conflicting append) and compaction only cut arrays; nothing is decoded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from .segment import Segment


class LogIndex:
    __slots__ = ("base_index", "base_term", "last", "runs")

    def __init__(self, base_index: int, base_term: int, last: int) -> None:
        assert last >= base_index
        self.base_index = base_index
        self.base_term = base_term
        self.last = last
        self.runs: list[Segment] = []

    def locate(self, index: int) -> tuple[Segment, int] | None:
        """The segment holding `index` and its position in the run, or None in a hole."""
        runs = self.runs
        if len(runs) == 1 or (runs and index >= runs[-1].lo):
            seg = runs[-1]
        else:
            pos = bisect_right([s.lo for s in runs], index) - 1
            if pos < 0:
                return None
            seg = runs[pos]
        if seg.lo <= index < seg.hi:
            return seg, index - seg.lo
        return None

    def term(self, index: int) -> int | None:
        """Term of `index` (base..last), None when it is in a hole."""
        if index == self.base_index:
            return self.base_term
        found = self.locate(index)
        if found is None:
            return None
        seg, pos = found
        return seg.terms[pos]

    def append(self, seg: Segment, index: int, term: int, offset: int) -> None:
        """Record entry `index` (== last + 1) at `offset` of `seg`, the newest segment."""
        assert index == self.last + 1, f"entry {index} after last {self.last}"
        if not seg.offsets:
            seg.lo = index
            assert not self.runs or self.runs[-1] is not seg
            assert not self.runs or self.runs[-1].seq < seg.seq
            self.runs.append(seg)
        seg.offsets.append(offset)
        seg.terms.append(term)
        self.last = index

    def truncate_after(self, index: int) -> None:
        """Drop entries > index (a conflicting append replaces them)."""
        assert index >= self.base_index, "cannot truncate below the compacted prefix"
        while self.runs and self.runs[-1].lo > index:
            seg = self.runs.pop()
            del seg.offsets[:]
            del seg.terms[:]
        if self.runs:
            seg = self.runs[-1]
            del seg.offsets[index + 1 - seg.lo :]
            del seg.terms[index + 1 - seg.lo :]
        self.last = min(self.last, index)

    def compact_to(self, index: int, term: int) -> None:
        """Discard entries <= index; `index` becomes the base (it may lie past `last`,
        when a snapshot replaces the whole log)."""
        assert index >= self.base_index
        while self.runs and self.runs[0].hi <= index + 1:
            seg = self.runs.pop(0)
            del seg.offsets[:]
            del seg.terms[:]
        if self.runs and self.runs[0].lo <= index:
            seg = self.runs[0]
            cut = index + 1 - seg.lo
            del seg.offsets[:cut]
            del seg.terms[:cut]
            seg.lo = index + 1
        self.base_index = index
        self.base_term = term
        self.last = max(self.last, index)

    def reset(self, index: int, term: int) -> None:
        """The whole log is replaced by a snapshot at (index, term)."""
        for seg in self.runs:
            del seg.offsets[:]
            del seg.terms[:]
        self.runs.clear()
        self.base_index = index
        self.base_term = term
        self.last = index

    def first_missing(self) -> int | None:
        """The lowest index in base+1..last that no run holds, if any (a hole)."""
        expected = self.base_index + 1
        for seg in self.runs:
            if seg.lo != expected:
                return expected
            expected = seg.hi
        return expected if expected <= self.last else None

    def segments_between(self, lo: int, hi: int) -> Iterator[tuple[Segment, int, int]]:
        """(segment, first position, end position) covering indexes [lo, hi) in order."""
        index = lo
        while index < hi:
            found = self.locate(index)
            assert found is not None, f"index {index} is in no run"
            seg, pos = found
            end = min(len(seg.offsets), pos + hi - index)
            yield seg, pos, end
            index += end - pos

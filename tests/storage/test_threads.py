"""One writer thread (appends with conflicts, snapshots, compaction, syncs) and a reader
thread (the core reading terms and entries) at the same time: every read sees a
consistent log, never a half-done write."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.types import Entry, EntryKind, HardState, Membership
from raftsched.storage import DiskStorage, disk


def _data(index: int, term: int) -> bytes:
    return b"%d/%d:" % (index, term) * 3


def test_reads_are_consistent_while_the_writer_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny decoded tail: most reads go to the segment files while they change.
    monkeypatch.setattr(disk, "CACHE_ENTRIES_MAX", 16)
    monkeypatch.setattr(disk, "CACHE_BYTES_MAX", 2048)
    storage = DiskStorage.open(tmp_path, segment_bytes=8192)
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        rng = random.Random(2)
        while not stop.is_set():
            lo, hi = storage.first_index(), storage.last_index() + 1
            # A window, not the whole log: a full read per loop made the reader hog the
            # storage lock and the test take 20-95 s; windows still cross segment files.
            lo = rng.randint(lo, max(lo, hi - 1))
            hi = min(hi, lo + 64)
            try:
                got = storage.entries(lo, hi, 1 << 62)
                probe = rng.randint(lo - 1, hi - 1)
                term = storage.term(probe)
            except (CompactedError, UnavailableError):
                continue  # the log moved between the two calls: a legal answer
            except Exception as exc:  # anything else is a torn read: report it, stop
                problems.append(repr(exc))
                return
            reads += 1
            if [e.index for e in got] != list(range(lo, lo + len(got))):
                problems.append(f"not contiguous from {lo}")
            bad = [e.index for e in got if e.data != _data(e.index, e.term)]
            if bad:
                problems.append(f"wrong data at {bad[:3]}")
            if term < 0:
                problems.append("negative term")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        rng = random.Random(1)
        term = 1
        for step in range(250):
            last = storage.last_index()
            first = max(storage.snapshot().meta.index + 1, last + 1 - rng.randint(0, 5))
            if first <= last:
                term += 1  # a new leader overwrites an uncommitted tail
            count = rng.randint(1, 30)
            storage.append(
                [
                    Entry(term, i, EntryKind.NORMAL, _data(i, term))
                    for i in range(first, first + count)
                ]
            )
            storage.set_hard_state(HardState(term, 1, first))
            if step % 50 == 49:
                snap = storage.last_index() - 10
                storage.create_snapshot(snap, Membership(frozenset({1})), b"s")
                storage.compact(snap - 20)
            storage.sync()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    storage.close()
    assert not problems, problems[:5]
    assert reads > 10

"""DiskStorage against MemoryStorage as the model: the same answers to every read method
after any sequence of appends (including conflicting ones that truncate across segments),
hard states, snapshots (taken and installed), compactions, syncs, reopens and crashes (a
crash drops the writes since the last sync: the model goes back to its copy at that sync).

Segments are tiny (4 KiB) and the decoded tail cache is shrunk, so the runs cross many
segments, seal them, delete them after compaction, and read entries back from the files."""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.storage import UNLIMITED_BYTES, MemoryStorage
from raftsched.raft.types import Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta
from raftsched.storage import DiskStorage, disk

SEGMENT_BYTES = 4096


def _error_or_value(call: object) -> object:
    assert callable(call)
    try:
        return call()
    except (CompactedError, UnavailableError) as exc:
        return type(exc)


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="raftsched-storage-"))
        self.model = MemoryStorage()
        self.durable = copy.deepcopy(self.model)  # the model as of the last sync
        self.disk = DiskStorage.open(self.dir, identity=(7, 1), segment_bytes=SEGMENT_BYTES)
        self.max_term = 1

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes ---------------------------------------------------------------------------

    @rule(
        back=st.integers(0, 12),
        count=st.integers(1, 12),
        bump=st.booleans(),
        size=st.integers(0, 300),
        kind=st.sampled_from(list(EntryKind)),
    )
    def append(self, back: int, count: int, bump: bool, size: int, kind: EntryKind) -> None:
        # Never below the snapshot (those entries are committed), except the head of a
        # batch that the snapshot already covers (the storage drops that part).
        snap_index = self.model.snapshot().meta.index
        covered = 2 if snap_index == self.model.first_index() - 1 else 0
        first = max(snap_index + 1 - covered, self.model.last_index() + 1 - back, 1)
        self.max_term += int(bump)
        batch = [
            Entry(self.max_term, i, kind, bytes([i % 251]) * size)
            for i in range(first, first + count)
        ]
        self.model.append(batch)
        self.disk.append(batch)

    @rule(term=st.integers(0, 50), vote=st.integers(0, 5), commit=st.integers(0, 500))
    def hard_state(self, term: int, vote: int, commit: int) -> None:
        hs = HardState(term, vote, commit)
        self.model.set_hard_state(hs)
        self.disk.set_hard_state(hs)

    @precondition(lambda self: self.model.last_index() > self.model.snapshot().meta.index)
    @rule(data=st.data(), payload=st.binary(max_size=64))
    def create_snapshot(self, data: st.DataObject, payload: bytes) -> None:
        lo = max(self.model.snapshot().meta.index + 1, self.model.first_index())
        index = data.draw(st.integers(lo, self.model.last_index()))
        members = Membership(frozenset({1, 2}), frozenset({3}), frozenset({9}))
        expected = self.model.create_snapshot(index, members, payload)
        assert self.disk.create_snapshot(index, members, payload) == expected

    @precondition(lambda self: self.model.snapshot().meta.index >= self.model.first_index())
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.model.first_index(), self.model.snapshot().meta.index))
        self.model.compact(index)
        self.disk.compact(index)

    @rule(ahead=st.integers(-3, 30), payload=st.binary(max_size=64))
    def apply_snapshot(self, ahead: int, payload: bytes) -> None:
        index = max(self.model.snapshot().meta.index, self.model.last_index() + ahead)
        self.max_term += 1
        snap = Snapshot(SnapshotMeta(index, self.max_term, Membership(frozenset({1}))), payload)
        self.model.apply_snapshot(snap)
        self.disk.apply_snapshot(snap)

    @rule()
    def sync(self) -> None:
        self.disk.sync()
        self.durable = copy.deepcopy(self.model)

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.durable = copy.deepcopy(self.model)
        self.disk = DiskStorage.open(self.dir, identity=(7, 1), segment_bytes=SEGMENT_BYTES)

    @rule()
    def crash(self) -> None:
        self.disk.close(sync=False)
        self.model = copy.deepcopy(self.durable)
        self.disk = DiskStorage.open(self.dir, identity=(7, 1), segment_bytes=SEGMENT_BYTES)

    # -- reads ----------------------------------------------------------------------------

    @invariant()
    def same_answers(self) -> None:
        model, disk = self.model, self.disk
        assert disk.first_index() == model.first_index()
        assert disk.last_index() == model.last_index()
        assert disk.initial_state() == model.initial_state()
        assert disk.snapshot() == model.snapshot()
        first, last = model.first_index(), model.last_index()
        for index in range(first - 2, last + 2):
            assert _error_or_value(lambda i=index: disk.term(i)) == _error_or_value(
                lambda i=index: model.term(i)
            ), index
        for lo, hi in ((first, last + 1), (first - 1, last), (first, last + 2), (last, last)):
            for max_bytes in (UNLIMITED_BYTES, 500, 0):
                got = _error_or_value(lambda a=lo, b=hi, m=max_bytes: disk.entries(a, b, m))
                want = _error_or_value(lambda a=lo, b=hi, m=max_bytes: model.entries(a, b, m))
                assert got == want, (lo, hi, max_bytes)


@pytest.fixture(autouse=True)
def _small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Entries beyond the newest few are read back from the segment files.
    monkeypatch.setattr(disk, "CACHE_ENTRIES_MAX", 8)
    monkeypatch.setattr(disk, "CACHE_BYTES_MAX", 1024)
    monkeypatch.setattr(disk, "READ_BATCH_ENTRIES", 5)
    monkeypatch.setattr(disk, "SEGMENT_RECORDS_MAX", 40)


StorageMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStorageRoundTrip = StorageMachine.TestCase

"""DiskStorage under the real Raft core: a single-node cluster commits commands through
persist_ready + sync, takes a snapshot, compacts, restarts from disk and carries on; and
the storage satisfies the same unit test MemoryStorage does (tests/raft/test_units.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raftsched.raft.config import RaftConfig
from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.node import RaftNode
from raftsched.raft.storage import persist_ready
from raftsched.raft.types import EntryKind, HardState, Membership, Role, Snapshot, SnapshotMeta
from raftsched.storage import DiskStorage

from .helpers import entries

MEMBERS = Membership(frozenset({1}))


def _drive(node: RaftNode, storage: DiskStorage, applied: list[bytes]) -> None:
    """The ready loop of raftsched/raft/ready.py with no peers."""
    while node.has_ready():
        rd = node.ready()
        persist_ready(storage, rd)
        if rd.must_sync or rd.entries or rd.hard_state is not None:
            storage.sync()
        applied.extend(e.data for e in rd.committed_entries if e.kind is EntryKind.NORMAL)
        node.advance(rd)


def _start(storage: DiskStorage) -> RaftNode:
    node = RaftNode(RaftConfig(node_id=1), storage, random.Random(1))
    node.campaign()
    return node


def test_single_node_commits_snapshots_restarts_and_continues(tmp_path: Path) -> None:
    storage = DiskStorage.open(tmp_path, identity=(1, 1), segment_bytes=4096)
    storage.apply_snapshot(Snapshot(SnapshotMeta(0, 0, MEMBERS), b""))  # bootstrap
    storage.sync()
    node = _start(storage)
    applied: list[bytes] = []
    _drive(node, storage, applied)
    assert node.status().role is Role.LEADER
    commands = [f"cmd-{i}".encode() * 10 for i in range(300)]
    for i in range(0, 200, 20):
        node.propose_batch(commands[i : i + 20])
        _drive(node, storage, applied)
    assert applied == commands[:200]
    snap_index = node.status().applied
    storage.create_snapshot(snap_index, MEMBERS, b"app state at %d" % snap_index)
    storage.compact(snap_index - 10)
    storage.sync()
    term = node.status().term
    storage.close()

    storage = DiskStorage.open(tmp_path, identity=(1, 1), segment_bytes=4096)
    assert storage.snapshot().meta.index == snap_index
    assert storage.initial_state()[0].term == term
    node = _start(storage)
    replayed: list[bytes] = []
    _drive(node, storage, replayed)
    assert node.status().role is Role.LEADER and node.status().term == term + 1
    for i in range(200, 300, 25):
        node.propose_batch(commands[i : i + 25])
        _drive(node, storage, replayed)
    assert replayed == commands[200:]
    storage.close()


def test_same_unit_test_as_memory_storage(tmp_path: Path) -> None:
    storage = DiskStorage.open(tmp_path)
    storage.apply_snapshot(Snapshot(SnapshotMeta(0, 0, MEMBERS), b""))
    storage.append([*entries(1, 2, term=1), *entries(3, 2, term=2)])
    storage.append(entries(3, 1, term=3))
    assert storage.last_index() == 3 and storage.term(3) == 3
    with pytest.raises(UnavailableError):
        storage.append(entries(9, 1, term=3))
    storage.create_snapshot(2, MEMBERS, b"state")
    storage.compact(2)
    assert storage.first_index() == 3 and storage.term(2) == 1
    with pytest.raises(CompactedError):
        storage.term(1)
    with pytest.raises(CompactedError):
        storage.entries(2, 3, 100)
    assert storage.snapshot().data == b"state"
    storage.set_hard_state(HardState(3, 1, 2))
    assert storage.initial_state()[0] == HardState(3, 1, 2)
    storage.close()

"""Unit tests of the simulator's parts: event loop, network, disk, KV, invariant checker."""

from __future__ import annotations

import random

import pytest

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.messages import Heartbeat, Message
from raftsched.raft.ready import Ready
from raftsched.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    Role,
    Status,
)
from raftsched.sim.disk import SimDisk
from raftsched.sim.events import EventLoop
from raftsched.sim.invariants import InvariantChecker
from raftsched.sim.kv import CAS, REGISTER, WRITE, Command, KVStateMachine
from raftsched.sim.network import Network, NetworkConditions

MEMBERS = Membership(voters=frozenset({1, 2, 3}))


def entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data)


# -- event loop ---------------------------------------------------------------------------


def test_event_loop_runs_in_time_then_schedule_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_at(5, lambda: seen.append("b"))
    loop.call_at(3, lambda: seen.append("a"))
    loop.call_at(5, lambda: seen.append("c"))
    loop.call_at(9, lambda: seen.append("late"))
    loop.run_until(6)
    assert seen == ["a", "b", "c"]
    assert loop.now == 6
    with pytest.raises(AssertionError):
        loop.call_at(2, lambda: None)


# -- network ------------------------------------------------------------------------------


def _network(seed: int = 1) -> tuple[EventLoop, Network, list[Message]]:
    loop = EventLoop()
    got: list[Message] = []
    return loop, Network(loop, random.Random(seed), got.append), got


def test_network_partition_is_directed_and_drops_in_flight() -> None:
    loop, net, got = _network()
    net.cut(1, 2)
    net.send(Heartbeat(term=1, src=1, dst=2, commit=0))
    net.send(Heartbeat(term=1, src=2, dst=1, commit=0))
    loop.run_until(100)
    assert [(m.src, m.dst) for m in got] == [(2, 1)]
    # A partition made while a message is in flight swallows it.
    net.heal()
    net.send(Heartbeat(term=1, src=1, dst=3, commit=0))
    net.partition([1], [2, 3])
    loop.run_until(200)
    assert len(got) == 1
    assert net.stats.dropped == 2


def test_network_duplicates_and_loses_by_probability() -> None:
    loop, net, got = _network()
    net.conditions = NetworkConditions(duplicate_probability=1.0)
    net.send(Heartbeat(term=1, src=1, dst=2, commit=0))
    loop.run_until(100)
    assert len(got) == 2
    net.conditions = NetworkConditions(loss_probability=1.0)
    net.send(Heartbeat(term=1, src=1, dst=2, commit=0))
    loop.run_until(200)
    assert len(got) == 2


def test_network_links_are_fifo_unless_reordering() -> None:
    loop, net, got = _network(seed=7)
    net.conditions = NetworkConditions(delay_units_min=1, delay_units_max=50)
    for i in range(20):
        net.send(Heartbeat(term=1, src=1, dst=2, commit=i))
    loop.run_until(1000)
    assert [m.commit for m in got if isinstance(m, Heartbeat)] == list(range(20))
    got.clear()
    net.conditions = NetworkConditions(reorder_probability=0.5)
    for i in range(20):
        net.send(Heartbeat(term=1, src=1, dst=2, commit=i))
    loop.run_until(2000)
    commits = [m.commit for m in got if isinstance(m, Heartbeat)]
    assert sorted(commits) == list(range(20))
    assert commits != list(range(20))


def test_network_without_fifo_reorders_with_random_delays() -> None:
    loop, net, got = _network(seed=7)
    net.fifo_links = False
    net.conditions = NetworkConditions(delay_units_min=1, delay_units_max=50)
    for i in range(20):
        net.send(Heartbeat(term=1, src=1, dst=2, commit=i))
    loop.run_until(1000)
    commits = [m.commit for m in got if isinstance(m, Heartbeat)]
    assert sorted(commits) == list(range(20))
    assert commits != list(range(20))


# -- disk ---------------------------------------------------------------------------------


def test_disk_crash_loses_only_unsynced_writes() -> None:
    disk = SimDisk(MEMBERS)
    disk.append([entry(1, 1), entry(2, 1)])
    disk.set_hard_state(HardState(term=1, vote=2, commit=1))
    disk.sync()
    disk.append([entry(3, 1)])
    disk.set_hard_state(HardState(term=2, vote=3, commit=2))
    assert disk.last_index() == 3
    disk.crash()
    assert disk.last_index() == 2
    assert disk.initial_state()[0] == HardState(term=1, vote=2, commit=1)


def test_disk_append_truncates_conflicting_suffix_and_snapshots_compact() -> None:
    disk = SimDisk(MEMBERS)
    disk.append([entry(1, 1), entry(2, 1), entry(3, 1)])
    disk.append([entry(2, 2)])
    assert disk.last_index() == 2
    assert disk.term(2) == 2
    disk.create_snapshot(1, MEMBERS, b"state")
    disk.sync()
    disk.crash()
    assert disk.first_index() == 2
    assert disk.snapshot().data == b"state"
    with pytest.raises(CompactedError):
        disk.entries(1, 2, 0)
    with pytest.raises(UnavailableError):
        disk.term(3)
    assert [e.index for e in disk.entries(2, 3, 0)] == [2]


def test_disk_entries_respects_max_bytes_but_returns_one() -> None:
    disk = SimDisk(MEMBERS)
    disk.append([entry(i, 1, b"x" * 10) for i in range(1, 6)])
    assert len(disk.entries(1, 6, 25)) == 2
    assert len(disk.entries(1, 6, 1)) == 1


# -- kv -----------------------------------------------------------------------------------


def _registered(kv: KVStateMachine) -> int:
    out = kv.apply(entry(kv.applied_index + 1, 1, Command(0, 99, REGISTER, "", None).encode()))
    assert out is not None
    client_id = out.result
    assert client_id == kv.applied_index  # the register entry's index is the client id
    return int(client_id)


def test_kv_applies_a_retried_command_once_and_refuses_stale_ones() -> None:
    kv = KVStateMachine()
    cid = _registered(kv)
    w = Command(cid, 1, WRITE, "a", 10).encode()
    out1 = kv.apply(entry(2, 1, w))
    out2 = kv.apply(entry(3, 1, w))  # the same (client, seq) retried
    assert out1 is not None and not out1.duplicate
    assert out2 is not None and out2.duplicate
    cas = Command(cid, 2, CAS, "a", [10, 11]).encode()
    out3 = kv.apply(entry(4, 1, cas))
    assert out3 is not None and out3.result is True
    out4 = kv.apply(entry(5, 1, w))  # seq 1 again, after seq 2: a stale duplicate
    assert out4 is not None and out4.stale
    assert kv.read("a") == 11
    unknown = kv.apply(entry(6, 1, Command(cid + 100, 1, WRITE, "a", 0).encode()))
    assert unknown is not None and unknown.expired
    assert kv.read("a") == 11


def test_kv_snapshot_round_trip_keeps_chain_hash_and_sessions() -> None:
    kv = KVStateMachine()
    cid = _registered(kv)
    for i in range(2, 5):
        kv.apply(entry(i, 1, Command(cid, i, WRITE, "k", i).encode()))
    copy = KVStateMachine.restore(kv.snapshot(), 4)
    assert copy.chain_hash == kv.chain_hash
    assert copy.data == kv.data == {"k": 4}
    nxt = entry(5, 2, Command(cid, 4, WRITE, "k", 99).encode())
    a, b = kv.apply(nxt), copy.apply(nxt)
    assert a is not None and b is not None and a.duplicate and b.duplicate
    assert kv.chain_hash == copy.chain_hash


def test_chain_hash_differs_when_an_entry_differs() -> None:
    a, b = KVStateMachine(), KVStateMachine()
    a.apply(entry(1, 1, Command(1, 1, WRITE, "k", 1).encode()))
    b.apply(entry(1, 1, Command(1, 1, WRITE, "k", 2).encode()))
    assert a.chain_hash != b.chain_hash


# -- invariant checker --------------------------------------------------------------------


def _status(node: int, role: Role, term: int, commit: int) -> Status:
    return Status(
        node, role, term, node if role is Role.LEADER else 0, commit, commit, commit, MEMBERS
    )


def test_checker_flags_two_leaders_in_one_term() -> None:
    checker = InvariantChecker()
    checker.on_status(1, _status(1, Role.LEADER, 3, 0))
    checker.on_status(1, _status(1, Role.LEADER, 3, 0))
    assert not checker.violations
    checker.on_status(2, _status(2, Role.LEADER, 3, 0))
    assert "election safety" in checker.violations[0]


def test_checker_flags_commit_going_backwards_but_not_across_restart() -> None:
    checker = InvariantChecker()
    checker.on_status(1, _status(1, Role.FOLLOWER, 1, 5))
    checker.on_restart(1, durable_commit=3)
    checker.on_status(1, _status(1, Role.FOLLOWER, 1, 3))
    assert not checker.violations
    checker.on_status(1, _status(1, Role.FOLLOWER, 1, 2))
    assert "commit index went backwards" in checker.violations[0]


def test_checker_flags_different_applied_prefixes() -> None:
    checker = InvariantChecker()
    checker.on_apply(1, entry(1, 1), b"a" * 16)
    checker.on_apply(2, entry(1, 1), b"a" * 16)
    assert not checker.violations
    checker.on_apply(3, entry(1, 1), b"b" * 16)
    assert "state machine safety" in checker.violations[0]


def test_checker_flags_a_second_vote_in_one_term() -> None:
    checker = InvariantChecker()

    def ready(vote: int) -> Ready:
        return Ready(HardState(4, vote, 0), (), None, (), (), (), (), True)

    checker.on_synced(1, ready(2))
    checker.on_synced(1, ready(2))
    assert not checker.violations
    checker.on_synced(1, ready(3))
    assert "vote safety" in checker.violations[0]


def test_checker_log_matching_compares_whole_prefixes() -> None:
    checker = InvariantChecker()
    a, b = SimDisk(MEMBERS), SimDisk(MEMBERS)
    a.append([entry(1, 1, b"p"), entry(2, 2)])
    b.append([entry(1, 1, b"q"), entry(2, 2)])
    checker.check_log_matching({1: a.current, 2: b.current})
    assert "log matching" in checker.violations[0]

"""Unit tests of the Raft core's small pure modules: quorum math, progress, the log,
MemoryStorage and the conf-change encoding."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raftsched.raft.node
from raftsched.raft import decode_conf_change, encode_conf_change
from raftsched.raft.errors import CompactedError, MembershipChangeError, UnavailableError
from raftsched.raft.log import RaftLog
from raftsched.raft.membership import (
    ConfChangeDecodeError,
    ConfigTracker,
    apply_change,
    validate_change,
)
from raftsched.raft.progress import Progress, ProgressState
from raftsched.raft.quorum import VoteResult, quorum_value, vote_result
from raftsched.raft.storage import MemoryStorage, limit_by_bytes
from raftsched.raft.types import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Snapshot,
    SnapshotMeta,
)


def entries(first: int, terms: list[int], size: int = 1) -> list[Entry]:
    return [Entry(t, first + i, EntryKind.NORMAL, b"x" * size) for i, t in enumerate(terms)]


@pytest.mark.parametrize(
    ("values", "voters", "expected"),
    [
        ([5], 1, 5),
        ([5, 3], 2, 3),
        ([5, 3, 1], 3, 3),
        ([1, 5, 3], 3, 3),
        ([9, 9, 2, 2, 2], 5, 2),
        ([9, 9, 9, 2, 2], 5, 9),
        ([7, 4], 3, 4),  # two of three voters reached 4
        ([7], 3, 0),  # only one of three voters is known: nothing is on a majority
        ([], 0, 0),
    ],
)
def test_quorum_value_is_the_majority_index(values: list[int], voters: int, expected: int) -> None:
    assert quorum_value(values, voters) == expected


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ({1: True}, VoteResult.PENDING),
        ({1: True, 2: True}, VoteResult.WON),
        ({1: True, 2: False}, VoteResult.PENDING),
        ({1: True, 2: False, 3: False}, VoteResult.LOST),
        ({1: True, 9: True}, VoteResult.PENDING),  # 9 is not a voter: its vote never counts
    ],
)
def test_vote_result_counts_only_voters(votes: dict[int, bool], expected: VoteResult) -> None:
    assert vote_result((1, 2, 3), votes) is expected


def is_paused(progress: Progress) -> bool:
    return progress.paused  # a call, so mypy does not narrow across state changes


def test_progress_probe_sends_one_append_at_a_time() -> None:
    progress = Progress(next_index=10, max_inflight=4)
    assert progress.state is ProgressState.PROBE and not is_paused(progress)
    progress.sent_entries(12)
    assert is_paused(progress)
    assert progress.next_index == 10  # probing does not run ahead


def test_progress_replicate_window_is_bounded() -> None:
    progress = Progress(next_index=1, max_inflight=2)
    progress.become_replicate()
    progress.sent_entries(3)
    progress.sent_entries(6)
    assert is_paused(progress) and progress.next_index == 7
    assert progress.update_match(3)
    assert not is_paused(progress) and list(progress.inflight) == [6]
    assert not progress.update_match(2)  # stale acknowledgements change nothing


def test_progress_rejection_moves_back_and_detects_stale_ones() -> None:
    progress = Progress(next_index=1, max_inflight=8)
    progress.become_replicate()
    progress.update_match(5)
    progress.sent_entries(20)
    assert not progress.decrease_to(rejected_prev_index=4, hint_next_index=3)  # stale
    assert progress.decrease_to(rejected_prev_index=12, hint_next_index=9)
    assert progress.state is ProgressState.PROBE and progress.next_index == 9
    # A probe rejection must be about the outstanding probe (prev = next - 1).
    assert not progress.decrease_to(rejected_prev_index=12, hint_next_index=7)
    assert progress.decrease_to(rejected_prev_index=8, hint_next_index=2)
    assert progress.next_index == 6  # never below match + 1


def test_progress_heartbeat_answers_unblock_and_detect_stalled_chunks() -> None:
    progress = Progress(next_index=1, max_inflight=1)
    progress.sent_probe()
    assert is_paused(progress)
    progress.unblock_after_heartbeat()  # the probe or its answer was lost
    assert not is_paused(progress)
    progress.become_replicate()
    progress.sent_entries(4)
    assert is_paused(progress)
    progress.unblock_after_heartbeat()  # a full window whose answers may all be lost
    assert not is_paused(progress) and progress.next_index == 5
    snapshot = Snapshot(SnapshotMeta(9, 1, Membership(frozenset({1, 2}))), b"abcdef")
    progress.become_snapshot(snapshot)
    assert progress.snapshot_chunk_stalled()  # no chunk answered in the last round
    assert progress.snapshot_acked(3) and not progress.snapshot_acked(3)
    assert not progress.snapshot_chunk_stalled()  # a chunk was answered this round
    assert progress.snapshot_chunk_stalled()
    progress.restart_snapshot()
    assert progress.snapshot_offset == 0


def test_progress_commit_and_read_round_bookkeeping() -> None:
    progress = Progress(next_index=1, max_inflight=2)
    assert progress.missed_commit(3)
    progress.sent_commit_index(3)
    progress.sent_commit_index(2)  # never backwards
    assert not progress.missed_commit(3) and progress.missed_commit(4)
    progress.become_replicate()
    progress.sent_entries(5)
    assert not progress.missed_commit(4)  # the append in flight will bring it
    assert progress.ack_read_round(2) and not progress.ack_read_round(2)
    assert not progress.ack_read_round(1) and progress.read_ack_round == 2
    progress.start_activity_period()
    assert not progress.recent_active
    progress.mark_active()
    assert progress.recent_active


def test_node_never_writes_progress_fields() -> None:
    """Progress owns its transitions (progress.py): node.py may read its fields but never
    assign them or mutate its containers."""
    path = Path(raftsched.raft.node.__file__)
    tree = ast.parse(path.read_text())
    fields = set(Progress.__slots__)
    offences = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in fields:
                offences.append(f"line {node.lineno}: assigns .{target.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "inflight"
        ):
            offences.append(f"line {node.lineno}: calls inflight.{node.func.attr}")
    assert not offences, offences


def test_memory_storage_append_truncates_conflicts_and_compacts() -> None:
    storage = MemoryStorage(Membership(frozenset({1})))
    storage.append(entries(1, [1, 1, 2, 2]))
    storage.append(entries(3, [3]))
    assert storage.last_index() == 3 and storage.term(3) == 3
    with pytest.raises(UnavailableError):
        storage.append(entries(9, [3]))
    storage.create_snapshot(2, Membership(frozenset({1})), b"state")
    storage.compact(2)
    assert storage.first_index() == 3 and storage.term(2) == 1
    with pytest.raises(CompactedError):
        storage.term(1)
    with pytest.raises(CompactedError):
        storage.entries(2, 3, 100)
    assert storage.snapshot().data == b"state"
    storage.set_hard_state(HardState(3, 1, 2))
    assert storage.initial_state()[0] == HardState(3, 1, 2)


def test_limit_by_bytes_keeps_at_least_one_entry() -> None:
    batch = entries(1, [1, 1, 1, 1], size=10)
    assert len(limit_by_bytes(batch, 25)) == 2
    assert len(limit_by_bytes(batch, 5)) == 1
    assert len(limit_by_bytes(batch, 1000)) == 4


def test_raft_log_unstable_tail_shadows_storage() -> None:
    storage = MemoryStorage(Membership(frozenset({1})))
    storage.append(entries(1, [1, 1, 1]))
    log = RaftLog(storage, committed=1, applied=0)
    log.truncate_and_append(entries(3, [2, 2]))  # replaces index 3 (term 1) by term 2
    assert log.last_index() == 4 and log.term(3) == 2 and log.persisted_index() == 2
    handed = log.take_unhanded_entries()
    assert [e.index for e in handed] == [3, 4]
    storage.append(handed)
    log.stable_to(4, 2)
    assert log.persisted_index() == 4 and not log.unstable
    log.commit_to(4)
    assert [e.index for e in log.take_committed_to_apply()] == [1, 2, 3, 4]


def test_raft_log_does_not_hand_out_unpersisted_commits() -> None:
    log = RaftLog(MemoryStorage(Membership(frozenset({1}))), committed=0, applied=0)
    log.truncate_and_append(entries(1, [1, 1]))
    log.commit_to(2)
    assert not log.has_committed_to_apply()  # committed but not yet durable here
    log.stable_to(2, 1)
    log.storage.append(entries(1, [1, 1]))  # type: ignore[attr-defined]
    assert log.has_committed_to_apply()


def test_raft_log_stable_to_ignores_replaced_entries() -> None:
    log = RaftLog(MemoryStorage(Membership(frozenset({1}))), committed=0, applied=0)
    log.truncate_and_append(entries(1, [1, 1, 1]))
    log.take_unhanded_entries()
    log.truncate_and_append(entries(2, [2]))  # before the runtime persisted the first batch
    log.stable_to(3, 1)  # the old batch became durable: index 3 is no longer ours
    assert log.persisted_index() == 0
    assert [e.term for e in log.take_unhanded_entries()] == [2]


def test_conf_change_round_trip_and_strict_decoding() -> None:
    for kind in ConfChangeKind:
        change = ConfChange(kind, 12345678901)
        assert decode_conf_change(encode_conf_change(change)) == change
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change(b"\x01\x00")
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change(b"\x01\x09" + (5).to_bytes(8, "big"))  # unknown kind
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change(b"\x07\x00" + (5).to_bytes(8, "big"))  # unknown version


def test_membership_changes_and_validation() -> None:
    m = Membership(frozenset({1, 2, 3}))
    m = apply_change(m, ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    assert m.learners == {4}
    m = apply_change(m, ConfChange(ConfChangeKind.PROMOTE, 4))
    assert m.voters == {1, 2, 3, 4} and not m.learners
    m = apply_change(m, ConfChange(ConfChangeKind.REMOVE, 2))
    assert m.voters == {1, 3, 4} and m.removed == {2}
    with pytest.raises(MembershipChangeError, match="never be reused"):
        validate_change(m, ConfChange(ConfChangeKind.ADD_LEARNER, 2))
    with pytest.raises(MembershipChangeError, match="not a learner"):
        validate_change(m, ConfChange(ConfChangeKind.PROMOTE, 3))
    with pytest.raises(MembershipChangeError, match="already a member"):
        validate_change(m, ConfChange(ConfChangeKind.ADD_LEARNER, 3))
    with pytest.raises(MembershipChangeError, match="last voter"):
        validate_change(Membership(frozenset({1})), ConfChange(ConfChangeKind.REMOVE, 1))
    # apply_change is total: nonsense leaves the configuration unchanged.
    assert apply_change(m, ConfChange(ConfChangeKind.ADD_LEARNER, 2)) == m


def test_config_tracker_reverts_on_truncation() -> None:
    tracker = ConfigTracker(Membership(frozenset({1, 2, 3})))
    tracker.append(5, encode_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4)))
    tracker.append(9, encode_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4)))
    assert tracker.current.voters == {1, 2, 3, 4} and tracker.last_change_index == 9
    assert tracker.at(7).learners == {4} and tracker.at(4).learners == frozenset()
    assert tracker.truncate_from(9)
    assert tracker.current.learners == {4}
    assert not tracker.truncate_from(10)


def test_raft_log_slice_spans_storage_and_unstable_within_limits() -> None:
    storage = MemoryStorage(Membership(frozenset({1})))
    storage.append(entries(1, [1, 1, 1], size=10))
    log = RaftLog(storage, committed=0, applied=0)
    log.append(entries(4, [2, 2, 2], size=10))
    assert [e.index for e in log.slice(2, 7, 100, 1000)] == [2, 3, 4, 5, 6]
    assert [e.index for e in log.slice(2, 7, 3, 1000)] == [2, 3, 4]  # entry count limit
    assert [e.index for e in log.slice(2, 7, 100, 35)] == [2, 3, 4]  # byte limit
    assert [e.index for e in log.slice(5, 7, 100, 1)] == [5]  # always at least one
    storage.create_snapshot(2, Membership(frozenset({1})), b"")
    storage.compact(2)
    with pytest.raises(CompactedError):
        log.slice(2, 7, 100, 1000)


def test_snapshot_receiver_reassembles_in_order_and_resyncs() -> None:
    from raftsched.raft.messages import InstallSnapshot
    from raftsched.raft.snapshot_receiver import SnapshotReceiver

    members = Membership(frozenset({1, 2}))

    def chunk(offset: int, data: bytes, done: bool, term: int = 1) -> InstallSnapshot:
        return InstallSnapshot(
            term=term,
            src=1,
            dst=2,
            snapshot_index=9,
            snapshot_term=1,
            membership=members,
            offset=offset,
            data=data,
            done=done,
        )

    receiver = SnapshotReceiver()
    assert receiver.receive(chunk(3, b"def", False)).success is False  # unknown: restart
    assert receiver.receive(chunk(0, b"abc", False)).next_offset == 3
    duplicate = receiver.receive(chunk(0, b"abc", False))  # offset 0 restarts the transfer
    assert (duplicate.next_offset, duplicate.snapshot) == (3, None)
    gap = receiver.receive(chunk(6, b"ghi", True))
    assert (gap.next_offset, gap.success, gap.snapshot) == (3, True, None)
    assert receiver.receive(chunk(3, b"def", False, term=2)).success is False  # other leader
    done = receiver.receive(chunk(3, b"def", True))
    assert done.snapshot is not None and done.snapshot.data == b"abcdef"
    assert done.snapshot.meta == SnapshotMeta(9, 1, members)

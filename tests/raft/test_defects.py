"""Regression tests for the defects of issue 6; each failed on the core before its fix."""

from __future__ import annotations

import pytest

from raftsched.raft import node as node_module
from raftsched.raft.errors import ProposalDroppedError
from raftsched.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
)
from raftsched.raft.node import RaftNode
from raftsched.raft.storage import MemoryStorage, persist_ready
from raftsched.raft.types import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    Membership,
    ReadState,
    Role,
)

from .harness import Cluster, drain, make_node, outbox


def _learner_storage() -> MemoryStorage:
    return MemoryStorage(Membership(frozenset({1}), frozenset({2})))


def test_single_voter_leader_sends_nothing_of_its_term_before_the_term_is_durable() -> None:
    # Defect 1: voters {1}, learner {2}. Winning on its own vote, node 1 must not let an
    # AppendEntries of term 1 leave before the HardState with term 1 is durable.
    node, storage = make_node(1, storage=_learner_storage())
    node.campaign()
    assert node.role is Role.LEADER
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.term == 1 and rd.must_sync
    assert rd.eager_messages == ()
    assert any(isinstance(m, AppendEntries) and m.dst == 2 for m in rd.messages)
    # Overlapping Readys: a proposal before the first Ready is advanced stays non-eager.
    node.propose(b"x")
    rd2 = node.ready()
    assert rd2.eager_messages == ()
    persist_ready(storage, rd)
    node.advance(rd)
    persist_ready(storage, rd2)
    node.advance(rd2)
    drain(node, storage)
    node.step(AppendEntriesResponse(term=1, src=2, dst=1, success=True, match_index=2))
    drain(node, storage)
    # Steady state: once the term is durable the parallel leader fsync is back (§10.2.1).
    node.propose(b"y")
    rd3 = node.ready()
    assert rd3.entries and any(isinstance(m, AppendEntries) for m in rd3.eager_messages)


def test_no_message_leaves_eagerly_with_a_term_that_is_not_durable() -> None:
    # Defect 1 as an invariant over a whole cluster run, learners and a restart included.
    cluster = Cluster((1,), learners=(2,))
    checked: list[Message] = []
    for _ in range(2):
        node = cluster.node(1)
        node.campaign()
        durable = cluster.storages[1].initial_state()[0].term
        rd = node.ready()
        for m in rd.eager_messages:
            checked.append(m)
            assert m.term <= durable, f"{m} left before term {m.term} was durable"
        cluster._handle_ready(1, node, rd)
        node.advance(rd)
        cluster.stabilize()
        cluster.propose(1, b"a")
        cluster.stabilize()
        cluster.restart(1)
    assert cluster.commands(2) == [b"a", b"a"]


def test_a_later_ready_acknowledging_unsynced_entries_must_sync() -> None:
    # Defect 4: a duplicate AppendEntries answered while the Ready that appends its
    # entries is still being written must not come back with must_sync=False.
    node, storage = make_node(2)
    entries = (Entry(1, 1, EntryKind.NORMAL, b"a"),)
    append = AppendEntries(
        term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=entries, commit=0
    )
    node.step(append)
    rd1 = node.ready()
    assert rd1.entries and rd1.must_sync
    node.step(append)  # duplicate, while rd1 is not yet durable
    rd2 = node.ready()
    assert rd2.messages, "the duplicate is answered"
    assert rd2.must_sync, "its answer acknowledges rd1's entries: it must wait for them"
    for rd in (rd1, rd2):
        persist_ready(storage, rd)
        node.advance(rd)
    node.step(append)
    rd3 = node.ready()
    assert rd3.messages and not rd3.must_sync  # nothing unsynced any more


def _campaigns_under_heartbeats(node_cls: type[RaftNode]) -> list[Message]:
    """Feed follower 2 a heartbeat from leader 1 every 2 ticks; return its vote requests."""
    node, storage = make_node(
        2, node_cls=node_cls, election_timeout_ticks=10, heartbeat_interval_ticks=2
    )
    requests: list[Message] = []
    for tick in range(200):
        if tick % 2 == 0:
            node.step(Heartbeat(term=1, src=1, dst=2, commit=0))
        node.tick()
        requests += [m for m in outbox(drain(node, storage)) if isinstance(m, RequestVote)]
    return requests


def test_a_follower_hearing_only_heartbeats_never_campaigns() -> None:
    # Defect 5: heartbeats alone (no AppendEntries) keep a follower from campaigning.
    assert _campaigns_under_heartbeats(RaftNode) == []


class _HeartbeatNoReset(RaftNode):
    def _restart_election_timer(self, m: Message) -> None:
        if not isinstance(m, Heartbeat):
            super()._restart_election_timer(m)


def test_the_heartbeat_test_catches_a_missing_timer_reset() -> None:
    assert _campaigns_under_heartbeats(_HeartbeatNoReset)


def test_transfer_to_a_follower_caught_up_by_snapshot_sends_timeout_now() -> None:
    # Defect 2: the snapshot covers the leader's whole log (proposals stop during a
    # transfer, so nothing follows it); TimeoutNow must go out when it is installed.
    cluster = Cluster(snapshot_chunk_bytes=4)
    cluster.elect(1)
    cluster.isolate(3)
    for i in range(5):
        cluster.propose(1, b"cmd%d" % i)
    cluster.stabilize()
    index = cluster.take_snapshot(1)
    assert index == cluster.node(1).log.last_index()
    cluster.heal()
    cluster.node(1).transfer_leadership(3)
    cluster.stabilize()
    assert any(isinstance(m, InstallSnapshot) and m.dst == 3 for m in cluster.sent)
    assert [m.dst for m in cluster.sent if isinstance(m, TimeoutNow)] == [3]
    assert cluster.leader() == 3
    assert cluster.commands(3) == cluster.commands(1)


def test_reads_queued_without_a_quorum_are_served_when_the_leader_becomes_the_only_voter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defect 3: voters {1, 2}; 2 unreachable; reads queue on 1. Removing 2 leaves 1 the
    # only voter: the queued reads are confirmed, and no longer count against the bound.
    monkeypatch.setattr(node_module, "MAX_PENDING_READS", 2)
    cluster = Cluster((1, 2))
    cluster.elect(1)
    cluster.isolate(2)
    cluster.read_index(1, 11)
    cluster.read_index(1, 12)
    assert cluster.apps[1].read_states == []
    with pytest.raises(ProposalDroppedError):
        cluster.node(1).read_index(13)
    cluster.node(1).propose_conf_change(ConfChange(ConfChangeKind.REMOVE, 2))
    cluster.process(1)
    assert cluster.node(1).membership.voters == frozenset({1})
    assert cluster.apps[1].read_states == [ReadState(11, 1), ReadState(12, 1)]
    cluster.read_index(1, 13)  # the bound has room again
    assert cluster.apps[1].read_states[-1] == ReadState(13, 2)


def test_a_stale_term_notice_does_not_make_the_leader_send_a_snapshot() -> None:
    # Found while giving rejections their own fields: a rejection that only says "your
    # term is old" (sent to this node when it led an older term) used to read as "needs
    # a snapshot" (match_index 0) once this node led the notice's term.
    cluster = Cluster()
    cluster.elect(1)
    leader = cluster.node(1)
    leader.step(AppendEntriesResponse(term=1, src=2, dst=1, success=False))
    cluster.process(1)
    assert not [m for m in cluster.queue if isinstance(m, InstallSnapshot)]
    assert leader.status().match[2] == leader.log.last_index()


def test_a_voter_whose_removal_is_not_committed_still_campaigns() -> None:
    # Found by test_async_storage.py (membership walks): voters {1, 2}, leader 1 removes
    # itself while 2 is cut off, keeps appending, and restarts. Its latest configuration
    # is {2}, so it never campaigned; 2 (still at {1, 2}) needs 1's vote, which 1 refuses
    # (its log is longer): no leader ever again. Dissertation §4.2.2: a server must keep
    # starting elections until the configuration that removes it is committed.
    cluster = Cluster((1, 2))
    cluster.elect(1)
    cluster.isolate(2)
    cluster.node(1).propose_conf_change(ConfChange(ConfChangeKind.REMOVE, 1))
    cluster.process(1)
    cluster.propose(1, b"x")
    cluster.take()  # the appends carrying the removal are lost
    cluster.restart(1)
    assert cluster.node(1).membership.voters == frozenset({2})
    cluster.heal()
    cluster.tick(60)
    assert cluster.leader() == 2
    assert cluster.node(2).membership.voters == frozenset({2})
    assert cluster.node(1).role is Role.FOLLOWER  # removed for good: it stays quiet
    cluster.propose(2, b"y")
    cluster.stabilize()
    assert cluster.commands(2) == [b"x", b"y"]


def test_a_voter_with_a_stale_configuration_still_votes_for_members_it_never_heard_of() -> None:
    # Found by test_async_storage.py: voters {1} and learner 2. Node 3 joins and becomes a
    # voter; 2 is promoted while cut off (it knows nothing past the initial configuration,
    # not even that 3 exists); leader 1 removes itself and dies after only 3 got the
    # removal. Voters {2, 3} must elect 3, but 2 ignored 3 as a non-member, and 3
    # ignored 1 as removed although that removal is not committed: no leader ever again.
    # Only a removal committed locally is final; any other id may be a member we have not
    # heard of yet (dissertation §4.2.2-§4.2.3).
    cluster = Cluster((1,), learners=(2,))
    cluster.elect(1)
    cluster.isolate(2)
    cluster.add_node(3)
    for kind, node_id in (
        (ConfChangeKind.ADD_LEARNER, 3),
        (ConfChangeKind.PROMOTE, 3),
        (ConfChangeKind.PROMOTE, 2),
        (ConfChangeKind.REMOVE, 1),
    ):
        cluster.node(1).propose_conf_change(ConfChange(kind, node_id))
        cluster.process(1)
        cluster.stabilize()
    assert cluster.node(3).membership.voters == frozenset({2, 3})
    assert cluster.node(2).membership.voters == frozenset({1})
    cluster.stop(1)
    cluster.heal()
    cluster.tick(60, nodes=[2, 3])
    assert cluster.leader() == 3
    cluster.propose(3, b"after")
    cluster.stabilize()
    assert cluster.commands(2)[-1:] == [b"after"]
    assert cluster.node(2).membership.voters == frozenset({2, 3})

"""Feature tests on the in-memory cluster: membership (§6 / dissertation §4), snapshots
(§7), ReadIndex (§6.4), leadership transfer (dissertation §3.10), PreVote (§9.6),
CheckQuorum, restart. Each docstring names the rule it checks."""

from __future__ import annotations

import pytest

from raftsched.raft import encode_conf_change
from raftsched.raft.errors import (
    MembershipChangeError,
    NotLeaderError,
    ProposalDroppedError,
    TransferError,
)
from raftsched.raft.messages import (
    AppendEntries,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    ReadIndexRequest,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftsched.raft.node import RaftNode
from raftsched.raft.storage import MemoryStorage
from raftsched.raft.types import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    ReadState,
    Role,
    Snapshot,
)

from .harness import Cluster, drain, make_node

ADD = ConfChangeKind.ADD_LEARNER
PROMOTE = ConfChangeKind.PROMOTE
REMOVE = ConfChangeKind.REMOVE


def change(cluster: Cluster, leader: int, kind: ConfChangeKind, node_id: int) -> int:
    index, _ = cluster.node(leader).propose_conf_change(ConfChange(kind, node_id))
    cluster.process(leader)
    return index


# ---------------------------------------------------------------------- membership


def test_learner_replicates_but_does_not_count() -> None:
    """Dissertation §4.2.1: a new server joins as a non-voting learner: it receives the
    log but counts towards no majority, and it never campaigns."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.add_node(4)
    change(cluster, 1, ADD, 4)
    cluster.stabilize()
    cluster.tick(3)
    assert cluster.node(4).role is Role.LEARNER
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.commands(4) == [b"a"]
    # With both other voters cut off, the learner's acknowledgement commits nothing.
    cluster.isolate(2)
    cluster.isolate(3)
    commit = cluster.node(1).status().commit
    cluster.propose(1, b"b")
    cluster.stabilize()
    assert cluster.node(1).status().commit == commit
    assert cluster.node(1).status().match[4] == commit + 1
    # A learner never campaigns, however long it waits.
    cluster.stop(1)
    cluster.tick(50, nodes=[4])
    assert not [m for m in cluster.sent if isinstance(m, RequestVote) and m.src == 4]


def test_promoted_learner_votes_and_counts() -> None:
    """Dissertation §4.1: once promoted (C_new in its log), the server counts towards
    majorities; a 4-voter cluster then needs 3 acknowledgements."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.add_node(4)
    change(cluster, 1, ADD, 4)
    cluster.stabilize()
    change(cluster, 1, PROMOTE, 4)
    cluster.stabilize()
    assert cluster.node(4).role is Role.FOLLOWER
    assert cluster.node(2).membership.voters == {1, 2, 3, 4}
    cluster.isolate(2)
    cluster.isolate(3)
    commit = cluster.node(1).status().commit
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.node(1).status().commit == commit  # 2 of 4 is not a majority
    cluster.heal()
    cluster.tick(2)
    assert cluster.node(1).status().commit == commit + 1


def test_one_change_at_a_time() -> None:
    """Dissertation §4.1: a leader does not start a new change until the previous one is
    committed."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.isolate(2)
    cluster.isolate(3)
    cluster.add_node(4)
    change(cluster, 1, ADD, 4)
    with pytest.raises(MembershipChangeError, match="not committed yet"):
        change(cluster, 1, ADD, 5)


def test_no_change_before_an_entry_of_the_term_commits() -> None:
    """Ongaro 2015 (raft-dev, the single-server change bug): a new leader may not change
    the configuration until it has committed an entry of its own term (its no-op)."""
    node, storage = make_node(pre_vote=False)
    node.campaign()
    node.step(RequestVoteResponse(term=node.term, src=2, dst=1, granted=True))
    assert node.role is Role.LEADER
    drain(node, storage)
    with pytest.raises(MembershipChangeError, match="of its term"):
        node.propose_conf_change(ConfChange(ADD, 4))


def test_removed_id_is_never_reused() -> None:
    """SPEC §3: a removed node's id is never reused."""
    cluster = Cluster()
    cluster.elect(1)
    change(cluster, 1, REMOVE, 3)
    cluster.stabilize()
    assert cluster.node(1).membership.removed == {3}
    with pytest.raises(MembershipChangeError, match="never be reused"):
        change(cluster, 1, ADD, 3)


def test_removed_node_cannot_disrupt() -> None:
    """Dissertation §4.2.3: a removed server must not disrupt the cluster; its messages are
    ignored (and PreVote keeps its term down anyway)."""
    cluster = Cluster(pre_vote=False)
    cluster.elect(1)
    cluster.isolate(3)
    change(cluster, 1, REMOVE, 3)
    cluster.stabilize()
    cluster.heal()
    term = cluster.node(1).term
    cluster.node(3).campaign()  # it never learned it was removed
    cluster.stabilize()
    cluster.tick(3)
    assert cluster.node(1).role is Role.LEADER and cluster.node(1).term == term


def test_uncommitted_config_is_used_and_reverted_on_truncation() -> None:
    """Dissertation §4.1: "a server always uses the latest configuration in its log,
    regardless of whether that entry is committed"; if the entry is truncated away the
    server falls back to the previous configuration."""
    node, storage = make_node(2)
    remove_3 = Entry(1, 2, EntryKind.CONFIG, encode_conf_change(ConfChange(REMOVE, 3)))
    node.step(
        AppendEntries(
            term=1,
            src=1,
            dst=2,
            prev_index=0,
            prev_term=0,
            entries=(Entry(1, 1, EntryKind.NOOP, b""), remove_3),
            commit=1,
        )
    )
    drain(node, storage)
    assert node.membership.voters == {1, 2} and node.status().commit == 1
    # A leader of term 2 (node 3, elected in the old configuration) overwrites index 2.
    node.step(
        AppendEntries(
            term=2,
            src=3,
            dst=2,
            prev_index=1,
            prev_term=1,
            entries=(Entry(2, 2, EntryKind.NOOP, b""),),
            commit=1,
        )
    )
    drain(node, storage)
    assert node.membership.voters == {1, 2, 3}
    assert storage.entries(2, 3, 100)[0].kind is EntryKind.NOOP


def test_leader_removing_itself_steps_down_after_commit() -> None:
    """Dissertation §4.2.2: a leader removed from the configuration manages the cluster
    until C_new is committed (without counting itself), then steps down."""
    cluster = Cluster()
    cluster.elect(1)
    index = change(cluster, 1, REMOVE, 1)
    assert cluster.node(1).role is Role.LEADER
    cluster.stabilize()
    assert cluster.node(2).status().commit >= index or cluster.node(1).status().commit >= index
    assert cluster.node(1).role is Role.FOLLOWER
    cluster.tick(40, nodes=[1, 2, 3])
    leader = cluster.leader()
    assert leader in (2, 3)
    cluster.propose(leader, b"after")
    cluster.stabilize()
    assert cluster.commands(2)[-1:] == [b"after"] and cluster.commands(3)[-1:] == [b"after"]


def test_new_node_learns_configuration_from_a_snapshot() -> None:
    """A brand-new node starts with no configuration; the leader sends it a snapshot
    (here the empty one at index 0), which carries the configuration, then the log."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.add_node(4)
    change(cluster, 1, ADD, 4)
    cluster.stabilize()
    assert [m for m in cluster.sent if isinstance(m, InstallSnapshot) and m.dst == 4]
    assert cluster.node(4).membership.voters == {1, 2, 3}
    assert cluster.commands(4) == [b"a"]
    # The configuration survives a restart of the new node.
    cluster.restart(4)
    assert cluster.node(4).membership.learners == {4}


# ---------------------------------------------------------------------- snapshots


def test_lagging_follower_gets_chunked_snapshot() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind",
    in chunks (InstallSnapshot offset/done), here of 4 bytes. The follower discards its
    log and restores the application from the snapshot."""
    cluster = Cluster(snapshot_chunk_bytes=4)
    cluster.elect(1)
    cluster.isolate(3)
    for i in range(10):
        cluster.propose(1, b"cmd%d" % i)
    cluster.stabilize()
    cluster.take_snapshot(1)
    assert cluster.storages[1].first_index() > 2
    cluster.heal()
    cluster.tick(3)
    chunks = [m for m in cluster.sent if isinstance(m, InstallSnapshot) and m.dst == 3]
    size = len(cluster.storages[1].snapshot().data)
    assert len({m.offset for m in chunks}) == -(-size // 4)
    assert cluster.commands(3) == cluster.commands(1)
    assert cluster.storages[3].snapshot().meta.index == cluster.storages[1].snapshot().meta.index
    cluster.propose(1, b"after")
    cluster.stabilize()
    assert cluster.commands(3)[-1] == b"after"


def test_lost_snapshot_chunks_are_resent() -> None:
    """§7 flow control: a lost chunk is resent after a heartbeat round without progress."""
    cluster = Cluster(snapshot_chunk_bytes=3)
    cluster.elect(1)
    cluster.isolate(3)
    for i in range(5):
        cluster.propose(1, b"c%d" % i)
    cluster.stabilize()
    cluster.take_snapshot(1)
    cluster.heal()
    dropped: list[int] = []

    def drop_first_copy_of_second_chunk(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == 3 and not dropped:
            dropped.append(m.offset)
            return True
        return False

    cluster.drop = drop_first_copy_of_second_chunk
    cluster.tick(6)
    assert dropped and cluster.commands(3) == cluster.commands(1)


def test_follower_keeps_log_after_matching_snapshot() -> None:
    """§7: "If the follower's log contains the snapshot's last entry, the entries after it
    are retained" - no snapshot is installed, the commit index moves forward."""
    node, storage = make_node(2)
    three = tuple(Entry(1, i, EntryKind.NORMAL, b"x") for i in (1, 2, 3))
    node.step(
        AppendEntries(term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=three, commit=0)
    )
    drain(node, storage)
    node.step(
        InstallSnapshot(
            term=1,
            src=1,
            dst=2,
            snapshot_index=2,
            snapshot_term=1,
            membership=Membership(frozenset({1, 2, 3})),
            offset=0,
            data=b"s",
            done=True,
        )
    )
    readies = drain(node, storage)
    assert all(rd.snapshot is None for rd in readies)
    assert storage.last_index() == 3 and node.status().commit == 2


def test_follower_with_conflicting_log_discards_it_for_snapshot() -> None:
    """§7: "If ... the follower's log [does not contain the entry], the follower discards
    its entire log; it is all superseded by the snapshot." """
    node, storage = make_node(2)
    three = tuple(Entry(1, i, EntryKind.NORMAL, b"x") for i in (1, 2, 3))
    node.step(
        AppendEntries(term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=three, commit=0)
    )
    drain(node, storage)
    node.step(
        InstallSnapshot(
            term=2,
            src=1,
            dst=2,
            snapshot_index=5,
            snapshot_term=2,
            membership=Membership(frozenset({1, 2, 3})),
            offset=0,
            data=b"ab",
            done=False,
        )
    )
    assert not [rd.snapshot for rd in drain(node, storage) if rd.snapshot]
    node.step(
        InstallSnapshot(
            term=2,
            src=1,
            dst=2,
            snapshot_index=5,
            snapshot_term=2,
            membership=Membership(frozenset({1, 2, 3})),
            offset=2,
            data=b"cd",
            done=True,
        )
    )
    [snapshot] = [rd.snapshot for rd in drain(node, storage) if rd.snapshot]
    assert snapshot.data == b"abcd" and snapshot.meta.index == 5
    assert storage.first_index() == 6 and storage.last_index() == 5
    assert node.status().commit == 5 and node.status().applied == 5


# ---------------------------------------------------------------------- ReadIndex


def _heartbeats_with_context(cluster: Cluster) -> list[Heartbeat]:
    return [m for m in cluster.sent if isinstance(m, Heartbeat) and m.context]


def test_read_index_waits_for_a_heartbeat_quorum() -> None:
    """§6.4: the leader records its commit index as the read index, then "exchanges a
    round of heartbeat messages with a majority" before the read may be served."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.isolate(2)
    cluster.isolate(3)
    cluster.read_index(1, 7)
    cluster.stabilize()
    assert cluster.apps[1].read_states == []  # no majority: not confirmed
    cluster.heal()
    cluster.tick(1)
    assert cluster.apps[1].read_states == [ReadState(7, cluster.node(1).status().commit)]


def test_concurrent_reads_share_one_heartbeat_round() -> None:
    """§6.4 batching: reads that arrive together are confirmed by one heartbeat round."""
    cluster = Cluster()
    cluster.elect(1)
    before = len(_heartbeats_with_context(cluster))
    for context in range(1, 11):
        cluster.node(1).read_index(context)
    cluster.stabilize()
    assert len(_heartbeats_with_context(cluster)) - before == 2  # one round: 2 followers
    assert [r.context for r in cluster.apps[1].read_states] == list(range(1, 11))


def test_new_leader_serves_reads_only_after_committing_in_its_term() -> None:
    """§6.4: "the leader must have committed an entry from its current term" before its
    commit index can be a read index."""
    cluster = Cluster(check_quorum=False)
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.src == 2
    cluster.elect(2)
    cluster.read_index(2, 5)
    cluster.tick(2)
    assert cluster.apps[2].read_states == []  # its no-op is not committed
    cluster.heal()
    cluster.tick(2)
    [read] = cluster.apps[2].read_states
    assert read.context == 5 and read.index >= 3


def test_follower_read_is_forwarded_to_the_leader() -> None:
    """§6.4: a follower asks the leader for a read index and serves the read locally once
    it has applied that far."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.read_index(3, 42)
    cluster.stabilize()
    assert [m for m in cluster.sent if isinstance(m, ReadIndexRequest) and m.src == 3]
    assert cluster.apps[3].read_states == [ReadState(42, 2)]
    with pytest.raises(NotLeaderError):
        make_node()[0].read_index(1)  # no leader known


def test_single_voter_confirms_reads_immediately() -> None:
    """§6.4: with one voter there is nobody to ask; the read is confirmed at once."""
    cluster = Cluster((1,))
    cluster.elect(1)
    cluster.read_index(1, 3)
    assert cluster.apps[1].read_states == [ReadState(3, 1)]


class NoHeartbeatReadNode(RaftNode):
    """The stale-read bug: serve reads without confirming leadership."""

    def _confirm_read(self, context: int, index: int, requester: int) -> None:
        self._emit_read_state(requester, context, index)


@pytest.mark.parametrize("node_cls", [RaftNode, NoHeartbeatReadNode])
def test_deposed_leader_never_confirms_a_read(node_cls: type[RaftNode]) -> None:
    """§6.4: a partitioned old leader cannot serve linearizable reads: it never gets its
    heartbeat round confirmed. Skipping the round (the overridable hook) returns a stale
    read, which the harness's linearizability check catches."""
    cluster = Cluster(node_cls=node_cls, check_quorum=False)
    cluster.elect(1)
    cluster.isolate(1)
    cluster.elect(2)
    cluster.propose(2, b"new")
    cluster.stabilize()
    if node_cls is NoHeartbeatReadNode:
        with pytest.raises(AssertionError, match="stale read"):
            cluster.read_index(1, 9)
    else:
        cluster.read_index(1, 9)
        cluster.tick(3, nodes=[1])
        assert cluster.apps[1].read_states == []


# ---------------------------------------------------------------------- transfer


def test_leadership_transfer() -> None:
    """Dissertation §3.10: the leader stops accepting proposals, brings the target up to
    date, sends TimeoutNow; the target campaigns at once and wins."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.isolate(3)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.heal()
    cluster.node(1).transfer_leadership(3)
    with pytest.raises(ProposalDroppedError):
        cluster.node(1).propose(b"b")
    cluster.stabilize()
    timeouts = [m for m in cluster.sent if isinstance(m, TimeoutNow)]
    assert [m.dst for m in timeouts] == [3]
    assert cluster.leader() == 3 and cluster.node(3).term == 2
    assert cluster.commands(3) == [b"a"]


def test_transfer_aborts_after_an_election_timeout() -> None:
    """Dissertation §3.10: "if the transfer does not complete within about one election
    timeout, the prior leader aborts the transfer and resumes accepting client requests." """
    cluster = Cluster()
    cluster.elect(1)
    cluster.isolate(3)
    cluster.node(1).transfer_leadership(3)
    assert cluster.node(1).status().transferee == 3
    cluster.tick(cluster.node(1).config.election_timeout_ticks, nodes=[1, 2])
    assert cluster.node(1).role is Role.LEADER
    assert cluster.node(1).status().transferee == 0  # aborted: visible to the runtime
    cluster.propose(1, b"ok")  # accepted again


def test_transfer_errors() -> None:
    """Transfer refusals have named errors: not the leader, unknown target, busy."""
    cluster = Cluster()
    cluster.elect(1)
    with pytest.raises(NotLeaderError):
        cluster.node(2).transfer_leadership(3)
    with pytest.raises(TransferError, match="not a voter"):
        cluster.node(1).transfer_leadership(9)
    cluster.isolate(2)
    cluster.node(1).transfer_leadership(2)
    with pytest.raises(TransferError, match="already in progress"):
        cluster.node(1).transfer_leadership(3)


# ---------------------------------------------------------------------- PreVote, CheckQuorum


def test_prevote_partitioned_node_does_not_raise_terms() -> None:
    """Dissertation §9.6: a server rejoining after a partition does not disrupt the
    cluster: its PreVotes fail, so its term never grows."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.isolate(3)
    cluster.tick(60)
    assert cluster.node(3).term == 1 and cluster.node(3).role is Role.PRE_CANDIDATE
    cluster.heal()
    cluster.tick(3)
    assert cluster.leader() == 1 and cluster.node(1).term == 1
    assert cluster.node(3).role is Role.FOLLOWER


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    """The contrast for §9.6: without PreVote (and CheckQuorum) the isolated node's term
    keeps growing and deposes the leader when it returns."""
    cluster = Cluster(pre_vote=False, check_quorum=False)
    cluster.elect(1)
    cluster.isolate(3)
    cluster.tick(60)
    assert cluster.node(3).term > 1
    cluster.heal()
    cluster.tick(1)
    assert cluster.node(1).term > 1


def test_prevote_does_not_change_voter_terms() -> None:
    """Dissertation §9.6: a PreVote request carries term+1 but nobody adopts it."""
    node, storage = make_node(check_quorum=False)
    node.step(RequestVote(term=5, src=2, dst=1, last_index=0, last_term=0, pre_vote=True))
    [rd] = drain(node, storage)
    [reply] = rd.messages
    assert isinstance(reply, RequestVoteResponse)
    assert node.term == 0 and reply.granted and reply.term == 5
    assert rd.hard_state is None


def test_check_quorum_isolated_leader_steps_down() -> None:
    """CheckQuorum (§6.2 / dissertation §6.2): a leader that hears from no majority within
    an election timeout steps down."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.isolate(1)
    cluster.tick(2 * cluster.node(1).config.election_timeout_ticks, nodes=[1])
    assert cluster.node(1).role is Role.FOLLOWER


def test_leader_lease_ignores_vote_requests() -> None:
    """Dissertation §4.2.3 / §6.2: a follower that heard from a leader within the election
    timeout ignores (pre)vote requests, unless they come from a leadership transfer."""
    node, storage = make_node(2)
    node.step(Heartbeat(term=1, src=1, dst=2, commit=0))
    node.step(RequestVote(term=2, src=3, dst=2, last_index=5, last_term=1))
    node.step(RequestVote(term=2, src=3, dst=2, last_index=5, last_term=1, pre_vote=True))
    replies = [m for rd in drain(node, storage) for m in rd.messages]
    assert [type(m) for m in replies] == [HeartbeatResponse]
    assert node.term == 1
    node.step(RequestVote(term=2, src=3, dst=2, last_index=5, last_term=1, transfer=True))
    assert node.term == 2 and node.status().leader == 0


# ---------------------------------------------------------------------- restart


def test_restart_resumes_term_vote_commit_and_reapplies() -> None:
    """Figure 2: currentTerm, votedFor and the log are persistent. On restart the node
    resumes them; applied starts at the snapshot, so committed entries are re-applied."""
    cluster = Cluster()
    cluster.elect(1)
    for i in range(3):
        cluster.propose(1, b"c%d" % i)
    cluster.stabilize()
    cluster.take_snapshot(2)
    cluster.propose(1, b"c3")
    cluster.stabilize()
    cluster.tick(1)
    before = cluster.storages[2].hard_state()
    node = cluster.restart(2)
    status = node.status()
    assert (status.term, status.commit) == (before.term, before.commit)
    assert status.applied == cluster.storages[2].snapshot().meta.index
    assert cluster.storages[2].hard_state() == HardState(1, before.vote, before.commit)
    cluster.process(2)
    assert cluster.commands(2) == [b"c0", b"c1", b"c2", b"c3"]


# ---------------------------------------------------------------------- the Ready contract


def test_commit_only_ready_needs_no_sync() -> None:
    """ready.py: `must_sync` is False when a Ready only moves the commit index: nothing
    that a message promises changed on disk."""
    node, storage = make_node(2)
    node.step(
        AppendEntries(
            term=1,
            src=1,
            dst=2,
            prev_index=0,
            prev_term=0,
            entries=(Entry(1, 1, EntryKind.NOOP, b""),),
            commit=0,
        )
    )
    drain(node, storage)
    node.step(Heartbeat(term=1, src=1, dst=2, commit=1))
    [rd] = drain(node, storage)
    assert rd.hard_state == HardState(1, 0, 1) and not rd.must_sync
    assert [e.index for e in rd.committed_entries] == [1]


def test_no_entries_are_acknowledged_alongside_an_unsent_snapshot() -> None:
    """ready.py: the runtime appends entries before installing a snapshot. So while a
    received snapshot waits for its Ready, appends after it are dropped (the leader
    resends them), never acknowledged in that Ready."""
    node, storage = make_node(2)
    membership = Membership(frozenset({1, 2, 3}))
    node.step(
        InstallSnapshot(
            term=1,
            src=1,
            dst=2,
            snapshot_index=5,
            snapshot_term=1,
            membership=membership,
            offset=0,
            data=b"snap",
            done=True,
        )
    )
    node.step(
        AppendEntries(
            term=1,
            src=1,
            dst=2,
            prev_index=5,
            prev_term=1,
            entries=(Entry(1, 6, EntryKind.NORMAL, b"a"),),
            commit=6,
        )
    )
    rd = node.ready()
    assert rd.snapshot is not None and not rd.entries
    assert not [m for m in rd.messages if getattr(m, "match_index", 0) == 6]
    storage.apply_snapshot(rd.snapshot)
    node.advance(rd)
    node.step(
        AppendEntries(
            term=1,
            src=1,
            dst=2,
            prev_index=5,
            prev_term=1,
            entries=(Entry(1, 6, EntryKind.NORMAL, b"a"),),
            commit=6,
        )
    )
    rd2, rd3 = drain(node, storage)
    assert [e.index for e in rd2.entries] == [6]
    assert [e.index for e in rd3.committed_entries] == [6]  # durable first, then applied
    assert storage.last_index() == 6 and node.status().commit == 6


def test_outstanding_readys_may_overlap() -> None:
    """`ready()` hands out only what is new since the previous `ready()`, so a runtime may
    hold several Readys in flight and advance them in order."""
    node, storage = make_node(voters=(1,))
    node.campaign()
    drain(node, storage)
    node.propose(b"a")
    first = node.ready()
    node.propose(b"b")
    second = node.ready()
    assert [e.data for e in first.entries] == [b"a"]
    assert [e.data for e in second.entries] == [b"b"]
    for rd in (first, second):
        storage.append(rd.entries)
        node.advance(rd)
    assert node.status().commit == 3
    [rd3] = drain(node, storage)
    assert [e.data for e in rd3.committed_entries] == [b"a", b"b"]


class StrictSnapshotStorage(MemoryStorage):
    """A storage that ignores a snapshot at an index it already has (as a disk that
    only ever moves its snapshot forward may do)."""

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index > self.snapshot().meta.index:
            super().apply_snapshot(snapshot)


def test_new_node_relearns_an_unpersisted_configuration_after_restart() -> None:
    """A new node whose first configuration never reached its disk restarts with entries
    but no configuration; the leader's snapshot gives it back, and the CONFIG entries in
    its log are replayed on top."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.storages[4] = StrictSnapshotStorage()
    cluster._start(4)
    change(cluster, 1, ADD, 4)
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.commands(4) == [b"a"]
    assert cluster.storages[4].snapshot().meta.membership.voters == frozenset()
    cluster.restart(4)
    assert cluster.node(4).membership.voters == frozenset()  # forgotten
    cluster.propose(1, b"b")
    cluster.tick(3)
    assert cluster.node(4).membership == cluster.node(1).membership
    assert cluster.node(4).role is Role.LEARNER
    assert cluster.commands(4) == [b"a", b"b"]

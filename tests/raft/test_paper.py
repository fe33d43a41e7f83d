"""Paper tests: each checks a few sentences of the Raft paper (Ongaro & Ousterhout 2014,
"In Search of an Understandable Consensus Algorithm") or of Ongaro's dissertation (2014),
named in its docstring, in the style of etcd's raft_paper_test.go."""

from __future__ import annotations

import random

import pytest

from raftsched.raft.config import RaftConfig
from raftsched.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
)
from raftsched.raft.node import RaftNode
from raftsched.raft.storage import MemoryStorage
from raftsched.raft.types import Entry, EntryKind, HardState, Membership, Role

from .harness import Cluster, drain, log_terms, make_node, outbox


def normal(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data)


def storage_with_log(terms: list[int], voters: tuple[int, ...] = (1, 2, 3)) -> MemoryStorage:
    storage = MemoryStorage(Membership(frozenset(voters)))
    storage.append([normal(i + 1, t) for i, t in enumerate(terms)])
    storage.set_hard_state(HardState(term=max(terms, default=0)))
    return storage


# ---------------------------------------------------------------------- §5.1 terms


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_higher_term_makes_any_role_a_follower(role: Role) -> None:
    """§5.1: "If a server's current term is smaller than the other's, it updates its
    current term to the larger value. If a candidate or leader discovers that its term is
    out of date, it immediately reverts to follower state." """
    node, storage = make_node(pre_vote=False)
    if role is not Role.FOLLOWER:
        node.campaign()
    if role is Role.LEADER:
        node.step(RequestVoteResponse(term=1, src=2, dst=1, granted=True))
    assert node.role is role
    node.step(Heartbeat(term=5, src=3, dst=1, commit=0))
    assert (node.role, node.term, node.leader) == (Role.FOLLOWER, 5, 3)
    assert drain(node, storage)[0].hard_state == HardState(5, 0, 0)


def test_stale_term_messages_are_rejected() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the
    request." The answer carries the newer term so the stale leader steps down."""
    node, storage = make_node(storage=storage_with_log([1, 2]))
    node.step(
        AppendEntries(
            term=1, src=2, dst=1, prev_index=2, prev_term=2, entries=(normal(3, 1),), commit=3
        )
    )
    readies = drain(node, storage)
    assert storage.last_index() == 2  # nothing appended
    [reply] = outbox(readies)
    assert isinstance(reply, AppendEntriesResponse)
    assert (reply.term, reply.success) == (2, False)


# ---------------------------------------------------------------------- §5.2 elections


def test_nodes_start_as_followers() -> None:
    """§5.2: "When servers start up, they begin as followers." """
    node, _ = make_node()
    assert node.role is Role.FOLLOWER and node.term == 0 and node.leader == 0


def test_follower_starts_election_after_timeout() -> None:
    """§5.2: "If a follower receives no communication over a period of time called the
    election timeout, then it ... begins an election": it increments its term, votes for
    itself and issues RequestVote RPCs to each of the other servers. The vote is persisted
    before the requests go out (they sit in `messages`, after a sync)."""
    node, storage = make_node(pre_vote=False)
    for _ in range(2 * node.config.election_timeout_ticks):
        node.tick()
    assert node.role is Role.CANDIDATE and node.term == 1
    [rd] = drain(node, storage)
    assert rd.hard_state == HardState(1, 1, 0) and rd.must_sync
    assert sorted((m.dst, m.term) for m in rd.messages if isinstance(m, RequestVote)) == [
        (2, 1),
        (3, 1),
    ]
    assert not rd.eager_messages


def test_election_timeouts_are_randomized() -> None:
    """§5.2: "election timeouts are chosen randomly from a fixed interval" — here
    [T, 2T), drawn from the injected rng."""
    timeout_ticks = 10
    seen = set()
    for seed in range(60):
        node, _ = make_node(seed=seed, pre_vote=False, election_timeout_ticks=timeout_ticks)
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        assert timeout_ticks <= ticks < 2 * timeout_ticks
        seen.add(ticks)
    assert len(seen) > 5


def test_same_rng_seed_gives_same_timeouts() -> None:
    """Determinism: the node draws randomness only from the injected rng."""

    def timeout(seed: int) -> int:
        node = RaftNode(
            RaftConfig(1, pre_vote=False),
            MemoryStorage(Membership(frozenset({1, 2}))),
            random.Random(seed),
        )
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        return ticks

    assert [timeout(s) for s in range(10)] == [timeout(s) for s in range(10)]


@pytest.mark.parametrize(
    ("size", "grants", "rejects", "expected"),
    [
        (1, [], [], Role.LEADER),
        (3, [2], [], Role.LEADER),
        (3, [], [2], Role.CANDIDATE),
        (3, [], [2, 3], Role.FOLLOWER),
        (5, [2], [3], Role.CANDIDATE),
        (5, [2, 3], [], Role.LEADER),
        (5, [], [2, 3, 4], Role.FOLLOWER),
    ],
)
def test_candidate_needs_a_majority(
    size: int, grants: list[int], rejects: list[int], expected: Role
) -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the
    servers in the full cluster for the same term." Losing a majority ends the campaign."""
    node, _ = make_node(voters=range(1, size + 1), pre_vote=False)
    node.campaign()
    for voter in grants:
        node.step(RequestVoteResponse(term=1, src=voter, dst=1, granted=True))
    for voter in rejects:
        node.step(RequestVoteResponse(term=1, src=voter, dst=1, granted=False))
    assert node.role is expected


def test_one_vote_per_term_first_come_first_served() -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis." A repeated request from the same candidate is granted
    again (the first answer may have been lost)."""
    node, storage = make_node(check_quorum=False)
    node.step(RequestVote(term=1, src=2, dst=1, last_index=0, last_term=0))
    node.step(RequestVote(term=1, src=3, dst=1, last_index=0, last_term=0))
    node.step(RequestVote(term=1, src=2, dst=1, last_index=0, last_term=0))
    readies = drain(node, storage)
    answers = [(m.dst, m.granted) for m in outbox(readies) if isinstance(m, RequestVoteResponse)]
    assert answers == [(2, True), (3, False), (2, True)]
    assert storage.hard_state() == HardState(1, 2, 0)


def test_candidate_accepts_leader_of_its_term() -> None:
    """§5.2: "If the leader's term ... is at least as large as the candidate's current
    term, then the candidate recognizes the leader as legitimate and returns to follower
    state." """
    node, _ = make_node(pre_vote=False)
    node.campaign()
    node.step(AppendEntries(term=1, src=3, dst=1, prev_index=0, prev_term=0, entries=(), commit=0))
    assert (node.role, node.leader, node.term) == (Role.FOLLOWER, 3, 1)


def test_split_vote_leads_to_a_new_election() -> None:
    """§5.2: "When this happens, each candidate will time out and start a new election by
    incrementing its term." """
    node, _ = make_node(pre_vote=False)
    node.campaign()
    assert node.term == 1
    for _ in range(2 * node.config.election_timeout_ticks):
        node.tick()
    assert node.role is Role.CANDIDATE and node.term == 2


def test_leader_sends_heartbeats_every_interval() -> None:
    """§5.2: "Leaders send periodic heartbeats ... to all followers in order to maintain
    their authority." Heartbeats are eager: they promise nothing about the leader's disk."""
    node, storage = make_node(heartbeat_interval_ticks=2, pre_vote=False)
    node.campaign()
    node.step(RequestVoteResponse(term=1, src=2, dst=1, granted=True))
    drain(node, storage)
    node.tick()
    assert not [m for m in outbox(drain(node, storage)) if isinstance(m, Heartbeat)]
    node.tick()
    [rd] = drain(node, storage)
    assert sorted(m.dst for m in rd.eager_messages if isinstance(m, Heartbeat)) == [2, 3]


# ---------------------------------------------------------------------- §5.3 replication


def test_leader_appends_noop_and_replicates_proposals() -> None:
    """§5.3 / §8: the leader appends the command to its log and issues AppendEntries in
    parallel; a new leader first appends a no-op entry of its term."""
    cluster = Cluster()
    cluster.elect(1)
    index, term = cluster.propose(1, b"cmd")
    assert (index, term) == (2, 1)
    cluster.stabilize()
    for node_id in (1, 2, 3):
        assert log_terms(cluster.storages[node_id]) == [1, 1]
        assert cluster.commands(node_id) == [b"cmd"]
    assert cluster.storages[2].entries(1, 2, 100)[0].kind is EntryKind.NOOP


def test_follower_rejects_append_when_prev_does_not_match() -> None:
    """§5.3 consistency check: "If the follower does not find an entry in its log with the
    same index and term, then it refuses the new entries." """
    node, storage = make_node(storage=storage_with_log([1, 1, 2]))
    node.step(
        AppendEntries(
            term=3, src=2, dst=1, prev_index=3, prev_term=3, entries=(normal(4, 3),), commit=0
        )
    )
    node.step(
        AppendEntries(
            term=3, src=2, dst=1, prev_index=5, prev_term=3, entries=(normal(6, 3),), commit=0
        )
    )
    replies = outbox(drain(node, storage))
    assert [r.success for r in replies if isinstance(r, AppendEntriesResponse)] == [False, False]
    assert log_terms(storage) == [1, 1, 2]


def test_follower_truncates_conflicting_suffix() -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different
    terms), delete the existing entry and all that follow it"; entries already present
    are kept (a stale, shorter append does not truncate)."""
    node, storage = make_node(storage=storage_with_log([1, 1, 2, 2, 2]))
    node.step(
        AppendEntries(
            term=3,
            src=2,
            dst=1,
            prev_index=2,
            prev_term=1,
            entries=(normal(3, 3), normal(4, 3)),
            commit=0,
        )
    )
    drain(node, storage)
    assert log_terms(storage) == [1, 1, 3, 3]
    node.step(
        AppendEntries(
            term=3, src=2, dst=1, prev_index=2, prev_term=1, entries=(normal(3, 3),), commit=0
        )
    )  # stale duplicate
    [rd] = drain(node, storage)
    assert log_terms(storage) == [1, 1, 3, 3]
    [reply] = rd.messages
    assert isinstance(reply, AppendEntriesResponse) and reply.match_index == 3


def test_follower_commit_is_capped_by_last_new_entry() -> None:
    """§5.3 / Figure 2: "If leaderCommit > commitIndex, set commitIndex =
    min(leaderCommit, index of last new entry)." """
    node, storage = make_node(storage=storage_with_log([1, 1, 1, 1]))
    node.step(
        AppendEntries(
            term=1, src=2, dst=1, prev_index=1, prev_term=1, entries=(normal(2, 1),), commit=4
        )
    )
    drain(node, storage)
    assert node.status().commit == 2


def test_follower_replies_only_after_persisting() -> None:
    """§5.3 + Ready contract: a follower's AppendEntriesResponse is in `messages` of the
    same Ready as the entries it acknowledges, so it goes out after the fsync."""
    node, _ = make_node()
    node.step(
        AppendEntries(
            term=1, src=2, dst=1, prev_index=0, prev_term=0, entries=(normal(1, 1),), commit=0
        )
    )
    rd = node.ready()
    assert [e.index for e in rd.entries] == [1] and rd.must_sync
    [reply] = rd.messages
    assert isinstance(reply, AppendEntriesResponse) and reply.match_index == 1
    assert not rd.eager_messages


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms"),
    [
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 4, 4, 5, 5, 6, 6]),  # Figure 7 (a)
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 4]),  # (b)
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),  # (c)
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),  # (d)
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 4, 4, 4, 4]),  # (e)
        ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),  # (f)
    ],
)
def test_leader_brings_every_figure7_follower_in_line(
    leader_terms: list[int], follower_terms: list[int]
) -> None:
    """§5.3, Figure 7: whatever the follower's log, the leader finds the latest point of
    agreement, deletes the follower's entries after it and sends its own. With the
    follower's reject hints (§5.3, "the follower can include the term of the conflicting
    entry") this takes at most one rejection per conflicting term."""
    cluster = Cluster((1, 2, 3), pre_vote=False)
    for node_id, terms in ((1, leader_terms), (2, follower_terms), (3, leader_terms)):
        cluster.storages[node_id].append([normal(i + 1, t) for i, t in enumerate(terms)])
        cluster.storages[node_id].set_hard_state(HardState(term=7))
        cluster.restart(node_id)
    cluster.elect(1)  # with node 3's vote: some followers' logs are "more up to date"
    rejections = [
        m
        for m in cluster.sent
        if isinstance(m, AppendEntriesResponse) and not m.success and m.src == 2
    ]
    assert len(rejections) <= len(set(follower_terms)) + 1
    assert log_terms(cluster.storages[2]) == [*leader_terms, 8]
    assert cluster.node(2).status().commit == len(leader_terms) + 1


# ---------------------------------------------------------------------- §5.4 safety


@pytest.mark.parametrize(
    ("voter_terms", "candidate_last", "granted"),
    [
        ([1, 2], (2, 2), True),  # identical
        ([1, 2], (3, 2), True),  # same last term, longer
        ([1, 2], (1, 2), False),  # same last term, shorter
        ([1, 2], (1, 3), True),  # higher last term wins even if shorter
        ([1, 2], (5, 1), False),  # lower last term loses even if longer
    ],
)
def test_vote_requires_up_to_date_log(
    voter_terms: list[int], candidate_last: tuple[int, int], granted: bool
) -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of
    the candidate ... If the logs have last entries with different terms, then the log
    with the later term is more up-to-date. If the logs end with the same term, then
    whichever log is longer is more up-to-date." """
    node, storage = make_node(storage=storage_with_log(voter_terms), check_quorum=False)
    last_index, last_term = candidate_last
    node.step(RequestVote(term=3, src=2, dst=1, last_index=last_index, last_term=last_term))
    [reply] = outbox(drain(node, storage))
    assert isinstance(reply, RequestVoteResponse) and reply.granted is granted


def _figure8(node_cls: type[RaftNode]) -> Cluster:
    """Play Figure 8 of the paper on five nodes (term numbers shifted by one: the first
    leader's term is 1), stopping just where S1 could commit an old-term entry by counting.
    max_entries_per_append=1 lets S1 ship index 2 without its own no-op (index 3)."""
    cluster = Cluster(
        range(1, 6),
        node_cls=node_cls,
        pre_vote=False,
        check_quorum=False,
        max_entries_per_append=1,
    )
    cluster.elect(1)  # term 1, no-op at index 1 everywhere
    # (a) S1 replicates index 2 (term 1) to S2 only.
    for other in (3, 4, 5):
        cluster.cut(1, other)
    cluster.propose(1, b"from-S1")
    cluster.stabilize()
    assert log_terms(cluster.storages[2]) == [1, 1]
    # (b) S1 crashes; S5 wins term 2 with S3, S4 and itself, logs index 2 only locally.
    cluster.stop(1)
    cluster.cut(5, 2)
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.src == 5
    cluster.elect(5)
    assert log_terms(cluster.storages[5]) == [1, 2]
    cluster.stop(5)
    # (c) S1 restarts and wins term 3 (S2, S3, S4), replicates index 2 to S3 but not its
    # own no-op at index 3: index 2 (term 1) is now on a majority.
    cluster.heal()
    cluster.restart(1)
    cluster.drop = lambda m: isinstance(m, AppendEntries) and any(e.index >= 3 for e in m.entries)
    cluster.node(1).campaign()  # term 2: S3 and S4 already voted for S5
    cluster.stabilize()
    cluster.node(1).campaign()  # term 3
    cluster.stabilize()
    assert cluster.node(1).role is Role.LEADER and cluster.node(1).term == 3
    # The append S1 sends once backtracking reaches index 2 (its no-op travels later).
    [old_entry] = cluster.storages[1].entries(2, 3, 1 << 20)
    for follower in (2, 3):
        cluster.node(follower).step(
            AppendEntries(
                term=3,
                src=1,
                dst=follower,
                prev_index=1,
                prev_term=1,
                entries=(old_entry,),
                commit=1,
            )
        )
        cluster.process(follower)
    cluster.stabilize()
    assert log_terms(cluster.storages[3]) == [1, 1]
    return cluster


def test_figure8_old_term_entry_not_committed_by_counting() -> None:
    """§5.4.2, Figure 8: "Raft never commits log entries from previous terms by counting
    replicas." Index 2 (term 1) is on S1, S2, S3, a majority, yet S1 (term 3) must not
    commit it: S5 could still be elected and overwrite it, which it then does, safely."""
    cluster = _figure8(RaftNode)
    assert cluster.node(1).status().commit == 1
    # (d) S1 crashes; S5 returns, wins term 4 and overwrites index 2 everywhere.
    cluster.stop(1)
    cluster.drop = lambda m: False
    cluster.restart(5)
    for _ in range(3):
        if cluster.node(5).role is Role.LEADER:
            break
        cluster.node(5).campaign()
        cluster.stabilize()
    assert cluster.node(5).role is Role.LEADER
    cluster.tick(2)
    assert log_terms(cluster.storages[3])[:2] == [1, 2]
    assert b"from-S1" not in cluster.commands(3)


class CountingOldTermsNode(RaftNode):
    """The Figure 8 bug: commits any entry on a majority, whatever its term."""

    def _commit_term_ok(self, index: int) -> bool:
        return True


def test_figure8_bug_is_caught() -> None:
    """§5.4.2, Figure 8, negative: with the commit-term rule overridden, S1 commits index 2
    by counting, and S5's later overwrite of a committed entry trips the safety checks."""
    cluster = _figure8(CountingOldTermsNode)
    assert cluster.node(1).status().commit == 2  # the unsafe commit happened
    cluster.stop(1)
    cluster.drop = lambda m: False
    cluster.restart(5)
    with pytest.raises(AssertionError):
        for _ in range(3):
            cluster.node(5).campaign()
            cluster.stabilize()
            cluster.tick(2)


def test_leader_counts_itself_only_after_its_own_fsync() -> None:
    """Dissertation §10.2.1: the leader may send entries before they are durable locally,
    but it counts itself towards a commit only once `advance` reports them durable."""
    node, storage = make_node(voters=(1,))
    node.campaign()
    drain(node, storage)
    node.propose(b"a")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"a"] and not rd.committed_entries
    assert node.status().commit == 1
    storage.append(rd.entries)
    node.advance(rd)
    assert node.status().commit == 2
    [rd2] = drain(node, storage)
    assert [e.data for e in rd2.committed_entries] == [b"a"]


def test_leader_sends_appends_eagerly() -> None:
    """Dissertation §10.2.1: AppendEntries go in `eager_messages`, to be sent in parallel
    with the leader's own fsync."""
    cluster = Cluster()
    cluster.elect(1)
    cluster.node(1).propose(b"a")
    rd = cluster.node(1).ready()
    assert {m.dst for m in rd.eager_messages if isinstance(m, AppendEntries)} == {2, 3}
    assert not [m for m in rd.messages if isinstance(m, AppendEntries)]

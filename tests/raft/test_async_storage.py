"""The core under the networked runtime's storage model: overlapping Readys (ready.py).

Theory of operation. `AsyncStorageCluster` drives every node the way the runtime does: it
takes each Ready as soon as there is one, sends its `eager_messages` at once, also sends its
`messages` at once when `must_sync` is False (the contract says they promise nothing
unsynced), and queues the Ready for a storage worker. Only when the test "syncs" the node
are queued Readys persisted in hand-out order, their remaining messages sent, their
committed entries applied and the Readys advanced. Meanwhile the node keeps taking new
Readys. A crash keeps an arbitrary prefix of the queued Readys' writes (written, never
acknowledged) and loses the rest.

Checked whenever a message leaves a node (the rules of docs/raft.md, "Ready and its
ordering rules"):
- no message carrying a term leaves before that term is durable on the sender (PreVote
  traffic excepted: nobody adopts its term), and a granted vote is durable before it leaves;
- a successful AppendEntriesResponse acknowledges only entries in the sender's durable log.
And throughout, by the harness: one leader per term, the same entry applied at each index
everywhere, linearizable read indexes. At the end, once faults stop: a leader emerges and
a new command is applied by every member.

Topologies include one voter with a learner and two voters, where the leader's own vote
or its own disk decides more (defect 1 of issue 6 needed the first), up to five voters.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.raft.errors import RaftError
from raftsched.raft.messages import (
    AppendEntriesResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.storage import persist_ready
from raftsched.raft.types import ConfChange, ConfChangeKind, NodeId, Role

from .harness import Cluster

STEPS = 300
BUG_HUNT_SCHEDULES = 200
TOPOLOGIES: dict[str, tuple[tuple[NodeId, ...], tuple[NodeId, ...]]] = {
    "1 voter + learner": ((1,), (2,)),
    "2 voters": ((1, 2), ()),
    "3 voters": ((1, 2, 3), ()),
    "3 voters + learner": ((1, 2, 3), (4,)),
    "5 voters": ((1, 2, 3, 4, 5), ()),
}


class AsyncStorageCluster(Cluster):
    def __init__(self, voters: tuple[NodeId, ...], **kwargs: Any) -> None:
        self.pending: dict[NodeId, deque[Ready]] = {}
        self.synchronous = False  # the liveness phase syncs every Ready at once
        super().__init__(voters, **kwargs)

    def _start(self, node_id: NodeId) -> None:
        super()._start(node_id)
        self.pending[node_id] = deque()

    # ------------------------------------------------------------------ the runtime

    def process(self, node_id: NodeId) -> None:
        if node_id in self.stopped:
            return
        node = self.nodes[node_id]
        while node.has_ready():
            rd = node.ready()
            self._send_checked(node_id, rd.eager_messages)
            if not rd.must_sync:
                self._send_checked(node_id, rd.messages)  # promise nothing unsynced
            self.pending[node_id].append(rd)
            if node.role is Role.LEADER:
                previous = self.leaders_by_term.setdefault(node.term, node_id)
                assert previous == node_id, f"two leaders in term {node.term}"
            if self.synchronous:
                self.sync(node_id, len(self.pending[node_id]))

    def sync(self, node_id: NodeId, count: int) -> None:
        """The storage worker finishes the first `count` queued Readys, in order."""
        node, storage, app = self.nodes[node_id], self.storages[node_id], self.apps[node_id]
        queue = self.pending[node_id]
        for _ in range(min(count, len(queue))):
            rd = queue.popleft()
            persist_ready(storage, rd)
            if rd.snapshot is not None:
                app.restore(rd.snapshot.meta.index, rd.snapshot.data)
            if rd.must_sync:
                self._send_checked(node_id, rd.messages)
            for entry in rd.committed_entries:
                self._apply(node_id, app, entry)
            for read in rd.read_states:
                floor = self.read_floors.get(read.context)
                assert floor is None or read.index >= floor, f"stale read {read} < {floor}"
            app.read_states.extend(rd.read_states)
            node.advance(rd)
        self.process(node_id)

    def crash(self, node_id: NodeId, rng: random.Random) -> None:
        """Power loss: an arbitrary prefix of the queued writes reached the disk (their
        messages were never sent), the rest is lost."""
        queue = self.pending[node_id]
        for rd in list(queue)[: rng.randint(0, len(queue))]:
            persist_ready(self.storages[node_id], rd)
        self.restart(node_id)
        self.process(node_id)

    # ------------------------------------------------------------------ the checks

    def _send_checked(self, node_id: NodeId, messages: tuple[Message, ...]) -> None:
        hard_state, _ = self.storages[node_id].initial_state()
        for m in messages:
            pre_vote = isinstance(m, RequestVote | RequestVoteResponse) and m.pre_vote
            assert pre_vote or m.term <= hard_state.term, (
                f"node {node_id} sent {m} before term {m.term} was durable"
                f" (durable term {hard_state.term})"
            )
            if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
                # Durable, or superseded by a durable later term (no vote in m.term again).
                voted = (hard_state.term, hard_state.vote) == (m.term, m.dst)
                assert voted or hard_state.term > m.term, (
                    f"node {node_id} granted {m} before its vote was durable ({hard_state})"
                )
            if isinstance(m, AppendEntriesResponse) and m.success:
                durable = self.storages[node_id].last_index()
                assert m.match_index <= durable, (
                    f"node {node_id} acknowledged index {m.match_index}, durable up to {durable}"
                )
        self._send(messages)


@dataclass(frozen=True)
class Schedule:
    seed: int
    topology: str
    drop_rate: float
    crash_rate: float
    membership_changes: bool = False


SCHEDULES = st.builds(
    Schedule,
    seed=st.integers(0, 2**32 - 1),
    topology=st.sampled_from(sorted(TOPOLOGIES)),
    drop_rate=st.sampled_from([0.0, 0.1]),
    crash_rate=st.sampled_from([0.0, 0.03]),
    membership_changes=st.booleans(),
)


def run_schedule(schedule: Schedule, node_cls: type[RaftNode] = RaftNode) -> AsyncStorageCluster:
    rng = random.Random(schedule.seed)
    voters, learners = TOPOLOGIES[schedule.topology]
    cluster = AsyncStorageCluster(
        voters,
        learners=learners,
        seed=schedule.seed,
        node_cls=node_cls,
        election_timeout_ticks=5,
        max_inflight_appends=rng.choice([1, 4]),
        snapshot_chunk_bytes=rng.choice([3, 64]),
    )
    ids = sorted(cluster.nodes)
    next_id = max(ids) + 1
    context = 0
    for _ in range(STEPS):
        roll = rng.random()
        if roll < 0.25:
            for node_id in ids:
                if rng.random() < 0.8:
                    cluster.node(node_id).tick()
                    cluster.process(node_id)
        elif roll < 0.62:
            leader = cluster.leader()
            if leader:
                with contextlib.suppress(RaftError):
                    cluster.node(leader).propose_batch([b"%d" % rng.randrange(10**9)])
                cluster.process(leader)
        elif roll < 0.62 + schedule.crash_rate:
            cluster.crash(rng.choice(ids), rng)
        elif roll < 0.70:
            cluster.isolated = {rng.choice(ids)} if rng.random() < 0.5 else set()
        elif roll < 0.74:
            node_id = rng.choice(ids)
            context += 1
            with contextlib.suppress(RaftError):
                cluster.read_index(node_id, context)
        elif roll < 0.76:
            node_id = rng.choice(ids)
            app, storage = cluster.apps[node_id], cluster.storages[node_id]
            if app.applied_index > storage.snapshot().meta.index:
                cluster.take_snapshot(node_id)
        elif roll < 0.78:
            leader = cluster.leader()
            if leader:
                target = rng.choice(sorted(cluster.node(leader).membership.voters))
                with contextlib.suppress(RaftError):
                    cluster.node(leader).transfer_leadership(target)
                cluster.process(leader)
        elif roll < 0.80 and schedule.membership_changes:
            next_id = change_membership(cluster, rng, next_id)
            ids = sorted(cluster.nodes)
        for node_id in ids:  # each storage worker finishes some of its queue, or none
            if rng.random() < 0.6:
                cluster.sync(node_id, rng.randint(1, 4))
        deliver_some(cluster, rng, schedule.drop_rate)
    cluster.check_safety()
    return cluster


def change_membership(cluster: AsyncStorageCluster, rng: random.Random, next_id: NodeId) -> int:
    """A walk through topologies: add a learner, promote one, or remove a member (never
    the last voter), one change at a time as the leader allows."""
    leader = cluster.leader()
    if not leader:
        return next_id
    node = cluster.node(leader)
    membership = node.membership
    change: ConfChange
    if membership.learners and rng.random() < 0.5:
        change = ConfChange(ConfChangeKind.PROMOTE, rng.choice(sorted(membership.learners)))
    elif len(membership.members) < 4 and rng.random() < 0.6:
        change = ConfChange(ConfChangeKind.ADD_LEARNER, next_id)
    else:
        change = ConfChange(ConfChangeKind.REMOVE, rng.choice(sorted(membership.members)))
    try:
        node.propose_conf_change(change)
    except RaftError:
        return next_id
    if change.kind is ConfChangeKind.ADD_LEARNER:
        cluster.add_node(next_id)
        next_id += 1
    cluster.process(leader)
    return next_id


def deliver_some(cluster: Cluster, rng: random.Random, drop_rate: float) -> None:
    queue, cluster.queue = cluster.queue, []
    for message in queue:
        if rng.random() < 0.2:
            cluster.queue.append(message)  # delayed: overtaken by later messages
        elif cluster.can_deliver(message) and rng.random() >= drop_rate:
            cluster.node(message.dst).step(message)
            cluster.process(message.dst)


def check_liveness(cluster: AsyncStorageCluster) -> None:
    cluster.heal()
    cluster.synchronous = True
    for node_id in sorted(cluster.nodes):
        cluster.sync(node_id, len(cluster.pending[node_id]))
    leader = 0
    for _ in range(100):
        cluster.tick(1)
        leader = cluster.leader()
        if leader:
            try:
                cluster.node(leader).propose(b"final")
                cluster.process(leader)
                break
            except RaftError:
                continue
    assert leader, "no leader once the faults stopped"
    cluster.tick(10)
    for node_id in sorted(cluster.node(leader).membership.members):
        assert cluster.commands(node_id)[-1:] == [b"final"], node_id


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(SCHEDULES)
def test_overlapping_readys_keep_raft_safe_and_live(schedule: Schedule) -> None:
    check_liveness(run_schedule(schedule))


class EagerBeforeTermIsDurable(RaftNode):
    """Defect 1 of issue 6: the leader's messages leave before its term is durable."""

    def _may_send_eagerly(self) -> bool:
        return True


class NoSyncForEarlierWrites(RaftNode):
    """Defect 4 of issue 6: a Ready with no writes of its own never asks for a sync, even
    when its messages acknowledge an earlier Ready's writes that are not durable yet."""

    def ready(self) -> Ready:
        rd = super().ready()
        if rd.hard_state is None and not rd.entries and rd.snapshot is None:
            return replace(rd, must_sync=False)
        return rd


@pytest.mark.parametrize(
    ("node_cls", "violation"),
    [
        (EagerBeforeTermIsDurable, "before term"),
        # Its messages promise an earlier Ready's new term or its entries.
        (NoSyncForEarlierWrites, "before term|before its vote|acknowledged index"),
    ],
)
def test_the_checks_catch_the_seeded_defects(node_cls: type[RaftNode], violation: str) -> None:
    topologies = sorted(TOPOLOGIES)
    for seed in range(BUG_HUNT_SCHEDULES):
        schedule = Schedule(seed, topologies[seed % len(topologies)], 0.1, 0.03)
        try:
            run_schedule(schedule, node_cls)
        except AssertionError as failure:
            assert re.search(violation, str(failure)), failure
            run_schedule(schedule)  # the correct node survives the same schedule
            return
    pytest.fail(f"{node_cls.__name__} survived {BUG_HUNT_SCHEDULES} schedules")

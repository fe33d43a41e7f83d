"""The membership-change fault: replace one voter by a fresh node, one server at a time.

Theory of operation: remove a follower, then add a node with a never-used id as a learner,
then promote it once it has caught up (dissertation §4.2.1: learners first, so a new voter
does not stall commits while it catches up). Each step is re-proposed every few ticks on
whichever node leads now (proposals may be refused or lost with their leader) and is done
once the leader's *applied* configuration shows it, i.e. once it is committed. The removed
node is stopped for good; its id is never reused (SPEC §3).
"""

from __future__ import annotations

import contextlib
import random

from raftsched.raft.errors import RaftError
from raftsched.raft.types import ConfChange, ConfChangeKind, NodeId

from .cluster import SimCluster
from .events import UNITS_PER_TICK
from .node_host import NodeHost, RaftCore


class MembershipChange:
    """Replace one voter: remove it, add a fresh id as learner, promote it once caught up.

    Driven by `step` every few ticks until done; every step re-proposes what is missing on
    the current leader (proposals may be refused or lost), and checks progress on the
    leader's applied configuration, which is committed."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self.victim: NodeId = 0
        self.joiner: NodeId = 0
        self.phase = "idle"  # idle -> removing -> adding -> promoting -> idle
        self.completed = 0

    def begin(self, rng: random.Random) -> bool:
        if self.phase != "idle":
            return False
        leader = self._cluster.leader()
        if leader is None:
            return False
        voters = sorted(leader.applied_membership.voters - {leader.node_id})
        if not voters:
            return False
        self.victim = rng.choice(voters)
        self.phase = "removing"
        self._cluster.trace(f"membership: removing node {self.victim}")
        self._schedule()
        return True

    def _schedule(self) -> None:
        self._cluster.loop.call_later(3 * UNITS_PER_TICK, self.step)

    def busy(self) -> bool:
        return self.phase != "idle"

    def step(self) -> None:
        cluster = self._cluster
        leader = cluster.leader()
        if leader is None:
            self._schedule()
            return
        applied = leader.applied_membership
        if self.phase == "removing":
            if self.victim in applied.removed:
                cluster.hosts[self.victim].retire()
                cluster.trace(f"membership: node {self.victim} removed and stopped")
                joiner = cluster.add_fresh_node()
                self.joiner = joiner.node_id
                self.phase = "adding"
            else:
                self._propose(leader, ConfChange(ConfChangeKind.REMOVE, self.victim))
        elif self.phase == "adding":
            if self.joiner in applied.learners or self.joiner in applied.voters:
                self.phase = "promoting"
                cluster.trace(f"membership: node {self.joiner} is a learner")
            else:
                self._propose(leader, ConfChange(ConfChangeKind.ADD_LEARNER, self.joiner))
        elif self.phase == "promoting":
            if self.joiner in applied.voters:
                self.phase = "idle"
                self.completed += 1
                cluster.trace(f"membership: node {self.joiner} is a voter")
                return
            status = leader.status()
            if status is not None and status.match.get(self.joiner, 0) >= status.commit - 5:
                self._propose(leader, ConfChange(ConfChangeKind.PROMOTE, self.joiner))
        self._schedule()

    def _propose(self, leader: NodeHost, change: ConfChange) -> None:
        def action(core: RaftCore) -> None:
            # Refused (another change pending, no entry of the term committed yet): the next
            # step retries.
            with contextlib.suppress(RaftError):
                core.propose_conf_change(change)

        leader.call(action)

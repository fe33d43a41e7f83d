"""The membership faults: replace one voter, or walk the configuration through small ones.

Theory of operation: a change is a plan of single-server steps (dissertation §4.1), run one
at a time: `remove` a voter other than the current leader (resolved when the step starts;
the node is stopped for good, its id never reused, SPEC §3), `add` a node with a fresh id
as a learner, `promote` a learner once it has caught up (§4.2.1: learners first, so a new
voter does not stall commits while it catches up). Each step is re-proposed every few
ticks on whichever node leads now (proposals may be refused or lost with their leader) and
is done once the leader's *applied* configuration shows it, i.e. once it is committed.

Two plans: `replace` (remove a voter, add a fresh learner, promote it: the size stays) and
`walk` (remove voters one by one down to one or two voters, each replaced by a fresh
learner, then promote the learners back up to the original size). A walk passes through the
topologies a cluster of 1 voter + learners and of 2 voters, where quorums are the
smallest: a single voter elects itself without asking anyone (defect 1 of issue 6).
"""

from __future__ import annotations

import contextlib
import random
from collections import deque

from raftsched.raft.errors import RaftError
from raftsched.raft.types import ConfChange, ConfChangeKind, NodeId

from .cluster import SimCluster
from .events import UNITS_PER_TICK
from .node_host import NodeHost, RaftCore

PROMOTE_LAG_ENTRIES = 5
"""A learner is promoted once its match index is within this many entries of the commit."""


class MembershipChange:
    """Runs one plan of single-server steps at a time (see the module docstring).

    Driven by `step` every few ticks until done; every step re-proposes what is missing on
    the current leader, and checks progress on the leader's applied configuration."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self._plan: deque[tuple[str, int]] = deque()  # (step, index into self._joiners)
        self._joiners: list[NodeId] = []
        self.victim: NodeId = 0
        self.phase = "idle"  # idle, or the running step: removing / adding / promoting
        self.plan_name = ""
        self.completed = 0

    def begin(self, rng: random.Random, *, walk: bool = False) -> bool:
        if self.phase != "idle":
            return False
        leader = self._cluster.leader()
        if leader is None:
            return False
        applied = leader.applied_membership
        voters = len(applied.voters)
        if walk:
            low = rng.randint(1, 2)
            if voters <= low:
                return False
            removals = voters - low
            plan = [step for i in range(removals) for step in (("remove", i), ("add", i))]
            plan += [("promote", i) for i in range(removals)]
        else:
            if not applied.voters - {leader.node_id}:
                return False
            plan = [("remove", 0), ("add", 0), ("promote", 0)]
        self._plan = deque(plan)
        self._joiners = []
        self.plan_name = "walk" if walk else "replace"
        self._cluster.trace(
            f"membership: {self.plan_name}: " + ", ".join(f"{s} #{i}" for s, i in plan)
        )
        self._next_step(rng)
        return True

    def busy(self) -> bool:
        return self.phase != "idle"

    def _schedule(self) -> None:
        self._cluster.loop.call_later(3 * UNITS_PER_TICK, self.step)

    def _next_step(self, rng: random.Random | None = None) -> None:
        cluster = self._cluster
        if not self._plan:
            self.phase = "idle"
            self.completed += 1
            cluster.trace(f"membership: {self.plan_name} done")
            return
        step, i = self._plan[0]
        if step == "remove":
            leader = cluster.leader()
            voters = sorted(leader.applied_membership.voters) if leader is not None else []
            candidates = [v for v in voters if leader is not None and v != leader.node_id]
            if not candidates:
                self._schedule()  # no leader now, or it is the only voter: try again later
                self.phase = "removing"
                self.victim = 0
                return
            self.victim = rng.choice(candidates) if rng is not None else candidates[0]
            self.phase = "removing"
            cluster.trace(f"membership: removing node {self.victim}")
        elif step == "add":
            joiner = cluster.add_fresh_node()
            self._joiners.append(joiner.node_id)
            self.phase = "adding"
        else:
            self.phase = "promoting"
            cluster.trace(f"membership: promoting node {self._joiners[i]}")
        self._schedule()

    def step(self) -> None:
        cluster = self._cluster
        leader = cluster.leader()
        if leader is None or not self._plan:
            if self._plan:
                self._schedule()
            return
        applied = leader.applied_membership
        # A removed node is stopped for good, whichever step's proposal removed it (an
        # earlier victim's removal may commit late, after its leader changed).
        newly_removed = False
        for node_id in sorted(applied.removed):
            host = cluster.hosts.get(node_id)
            if host is not None and not host.retired:
                host.retire()
                newly_removed = True
                cluster.trace(f"membership: node {node_id} removed and stopped")
        step, i = self._plan[0]
        if step == "remove":
            if newly_removed or self.victim in applied.removed:
                self._plan.popleft()
                self._next_step()
                return
            if self.victim in (0, leader.node_id):
                # Not chosen yet, or the victim leads now: choose again among the others.
                others = sorted(applied.voters - {leader.node_id})
                if not others:
                    self._schedule()
                    return
                self.victim = others[0]
                cluster.trace(f"membership: removing node {self.victim}")
            self._propose(leader, ConfChange(ConfChangeKind.REMOVE, self.victim))
        elif step == "add":
            joiner = self._joiners[i]
            if joiner in applied.learners or joiner in applied.voters:
                cluster.trace(f"membership: node {joiner} is a learner")
                self._plan.popleft()
                self._next_step()
                return
            self._propose(leader, ConfChange(ConfChangeKind.ADD_LEARNER, joiner))
        else:
            joiner = self._joiners[i]
            if joiner in applied.voters:
                cluster.trace(f"membership: node {joiner} is a voter")
                self._plan.popleft()
                self._next_step()
                return
            status = leader.status()
            if status is not None and status.match.get(joiner, 0) >= (
                status.commit - PROMOTE_LAG_ENTRIES
            ):
                self._propose(leader, ConfChange(ConfChangeKind.PROMOTE, joiner))
        self._schedule()

    def _propose(self, leader: NodeHost, change: ConfChange) -> None:
        def action(core: RaftCore) -> None:
            # Refused (another change pending, no entry of the term committed yet): the next
            # step retries.
            with contextlib.suppress(RaftError):
                core.propose_conf_change(change)

        leader.call(action)

"""Fault schedules generated from the seed, and the nemesis that injects them.

Theory of operation: during the safety phase the nemesis wakes after a random gap, picks a
fault kind by weight (a `FaultProfile`, which the tests let hypothesis choose), applies it
to the cluster and schedules its end. Faults may overlap. Targets that depend on the run
("isolate the leader", "crash the leader") are resolved when the fault starts, from the
cluster's state, so the schedule is a pure function of the seed and the run it steers.

Kinds:
  partition      random halves, both ways          isolate-leader  the leader alone
  one-way        a random set of cut directed links
  crash          a node loses power (unsynced writes gone) and restarts after a while
  crash-leader   the same, aimed at the leader
  pause          a node stops ticking and processing; its inputs queue (SIGSTOP)
  chaos          a burst of loss, duplication and reordering on the whole network
  membership     remove a follower, then add a fresh id as learner, then promote it
  transfer       leadership transfer to a random voter
  stale-leader   isolate the leader and pause it (a GC pause during a network blip): the
                 others elect a new leader; the old one resumes still believing it leads
  flap           a node crashes and restarts a few times in quick succession
  figure-8       the Raft paper's Figure 8, staged (figure8.py)
  power-loss     every node loses power at once (all unsynced writes everywhere are gone)
                 and they come back one by one, the old leader last
  bridge         the nodes split in two halves that only one follower (the bridge) can
                 reach, and the bridge node flaps (crashes and restarts) meanwhile
  election-crash at the next election, a voter crashes the moment the leader is known (its
                 vote is on disk, the leader's first appends are not) and restarts at once;
                 the leader is isolated for a while, so the others elect again
  walk           a membership walk: voters removed (each replaced by a fresh learner)
                 down to 1 voter + learners or 2 voters, then learners promoted back
  disk-stall     a node's fsyncs (often the leader's) stall for 1-3 election timeouts
  client-cut     clients cannot reach one node (often the leader): requests and answers
                 are lost, clients time out and retry elsewhere
  clock-jump     the leader's wall clock (what it stamps entries with) jumps by 1-60 s
                 either way, and back a while later
Crashes keep an arbitrary prefix of the unsynced writes half of the time, and may tear
the record after it (disk.py).
Snapshots and compaction are not faults: hosts take them at a threshold under load.
`heal` ends everything at the start of the liveness phase.
"""

from __future__ import annotations

import contextlib
import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raftsched.raft.errors import RaftError
from raftsched.raft.types import NodeId

from .cluster import SimCluster
from .events import UNITS_PER_TICK
from .figure8 import Figure8
from .membership_change import MembershipChange
from .network import NetworkConditions
from .node_host import NodeHost


class FaultKind(enum.Enum):
    PARTITION = "partition"
    ISOLATE_LEADER = "isolate-leader"
    ONE_WAY = "one-way"
    CRASH = "crash"
    CRASH_LEADER = "crash-leader"
    PAUSE = "pause"
    CHAOS = "chaos"
    MEMBERSHIP = "membership"
    STALE_LEADER = "stale-leader"
    FLAP = "flap"
    FIGURE_8 = "figure-8"
    POWER_LOSS = "power-loss"
    BRIDGE = "bridge"
    ELECTION_CRASH = "election-crash"
    TRANSFER = "transfer"
    WALK = "walk"
    DISK_STALL = "disk-stall"
    CLOCK_JUMP = "clock-jump"
    CLIENT_CUT = "client-cut"


DEFAULT_WEIGHTS: dict[FaultKind, float] = {
    FaultKind.PARTITION: 3.0,
    FaultKind.ISOLATE_LEADER: 3.0,
    FaultKind.ONE_WAY: 1.5,
    FaultKind.CRASH: 3.0,
    FaultKind.CRASH_LEADER: 2.0,
    FaultKind.PAUSE: 2.0,
    FaultKind.CHAOS: 2.0,
    FaultKind.MEMBERSHIP: 1.0,
    FaultKind.TRANSFER: 1.5,
    FaultKind.STALE_LEADER: 2.0,
    FaultKind.FLAP: 1.5,
    FaultKind.FIGURE_8: 3.0,
    FaultKind.POWER_LOSS: 1.5,
    FaultKind.BRIDGE: 2.0,
    FaultKind.ELECTION_CRASH: 2.0,
    FaultKind.WALK: 1.0,
    FaultKind.DISK_STALL: 1.5,
    FaultKind.CLOCK_JUMP: 1.0,
    FaultKind.CLIENT_CUT: 1.5,
}


@dataclass(slots=True)
class FaultProfile:
    """How faulty a run is. Every duration is in ticks."""

    weights: dict[FaultKind, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    gap_ticks_min: int = 5
    gap_ticks_max: int = 30
    partition_ticks_min: int = 10
    partition_ticks_max: int = 60
    down_ticks_min: int = 1
    down_ticks_max: int = 40
    pause_ticks_min: int = 5
    pause_ticks_max: int = 50
    chaos_ticks_max: int = 40
    # A clock jump moves the stamping leader's wall clock by up to this much either way.
    # The scheduler's clock is the largest stamp applied (SPEC §4), so a forward jump makes
    # every later deadline wait for real time to catch up: the sched workload keeps it
    # small enough for its liveness bound.
    clock_jump_ms_max: int = 60_000
    loss_probability_max: float = 0.3
    duplicate_probability_max: float = 0.2
    reorder_probability_max: float = 0.3

    def __post_init__(self) -> None:
        assert 0 < self.gap_ticks_min <= self.gap_ticks_max
        assert all(w >= 0 for w in self.weights.values())


class Nemesis:
    def __init__(self, cluster: SimCluster, rng: random.Random, profile: FaultProfile) -> None:
        self._cluster = cluster
        self._rng = rng
        self.profile = profile
        self.active = False
        self.injected = 0
        self.by_kind: dict[str, int] = {}
        self._generation = 0  # faults scheduled before `heal` end harmlessly
        self._links_owner = 0
        self._exclusive_until = 0  # a fault that needs the stage alone holds it until then
        self.membership = MembershipChange(cluster)
        self.figure8 = Figure8(cluster, rng)
        self._election_trap_armed = False
        cluster.leader_listeners.append(self._on_leader)

    # -- schedule -----------------------------------------------------------------------

    def start(self) -> None:
        self.active = True
        self._schedule_next()

    def _ticks(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, max(lo, hi)) * UNITS_PER_TICK

    def _schedule_next(self) -> None:
        gap = self._ticks(self.profile.gap_ticks_min, self.profile.gap_ticks_max)
        self._cluster.loop.call_later(gap, self._fire)

    def _later(self, delay: int, action_name: str, host_or_none: NodeHost | None) -> None:
        generation = self._generation
        if action_name == "heal-links":
            # The latest link fault owns the links: an older fault's end does not heal it.
            self._links_owner += 1
        links_owner = self._links_owner

        def end() -> None:
            if generation != self._generation:
                return
            if action_name == "heal-links":
                if self.figure8.busy() or links_owner != self._links_owner:
                    return  # a newer link fault (or the choreography) owns the links now
                self._cluster.network.heal()
                self._cluster.trace("nemesis: links healed")
            elif action_name == "calm":
                self._cluster.network.conditions = NetworkConditions()
                self._cluster.trace("nemesis: network calm")
            elif host_or_none is not None and not host_or_none.retired:
                if action_name == "crash" and host_or_none.up:
                    host_or_none.crash()
                    self._cluster.trace(f"nemesis: crash node {host_or_none.node_id}")
                elif action_name == "restart" and not host_or_none.up:
                    host_or_none.start()
                    self._cluster.trace(f"nemesis: node {host_or_none.node_id} restarted")
                elif action_name == "client-heal" and not host_or_none.client_reachable:
                    host_or_none.client_reachable = True
                    self._cluster.trace(f"nemesis: clients reach node {host_or_none.node_id}")
                elif action_name == "resume" and host_or_none.paused:
                    host_or_none.resume()
                    self._cluster.trace(f"nemesis: node {host_or_none.node_id} resumed")

        self._cluster.loop.call_later(delay, end)

    def _later_jump(self, delay: int, host: NodeHost, jump_ms: int) -> None:
        def end() -> None:
            host.clock_skew_ms += jump_ms
            self._cluster.trace(f"nemesis: clock of node {host.node_id} jumps {jump_ms:+d} ms")

        self._cluster.loop.call_later(delay, end)

    def _fire(self) -> None:
        if not self.active:
            return
        kinds = [k for k, w in self.profile.weights.items() if w > 0]
        exclusive = self.figure8.busy() or self._cluster.loop.now < self._exclusive_until
        if kinds and not exclusive:  # a choreographed fault needs the stage to itself
            kind = self._rng.choices(kinds, [self.profile.weights[k] for k in kinds])[0]
            if self._inject(kind):
                self.injected += 1
                self.by_kind[kind.value] = self.by_kind.get(kind.value, 0) + 1
        self._schedule_next()

    # -- faults -------------------------------------------------------------------------

    def _inject(self, kind: FaultKind) -> bool:
        cluster, rng, p = self._cluster, self._rng, self.profile
        members = [h for h in cluster.hosts.values() if not h.retired]
        ids = sorted(h.node_id for h in members)
        leader = cluster.leader()
        match kind:
            case FaultKind.PARTITION:
                rng.shuffle(ids)
                cut = rng.randint(1, max(1, len(ids) // 2))
                side_a, side_b = sorted(ids[:cut]), sorted(ids[cut:])
                cluster.network.partition(side_a, side_b)
                cluster.trace(f"nemesis: partition {side_a} | {side_b}")
                self._later(
                    self._ticks(p.partition_ticks_min, p.partition_ticks_max), "heal-links", None
                )
            case FaultKind.ISOLATE_LEADER:
                if leader is None:
                    return False
                others = [i for i in ids if i != leader.node_id]
                cluster.network.partition([leader.node_id], others)
                cluster.trace(f"nemesis: isolate leader {leader.node_id}")
                self._later(
                    self._ticks(p.partition_ticks_min, p.partition_ticks_max), "heal-links", None
                )
            case FaultKind.ONE_WAY:
                links = [(a, b) for a in ids for b in ids if a != b]
                chosen = sorted(rng.sample(links, rng.randint(1, max(1, len(links) // 3))))
                for a, b in chosen:
                    cluster.network.cut(a, b)
                cluster.trace(f"nemesis: one-way cuts {chosen}")
                self._later(
                    self._ticks(p.partition_ticks_min, p.partition_ticks_max), "heal-links", None
                )
            case FaultKind.CRASH | FaultKind.CRASH_LEADER:
                down = sum(1 for h in members if not h.up)
                if down >= (len(members) - 1) // 2 + (1 if kind is FaultKind.CRASH else 0):
                    return False
                if kind is FaultKind.CRASH_LEADER:
                    if leader is None:
                        return False
                    victim = leader
                else:
                    candidates = [h for h in members if h.up]
                    if not candidates:
                        return False
                    victim = rng.choice(candidates)
                victim.crash()
                cluster.trace(f"nemesis: crash node {victim.node_id}")
                self._later(self._ticks(p.down_ticks_min, p.down_ticks_max), "restart", victim)
            case FaultKind.PAUSE:
                candidates = [h for h in members if h.up and not h.paused]
                if not candidates:
                    return False
                victim = (
                    leader
                    if leader is not None and rng.random() < 0.5
                    else (rng.choice(candidates))
                )
                victim.pause()
                cluster.trace(f"nemesis: pause node {victim.node_id}")
                self._later(self._ticks(p.pause_ticks_min, p.pause_ticks_max), "resume", victim)
            case FaultKind.CHAOS:
                cond = NetworkConditions(
                    loss_probability=rng.uniform(0, p.loss_probability_max),
                    duplicate_probability=rng.uniform(0, p.duplicate_probability_max),
                    reorder_probability=rng.uniform(0, p.reorder_probability_max),
                    delay_units_max=rng.randint(2, 3 * UNITS_PER_TICK),
                )
                cluster.network.conditions = cond
                cluster.trace(
                    f"nemesis: chaos loss={cond.loss_probability:.2f} "
                    f"dup={cond.duplicate_probability:.2f} "
                    f"reorder={cond.reorder_probability:.2f}"
                )
                self._later(self._ticks(1, p.chaos_ticks_max), "calm", None)
            case FaultKind.STALE_LEADER:
                if leader is None:
                    return False
                others = [i for i in ids if i != leader.node_id]
                cluster.network.partition([leader.node_id], others)
                leader.pause()
                timeout_ticks = cluster.options.election_timeout_ticks
                # Long enough for the others to elect a leader and commit writes meanwhile.
                pause_ticks = rng.randint(
                    3 * timeout_ticks, max(3 * timeout_ticks, p.pause_ticks_max)
                )
                isolated_ticks = pause_ticks + rng.randint(1, 2 * timeout_ticks)
                cluster.trace(f"nemesis: stale leader {leader.node_id} (isolated and paused)")
                self._later(pause_ticks * UNITS_PER_TICK, "resume", leader)
                self._later(isolated_ticks * UNITS_PER_TICK, "heal-links", None)
                self._exclusive_until = cluster.loop.now + isolated_ticks * UNITS_PER_TICK
            case FaultKind.FLAP:
                candidates = [h for h in members if h.up]
                down = sum(1 for h in members if not h.up)
                if not candidates or down > 0:
                    return False
                victim = rng.choice(candidates)
                cluster.trace(f"nemesis: flap node {victim.node_id}")
                at = 0
                for _ in range(rng.randint(2, 5)):
                    at += rng.randint(1, 8) * UNITS_PER_TICK
                    self._later(at, "crash", victim)
                    at += rng.randint(0, 3) * UNITS_PER_TICK + rng.randint(1, UNITS_PER_TICK)
                    self._later(at, "restart", victim)
            case FaultKind.FIGURE_8:
                if not self.figure8.begin():
                    return False
            case FaultKind.POWER_LOSS:
                up = [h for h in members if h.up]
                if not up:
                    return False
                # The leader (if any) comes back last: the others must sort it out alone.
                order = [h for h in up if h is not leader]
                rng.shuffle(order)
                if leader is not None and leader in up:
                    order.append(leader)
                for host in up:
                    host.crash()
                cluster.trace(f"nemesis: power loss of {sorted(h.node_id for h in up)}")
                at = 0
                for host in order:
                    at += rng.randint(1, p.down_ticks_max // 2 + 1) * UNITS_PER_TICK
                    self._later(at, "restart", host)
            case FaultKind.BRIDGE:
                if leader is None or len(ids) < 3:
                    return False
                bridge = rng.choice([i for i in ids if i != leader.node_id])
                rest = [i for i in ids if i != bridge]
                rng.shuffle(rest)
                # The leader's side and the other side; only the bridge talks to both.
                rest.remove(leader.node_id)
                cut = rng.randint(1, len(rest))
                side_a, side_b = sorted([leader.node_id, *rest[cut:]]), sorted(rest[:cut])
                cluster.network.partition(side_a, side_b)
                cluster.trace(f"nemesis: bridge {bridge} between {side_a} and {side_b}")
                duration = rng.randint(p.partition_ticks_min, p.partition_ticks_max)
                self._later(duration * UNITS_PER_TICK, "heal-links", None)
                host = cluster.hosts[bridge]
                at = 0
                while rng.random() < 0.8 and at < duration * UNITS_PER_TICK:
                    at += rng.randint(2, 12) * UNITS_PER_TICK
                    self._later(at, "crash", host)
                    at += rng.randint(1, 3 * UNITS_PER_TICK)
                    self._later(at, "restart", host)
            case FaultKind.ELECTION_CRASH:
                if self._election_trap_armed:
                    return False
                self._election_trap_armed = True
                if leader is not None:  # provoke an election now
                    cluster.network.partition(
                        [leader.node_id], [i for i in ids if i != leader.node_id]
                    )
                    cluster.trace(f"nemesis: election trap, isolate leader {leader.node_id}")
                    self._later(
                        self._ticks(p.partition_ticks_min, p.partition_ticks_max),
                        "heal-links",
                        None,
                    )
            case FaultKind.MEMBERSHIP:
                if not self.membership.begin(rng):
                    return False
            case FaultKind.WALK:
                if not self.membership.begin(rng, walk=True):
                    return False
            case FaultKind.DISK_STALL:
                candidates = [h for h in members if h.up]
                if not candidates:
                    return False
                victim = (
                    leader if leader is not None and rng.random() < 0.5 else rng.choice(candidates)
                )
                timeout = cluster.options.election_timeout_ticks
                stall = rng.randint(timeout + 1, 3 * timeout) * UNITS_PER_TICK
                victim.disk_stall_until = max(victim.disk_stall_until, cluster.loop.now + stall)
                cluster.trace(
                    f"nemesis: disk of node {victim.node_id} stalls for {stall // UNITS_PER_TICK} "
                    "ticks"
                )
            case FaultKind.CLIENT_CUT:
                candidates = [h for h in members if h.client_reachable]
                if not candidates:
                    return False
                victim = (
                    leader
                    if leader is not None and leader.client_reachable and rng.random() < 0.6
                    else rng.choice(candidates)
                )
                victim.client_reachable = False
                cluster.trace(f"nemesis: clients cut off from node {victim.node_id}")
                self._later(
                    self._ticks(p.partition_ticks_min, p.partition_ticks_max),
                    "client-heal",
                    victim,
                )
            case FaultKind.CLOCK_JUMP:
                if leader is None:
                    return False
                jump_ms = rng.choice((-1, 1)) * rng.randint(
                    min(1_000, p.clock_jump_ms_max), p.clock_jump_ms_max
                )
                leader.clock_skew_ms += jump_ms
                cluster.trace(f"nemesis: clock of leader {leader.node_id} jumps {jump_ms:+d} ms")
                self._later_jump(
                    self._ticks(p.partition_ticks_min, p.partition_ticks_max), leader, -jump_ms
                )
            case FaultKind.TRANSFER:
                if leader is None:
                    return False
                status = leader.status()
                if status is None:
                    return False
                targets = sorted(status.membership.voters - {leader.node_id})
                if not targets:
                    return False
                target = rng.choice(targets)
                cluster.trace(f"nemesis: transfer leadership {leader.node_id} -> {target}")
                leader.call(lambda core: _ignore_refusal(lambda: core.transfer_leadership(target)))
        return True

    def _on_leader(self, node_id: NodeId, term: int) -> None:
        if not self._election_trap_armed or not self.active:
            return
        self._election_trap_armed = False
        cluster = self._cluster
        voters = [
            h for h in cluster.hosts.values() if h.up and not h.retired and h.node_id != node_id
        ]
        if not voters:
            return
        victim = self._rng.choice(sorted(voters, key=lambda h: h.node_id))
        victim.crash()
        cluster.trace(
            f"nemesis: election trap, crash node {victim.node_id} as node "
            f"{node_id} wins term {term}"
        )
        self._later(self._rng.randint(1, 2 * UNITS_PER_TICK), "restart", victim)
        # Cut the new leader off too, so that the others hold another election.
        if self._rng.random() < 0.5:
            others = [i for i in cluster.hosts if i != node_id and not cluster.hosts[i].retired]
            cluster.network.partition([node_id], others)
            self._later(
                self._ticks(self.profile.partition_ticks_min, self.profile.partition_ticks_max),
                "heal-links",
                None,
            )

    def heal(self) -> None:
        """End every fault now: links, network conditions, crashed and paused nodes."""
        self.active = False
        self._generation += 1
        self.figure8.abort("healing")
        cluster = self._cluster
        cluster.network.heal()
        cluster.network.conditions = NetworkConditions()
        for host in cluster.hosts.values():
            if host.retired:
                continue
            host.disk_stall_until = 0  # fsyncs already scheduled still complete at their time
            host.client_reachable = True
            if not host.up:
                host.start()
            elif host.paused:
                host.resume()
        cluster.trace("nemesis: healed everything")


def _ignore_refusal(action: Callable[[], None]) -> None:
    # Refused (not leader any more, transfer in progress): then the fault is a no-op.
    with contextlib.suppress(RaftError):
        action()

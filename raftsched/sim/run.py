"""One simulation run of one seed: a safety phase under faults, then a liveness phase.

Theory of operation: `run_seed` builds the loop, the cluster (with the real RaftNode, or a
deliberately broken variant from bugs.py), the clients and the nemesis, all from one
`random.Random(seed)`. Safety phase: clients run a read/write/cas workload while the nemesis
injects faults and the invariant checker watches every step. Liveness phase: every fault is
healed and every node restarted; a leader must appear within `election_bound_ticks`, every
pending client operation must complete and every member must converge on the same applied
prefix within `liveness_ticks`. Finally the surviving logs are compared, acknowledged writes
looked up, and the client history checked for linearizability with the KV model.

The workload kind picks the replicated app and its clients: `kv` (the default) is the
key-value map above; `sched` runs the real scheduler state machine (sched_app.py) with
submitters, workers and a leader-side ticker (sched_workload.py), one node's clock skewed,
SPEC §1's promises checked continuously and at the end (sched_checks.py), and, once healed,
every job required to reach a terminal state within the liveness bound.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raftsched.raft.errors import RaftError
from raftsched.raft.types import NodeId, Role
from raftsched.sched.job import TERMINAL

from .app import KV_APP, AppKind, KVAppKind
from .bugs import Bug, get_bug
from .clients import ClientPool, Workload
from .cluster import ClusterOptions, SimCluster, default_disk, real_core_factory
from .events import UNITS_PER_TICK, EventLoop
from .faults import FaultProfile, Nemesis
from .history import Event
from .node_host import HostTimings, NodeHost, RaftCore
from .sched_app import SchedAppKind, SimSchedApp
from .sched_checks import SchedChecks, SchedCounters
from .sched_workload import SchedClients, SchedWorkload

WORKLOAD_KINDS = ("kv", "sched")
TOPOLOGIES = ("mixed", "voters", "1-voter", "2-voters")
SCHED_SNAPSHOT_CHUNK_BYTES = 2048
# A forward jump of the stamping leader's clock delays every later scheduler deadline by as
# much (the state clock is the largest stamp): kept within the liveness bound.
SCHED_CLOCK_JUMP_MS_MAX = 5_000


@dataclass(slots=True)
class SimConfig:
    seed: int
    nodes: int = 3
    safety_ticks: int = 300
    election_bound_ticks: int = 80
    liveness_ticks: int = 400
    bug: str | None = None
    profile: FaultProfile = field(default_factory=FaultProfile)
    workload: Workload = field(default_factory=Workload)
    # "kv" or "sched"; None: kv, unless the seeded bug needs the scheduler workload.
    workload_kind: str | None = None
    sched_workload: SchedWorkload = field(default_factory=SchedWorkload)
    skew_one_clock: bool = True  # sched: one node stamps with a skewed clock
    check_linearizability: bool = True
    linearizability_time_limit_s: float = 10.0
    log_matching_every_ticks: int = 20
    # A healthy cluster sends a handful of messages per node and tick; far more, sustained,
    # is a livelock (e.g. two nodes bouncing rejections at network speed).
    storm_messages_per_node_tick: int = 100
    # FIFO links like TCP (False: every message reordered at random, UDP-like).
    fifo_links: bool = True
    # The host mode and disk behaviour (node_host.py): pipelined by default.
    timings: HostTimings = field(default_factory=HostTimings)
    # The founders' configuration: "voters" (all vote), "1-voter" (1 voter + learners),
    # "2-voters" (2 voters + learners), or "mixed": chosen per seed (mostly all voters).
    topology: str = "mixed"
    tick_drift: float = 0.1  # each node's tick rate is off by up to +/-10%
    # After the liveness phase settles: ticks of healthy idling in which no node may start
    # an election or a pre-vote (a follower that hears its leader never campaigns).
    quiet_ticks: int = 40
    # Then a leadership transfer on the healthy cluster must complete or fail explicitly.
    check_transfer: bool = True


@dataclass(slots=True)
class RunResult:
    seed: int
    nodes: int
    bug: str | None
    violations: list[str]
    operations: int
    elections: int
    faults_injected: int
    faults_by_kind: dict[str, int]
    membership_changes: int
    ticks: int
    trace_hash: str
    history: list[Event]
    linearizable: bool | None  # None: not checked or the checker gave up
    workload_kind: str = "kv"
    sched: SchedCounters | None = None  # the scheduler workload's counters

    # The linearizability checker gave up at its time budget: the history is neither
    # valid nor invalid. Never counted as valid (the CLI fails unless --allow-unknown).
    unknown: bool = False
    expired_sessions: int = 0  # kv: commands refused because their session was evicted
    # phase -> {"votes": n, "pre-votes": n}: campaigns started in each run phase
    campaigns: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def run_seed(
    config: SimConfig,
    trace_sink: Callable[[str], None] | None = None,
    inspect: Callable[[SimCluster], None] | None = None,
) -> RunResult:
    """Run one seed. `inspect` sees the cluster at the end (tests and debugging)."""
    assert config.nodes >= 1
    bug: Bug | None = None
    if config.bug is not None:
        bug = get_bug(config.bug)
    kind = config.workload_kind or (bug.workload if bug is not None else "kv")
    assert kind in WORKLOAD_KINDS, f"unknown workload kind {kind!r}"
    assert bug is None or bug.sched_app_class is None or kind == "sched", (
        f"bug {config.bug} only exists in the sched workload"
    )
    sched_checks: SchedChecks | None = None
    app_kind: AppKind = KV_APP
    if config.workload.max_sessions is not None:
        app_kind = KVAppKind(config.workload.max_sessions)
    if kind == "sched":
        sched_checks = SchedChecks()
        app_class = bug.sched_app_class if bug is not None else None
        app_kind = SchedAppKind(sched_checks, app_class or SimSchedApp)
    rng = random.Random(config.seed)
    loop = EventLoop()
    options = ClusterOptions(
        nodes=config.nodes,
        timings=config.timings,
        voters=_founding_voters(config, rng),
        tick_drift=config.tick_drift,
    )
    if kind == "sched":
        # Scheduler snapshots are tens of KB, not hundreds of bytes: with stop-and-wait
        # 256-byte chunks a lagging follower's catch-up outlasts the liveness bound. 2 KiB
        # keeps every transfer multi-chunk (about 5-20 chunks).
        options.snapshot_chunk_bytes = SCHED_SNAPSHOT_CHUNK_BYTES
    cluster = SimCluster(
        loop,
        random.Random(rng.getrandbits(64)),
        options,
        core_factory=bug.core_factory if bug is not None else real_core_factory,
        host_class=bug.host_class if bug is not None else NodeHost,
        disk_factory=bug.disk_factory if bug is not None else default_disk,
        trace_sink=trace_sink,
        app_kind=app_kind,
    )
    cluster.network.fifo_links = config.fifo_links
    checker = cluster.checker
    assert checker is not None
    clients: ClientPool | SchedClients
    if sched_checks is not None:
        sched_checks.bind(checker.violation)
        clients = SchedClients(
            loop=loop,
            rng=random.Random(rng.getrandbits(64)),
            workload=config.sched_workload,
            hosts=lambda: cluster.hosts,
            trace=cluster.trace,
            checks=sched_checks,
        )
    else:
        clients = ClientPool(
            loop,
            random.Random(rng.getrandbits(64)),
            config.workload,
            lambda: cluster.hosts,
            cluster.trace,
        )
    profile = config.profile
    if kind == "sched":
        profile = dataclasses.replace(profile, clock_jump_ms_max=SCHED_CLOCK_JUMP_MS_MAX)
    nemesis = Nemesis(cluster, random.Random(rng.getrandbits(64)), profile)
    if isinstance(clients, SchedClients) and config.skew_one_clock:
        clients.skew_one_clock()
    cluster.trace(f"seed {config.seed}: {config.nodes} nodes, bug {config.bug or 'none'}")
    cluster.start()
    clients.start()
    nemesis.start()

    storm = _StormDetector(cluster, config.storm_messages_per_node_tick)

    def check_logs() -> None:
        checker.check_log_matching(
            {h.node_id: h.disk.current for h in cluster.hosts.values() if not h.retired}
        )

    # -- safety phase -------------------------------------------------------------------
    safety_end = config.safety_ticks * UNITS_PER_TICK
    step = config.log_matching_every_ticks * UNITS_PER_TICK
    while loop.now < safety_end and not checker.violations:
        loop.run_until(min(safety_end, loop.now + step), stop=lambda: bool(checker.violations))
        check_logs()
        storm.check()

    # -- liveness phase -----------------------------------------------------------------
    if not checker.violations:
        nemesis.heal()
        checker.phase = "liveness"
        clients.finishing = True
        heal_at = loop.now
        election_deadline = heal_at + config.election_bound_ticks * UNITS_PER_TICK
        liveness_deadline = heal_at + config.liveness_ticks * UNITS_PER_TICK

        def violated() -> bool:
            return bool(checker.violations)

        while loop.now < election_deadline and cluster.leader() is None and not violated():
            loop.run_until(min(election_deadline, loop.now + UNITS_PER_TICK), stop=violated)
        if cluster.leader() is None and not checker.violations:
            checker.violation(
                f"liveness: no leader within {config.election_bound_ticks} ticks after healing"
            )
        else:

            def settled() -> bool:
                return violated() or (
                    clients.pending_count() == 0
                    and not nemesis.membership.busy()
                    and _converged(cluster)
                    and (sched_checks is None or _all_jobs_terminal(cluster))
                )

            # Polled once per tick: checking after every event would dominate the run time.
            while loop.now < liveness_deadline and not settled():
                loop.run_until(min(liveness_deadline, loop.now + UNITS_PER_TICK), stop=violated)
                storm.check()
            if not checker.violations:
                if clients.pending_count():
                    checker.violation(
                        f"liveness: {clients.pending_count()} client operations still pending "
                        f"{config.liveness_ticks} ticks after healing"
                    )
                elif nemesis.membership.busy():
                    checker.violation(
                        f"liveness: a membership change did not finish ({nemesis.membership.phase})"
                    )
                elif not _converged(cluster):
                    checker.violation(
                        f"liveness: replicas did not converge: {_describe_replicas(cluster)}"
                    )
            if sched_checks is not None:
                _check_sched_final(cluster, sched_checks, not checker.violations)
        clients.stopped = True
        check_logs()
        # Only once everything converged: after an earlier violation the run stopped before
        # replicas caught up, and the check would add noise ("lost" writes still in flight)
        # after the real finding.
        if not checker.violations:
            images = {h.node_id: h.disk.current for h in cluster.live_hosts()}
            checker.check_acknowledged(clients.acked_writes, images)
        if not checker.violations and config.quiet_ticks > 0 and _await_followed(cluster):
            # Healthy and idle: nobody may campaign (the checker fails any RequestVote).
            checker.phase = "quiet"
            quiet_end = loop.now + config.quiet_ticks * UNITS_PER_TICK
            loop.run_until(quiet_end, stop=lambda: bool(checker.violations))
            if not checker.violations and config.check_transfer:
                checker.phase = "transfer"
                _check_transfer(cluster, checker.violation, snapshot_first=config.seed % 2 == 0)

    linearizable: bool | None = None
    unknown = False
    history = clients.history if isinstance(clients, ClientPool) else []
    if config.check_linearizability and kind == "kv" and not checker.violations:
        linearizable = _check_linearizable(history, config, checker.violation)
        unknown = linearizable is None
        if unknown:
            cluster.trace(
                "linearizability: UNKNOWN (the checker gave up after "
                f"{config.linearizability_time_limit_s:g} s; not counted as valid)"
            )

    if inspect is not None:
        inspect(cluster)
    return RunResult(
        seed=config.seed,
        nodes=config.nodes,
        bug=config.bug,
        violations=list(checker.violations),
        operations=clients.operations(),
        elections=len(checker.leader_of_term),
        faults_injected=nemesis.injected,
        faults_by_kind=dict(nemesis.by_kind),
        membership_changes=nemesis.membership.completed,
        ticks=loop.now // UNITS_PER_TICK,
        trace_hash=_final_hash(cluster, loop),
        history=history,
        linearizable=linearizable,
        unknown=unknown,
        expired_sessions=clients.expired_sessions if isinstance(clients, ClientPool) else 0,
        campaigns={phase: dict(counts) for phase, counts in checker.campaigns.items()},
        workload_kind=kind,
        sched=sched_checks.counters if sched_checks is not None else None,
    )


TRANSFER_BOUND_ELECTION_TIMEOUTS = 3
FOLLOWED_BOUND_TICKS = 100


def _await_followed(cluster: SimCluster) -> bool:
    """Wait (bounded) until every up member follows one leader in its term. A liveness
    phase can settle under a stale leader that is about to step down (CheckQuorum) while
    the others campaign: the election that follows is no churn, so the quiet phase starts
    only once the leader is recognised by everyone."""
    loop = cluster.loop
    deadline = loop.now + FOLLOWED_BOUND_TICKS * UNITS_PER_TICK

    def followed() -> bool:
        leader = cluster.leader()
        status = leader.status() if leader is not None else None
        if leader is None or status is None:
            return False
        for node_id in status.membership.members:
            host = cluster.hosts.get(node_id)
            other = host.status() if host is not None else None
            if other is None or (other.term, other.leader) != (status.term, leader.node_id):
                return False
        return True

    while loop.now < deadline and not followed():
        loop.run_until(min(deadline, loop.now + UNITS_PER_TICK))
    return followed()


def _check_transfer(
    cluster: SimCluster, report: Callable[[str], None], *, snapshot_first: bool
) -> None:
    """On the healed, idle cluster, transfer leadership to another voter: it must take
    over, or the core must refuse the transfer explicitly, within a few election timeouts.
    A transfer that silently expires fails the run. With `snapshot_first` the target is
    first made to fall behind the leader's snapshot, so it catches up through
    InstallSnapshot before it can take over (issue 6 defect 2)."""
    leader = cluster.leader()
    status = leader.status() if leader is not None else None
    if leader is None or status is None:
        return
    targets = sorted(status.membership.voters - {leader.node_id})
    if not targets:
        return  # a single voter: nobody to transfer to
    target = targets[0]
    refusals: list[str] = []
    if snapshot_first:
        _lag_behind_a_snapshot(cluster, leader, target)
        leader = cluster.leader()
        if leader is None or leader.node_id == target:
            return

    def transfer(core: RaftCore) -> None:
        try:
            core.transfer_leadership(target)
        except RaftError as err:
            refusals.append(str(err))

    cluster.trace(f"transfer check: leadership {leader.node_id} -> {target}")
    leader.call(transfer)
    loop = cluster.loop
    bound = TRANSFER_BOUND_ELECTION_TIMEOUTS * cluster.options.election_timeout_ticks
    deadline = loop.now + bound * UNITS_PER_TICK

    started = [False]  # the leader's status showed the transfer in progress

    def aborted() -> bool:
        # Status.transferee (raft/types.py): back to 0 while still leading = aborted.
        status = leader.status() if leader.up else None
        transferee = getattr(status, "transferee", None)
        if transferee == target:
            started[0] = True
        return (
            started[0] and transferee == 0 and status is not None and (status.role is Role.LEADER)
        )

    def done() -> bool:
        new = cluster.leader()
        return bool(refusals) or (new is not None and new.node_id == target) or aborted()

    while loop.now < deadline and not done():
        loop.run_until(min(deadline, loop.now + UNITS_PER_TICK), stop=done)
    if refusals:
        cluster.trace(f"transfer check: refused explicitly: {refusals[0]}")
    elif aborted():
        cluster.trace("transfer check: aborted explicitly (the leader's transferee is 0 again)")
    elif not done():
        new = cluster.leader()
        report(
            f"liveness: leadership transfer {leader.node_id} -> {target} on a healthy cluster "
            f"neither completed nor failed explicitly within {bound} ticks (leader now "
            f"{new.node_id if new is not None else 'none'})"
        )


LAG_FILLER_ENTRIES = 60
"""Entries the leader appends while the transfer target is down: past the snapshot
threshold (node_host.HostTimings, 40), so the target must be sent a snapshot."""


def _lag_behind_a_snapshot(cluster: SimCluster, leader: NodeHost, target: NodeId) -> None:
    host = cluster.hosts[target]
    host.crash(keep_unsynced=False)
    cluster.trace(f"transfer check: node {target} down while the log grows past a snapshot")
    for n in range(LAG_FILLER_ENTRIES):
        leader.propose(cluster.app_kind.filler(n), lambda reply: None)
    loop = cluster.loop
    deadline = loop.now + 40 * UNITS_PER_TICK
    start_snapshot = leader.disk.current.snapshot.meta.index

    def compacted() -> bool:
        return leader.disk.current.snapshot.meta.index > start_snapshot

    while loop.now < deadline and not compacted():
        loop.run_until(min(deadline, loop.now + UNITS_PER_TICK), stop=compacted)
    host.start()
    cluster.trace(
        f"transfer check: node {target} restarted (leader snapshot at "
        f"{leader.disk.current.snapshot.meta.index})"
    )


def _founding_voters(config: SimConfig, rng: random.Random) -> int:
    """How many founders vote (run.py's topologies); the rest start as learners."""
    assert config.topology in TOPOLOGIES, f"unknown topology {config.topology!r}"
    topology = config.topology
    if topology == "mixed":
        pick = rng.random()  # drawn even for 1-2 nodes: the seed's stream stays aligned
        topology = "1-voter" if pick < 0.15 else "2-voters" if pick < 0.3 else "voters"
    if topology == "1-voter":
        return 1
    if topology == "2-voters":
        return min(2, config.nodes)
    return config.nodes


class _StormDetector:
    """Flags a message storm: a sustained rate far above a healthy cluster's."""

    WINDOW_TICKS = 20

    def __init__(self, cluster: SimCluster, per_node_tick: int) -> None:
        self._cluster = cluster
        self._limit = per_node_tick
        self._since = (0, 0)  # (time, messages sent) at the window start

    def check(self) -> None:
        cluster = self._cluster
        now, sent = cluster.loop.now, cluster.network.stats.sent
        ticks = (now - self._since[0]) // UNITS_PER_TICK
        if ticks < self.WINDOW_TICKS:
            return
        rate = (sent - self._since[1]) / ticks / max(1, len(cluster.live_hosts()))
        self._since = (now, sent)
        if rate > self._limit and cluster.checker is not None:
            cluster.checker.violation(
                f"liveness: message storm, {rate:.0f} messages per node and tick over the "
                f"last {ticks} ticks"
            )


def _final_hash(cluster: SimCluster, loop: EventLoop) -> str:
    cluster.trace(f"end: {loop.processed_events} events, network {cluster.network.stats}")
    return cluster.trace_hash()


def _converged(cluster: SimCluster) -> bool:
    """Every member of the leader's configuration is up and applied the leader's commit."""
    leader = cluster.leader()
    if leader is None:
        return False
    status = leader.status()
    if status is None:
        return False
    target = (leader.app.applied_index, leader.app.chain_hash)
    if target[0] < status.commit:
        return False
    for node_id in status.membership.members:
        host = cluster.hosts.get(node_id)
        if host is None or not host.up or (host.app.applied_index, host.app.chain_hash) != target:
            return False
    return True


def _all_jobs_terminal(cluster: SimCluster) -> bool:
    leader = cluster.leader()
    if leader is None or not isinstance(leader.app, SimSchedApp):
        return False
    return all(job.state in TERMINAL for job in leader.app.state.jobs.values())


def _check_sched_final(cluster: SimCluster, checks: SchedChecks, settled: bool) -> None:
    """The end-of-run scheduler checks, on the replicas that caught up with the leader."""
    leader = cluster.leader()
    if leader is None:
        return
    target = (leader.app.applied_index, leader.app.chain_hash)
    replicas: dict[int, SimSchedApp] = {}
    for host in cluster.live_hosts():
        app = host.app
        if isinstance(app, SimSchedApp) and (app.applied_index, app.chain_hash) == target:
            replicas[host.node_id] = app
    checks.check_final(replicas, leader.node_id, liveness=settled)


def _describe_replicas(cluster: SimCluster) -> str:
    parts: list[str] = []
    for node_id, host in sorted(cluster.hosts.items()):
        if host.retired:
            continue
        status = host.status()
        role = status.role.value if status is not None else "down"
        term = status.term if status is not None else "-"
        parts.append(
            f"node {node_id} {role} term {term} applied {host.app.applied_index} "
            f"hash {host.app.chain_hash.hex()[:8]}"
        )
    return "; ".join(parts)


def _check_linearizable(
    history: list[Event], config: SimConfig, report: Callable[[str], None]
) -> bool | None:
    from .linearizability import check_history  # noqa: PLC0415 - heavy, only at the end
    from .models import KVModel  # noqa: PLC0415

    result = check_history(
        history, model=KVModel(), time_limit_s=config.linearizability_time_limit_s
    )
    if result.ok is False:
        report(f"linearizability: {result.explanation}")
    return result.ok


__all__ = ["RunResult", "SimConfig", "run_seed"]

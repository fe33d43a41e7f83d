"""`python -m raftsched.sim --demo`: a short narrated run of a 3-node cluster.

Theory of operation: the same simulator as the seed runs, but the faults are scripted
instead of drawn from a schedule, and every step is told as it happens: an election,
client writes, the leader crashing, a re-election, a partition and its healing, and at the
end every replica's applied index and state hash (equal on all three), plus the
linearizability verdict on what the clients saw. It is deterministic (seed 7).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rich.console import Console

from .clients import ClientPool, Workload
from .cluster import ClusterOptions, SimCluster, real_core_factory
from .events import UNITS_PER_TICK
from .history import EventType
from .linearizability import check_history
from .models import KVModel
from .node_host import NodeHost

DEMO_SEED = 7


def run_demo(console: Console) -> int:
    rng = random.Random(DEMO_SEED)
    loop_rng = random.Random(rng.getrandbits(64))
    from .events import EventLoop  # noqa: PLC0415 - keeps the import list short above

    loop = EventLoop()
    cluster = SimCluster(loop, loop_rng, ClusterOptions(nodes=3), real_core_factory)
    clients = ClientPool(
        loop,
        random.Random(rng.getrandbits(64)),
        Workload(clients=3),
        lambda: cluster.hosts,
        lambda _text: None,
    )
    say = console.print

    def run_ticks(ticks: int, until: Callable[[], bool] | None = None) -> None:
        end = loop.now + ticks * UNITS_PER_TICK
        while loop.now < end and not (until is not None and until()):
            loop.run_until(min(end, loop.now + UNITS_PER_TICK))

    def acked() -> int:
        return sum(1 for e in clients.history if e.type is EventType.OK and e.f != "read")

    def leader() -> NodeHost:
        host = cluster.leader()
        assert host is not None
        return host

    def term_of(host: NodeHost) -> int:
        status = host.status()
        return status.term if status is not None else 0

    say(
        "[bold]raftsched simulator demo[/bold]: 3 Raft nodes, a virtual clock, simulated "
        "disks and network (1 tick = 10 ms of virtual time)\n"
    )
    cluster.start()
    run_ticks(100, until=lambda: cluster.leader() is not None)
    first = leader()
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  node {first.node_id} won the election, "
        f"leader of term {term_of(first)}"
    )

    clients.start()
    run_ticks(60)
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  3 clients wrote: {acked()} writes "
        f"acknowledged (each one committed on a majority and fsynced)"
    )

    first.crash()
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  [red]leader {first.node_id} crashed[/red] "
        "(its unsynced writes are gone)"
    )
    run_ticks(100, until=lambda: cluster.leader() not in (None, first))
    second = leader()
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  node {second.node_id} elected leader of "
        f"term {term_of(second)}; clients carry on"
    )
    run_ticks(40)
    first.start()
    say(f"t={loop.now // UNITS_PER_TICK:4} ticks  node {first.node_id} restarted and catches up")
    run_ticks(30)

    follower = next(h for h in cluster.live_hosts() if h is not cluster.leader())
    others = [h.node_id for h in cluster.live_hosts() if h is not follower]
    cluster.network.partition([follower.node_id], others)
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  [yellow]partition[/yellow]: node "
        f"{follower.node_id} cut off from {others}"
    )
    before = acked()
    run_ticks(60)
    say(
        f"t={loop.now // UNITS_PER_TICK:4} ticks  the majority kept going: "
        f"{acked() - before} more writes acknowledged"
    )
    cluster.network.heal()
    say(f"t={loop.now // UNITS_PER_TICK:4} ticks  [green]partition healed[/green]")

    clients.finishing = True
    run_ticks(200, until=lambda: clients.pending_count() == 0 and _converged(cluster))
    clients.stopped = True
    say("\nreplicas:")
    states = set()
    for host in sorted(cluster.live_hosts(), key=lambda h: h.node_id):
        status = host.status()
        role = status.role.value if status is not None else "down"
        states.add((host.kv.applied_index, host.kv.chain_hash))
        data = dict(sorted(host.kv.data.items()))
        say(
            f"  node {host.node_id}  {role:9}  applied index {host.kv.applied_index:4}  "
            f"state hash {host.kv.chain_hash.hex()[:16]}  data {data}"
        )
    result = check_history(clients.history, model=KVModel(), time_limit_s=10.0)
    checker = cluster.checker
    violations = checker.violations if checker is not None else []
    same = len(states) == 1
    say(f"\nall replica state hashes equal: {'yes' if same else 'NO'}")
    say(f"client history ({clients.operations()} operations) linearizable: {result.ok}")
    say(f"Raft invariants checked throughout: {violations if violations else 'all held'}")
    return 0 if same and result.ok and not violations else 1


def _converged(cluster: SimCluster) -> bool:
    states = {(h.kv.applied_index, h.kv.chain_hash) for h in cluster.live_hosts()}
    leader = cluster.leader()
    status = leader.status() if leader is not None else None
    return (
        len(states) == 1
        and status is not None
        and leader is not None
        and leader.kv.applied_index >= status.commit
    )

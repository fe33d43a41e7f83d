"""One jepsen test, start to verdict: cluster up, workload + nemesis, heal, drain, final
observations, cluster down, check, report.

Theory of operation. `run_test` owns every resource it starts and releases each in a
`finally`: the node processes and proxies (Cluster.stop: every pid signalled and waited with
a deadline), the HTTP session and the history file. So a failing test, an exception or a
Ctrl-C (asyncio cancels the task; the finally blocks run) leaves nothing behind. The phases
are reported to a `Reporter` (the CLI draws them with rich; tests pass a silent one).

The history is written as it happens (history.jsonl, flushed per line), read back and
handed to the checkers only after the cluster is down: checking never competes with the
nodes for the CPU, and the file on disk is exactly what was checked.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from .cluster import Cluster, ClusterOptions
from .history import HistoryWriter, read_history
from .http_client import NodeApi, new_session
from .nemesis import FaultSpec, Nemesis, parse_nemesis
from .observe import wait_converged
from .recorder import Recorder
from .workload import QueueWorkload, QueueWorkloadOptions

WORKLOADS: Final = ("queue",)
STARTUP_TIMEOUT_S: Final = 60.0
STARTUP_POLL_S: Final = 1.0
TICK_S: Final = 0.25


class RunError(RuntimeError):
    """The test could not run (the cluster never came up): no verdict about safety."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    out_dir: Path
    nodes: int = 3
    time_s: float = 60.0
    nemesis: str = "partition,kill,pause"
    workload: str = "queue"
    unsafe: frozenset[str] = frozenset()
    seed: int = 0
    clients: int = 5
    rate: float = 40.0
    queues: int = 3
    lease_ms: int = 1500
    op_timeout_s: float = 4.0
    fault_s: float = 5.0
    heal_s: float = 5.0
    converge_timeout_s: float = 60.0
    drain_timeout_s: float = 60.0
    power_loss: bool = False
    fsync_delay_ms: int = 0
    fsync_delay_nodes: frozenset[int] | None = None  # None: every node
    keep_data: bool = False

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["out_dir"] = str(self.out_dir)
        doc["unsafe"] = sorted(self.unsafe)
        doc["fsync_delay_nodes"] = sorted(self.fsync_delay_nodes or ())
        return doc


@dataclass(slots=True)
class Tick:
    """What the progress display shows during the run phase."""

    elapsed_s: float
    total_s: float
    counts: Mapping[str, int]
    fault: str | None
    faults_applied: int


class Reporter(Protocol):
    def phase(self, name: str) -> None: ...
    def tick(self, tick: Tick) -> None: ...


class SilentReporter:
    def phase(self, name: str) -> None:
        pass

    def tick(self, tick: Tick) -> None:
        pass


@dataclass(slots=True)
class RunResult:
    out_dir: Path
    history_path: Path
    check_report: dict[str, Any]
    meta: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # the harness's own findings

    @property
    def valid(self) -> bool:
        return bool(self.check_report.get("valid")) and not self.problems


async def run_test(options: RunOptions, reporter: Reporter | None = None) -> RunResult:
    if options.workload not in WORKLOADS:
        raise RunError(f"unknown workload {options.workload!r} (known: {', '.join(WORKLOADS)})")
    shown = reporter or SilentReporter()
    faults = parse_nemesis(options.nemesis, nodes=options.nodes)
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    history_path = out / "history.jsonl"
    rng = random.Random(options.seed)
    cluster = Cluster(
        out / "cluster",
        ClusterOptions(
            nodes=options.nodes,
            unsafe=options.unsafe,
            power_loss=options.power_loss,
            fsync_delay_ms=options.fsync_delay_ms,
            fsync_delay_nodes=options.fsync_delay_nodes,
        ),
    )
    meta: dict[str, Any] = {"options": options.to_json(), "started_wall_ms": _wall_ms()}
    problems: list[str] = []
    phases: dict[str, float] = {}
    try:
        shown.phase("starting the cluster")
        started = time.monotonic()
        cluster.start()
        async with new_session() as session:
            api = NodeApi(session, cluster.urls, cluster.tokens)  # grows with added nodes
            await _wait_started(cluster, api)
            phases["startup_s"] = time.monotonic() - started
            with HistoryWriter(history_path) as writer:
                await _exercise(
                    options=options,
                    cluster=cluster,
                    api=api,
                    recorder=Recorder(writer),
                    rng=rng,
                    faults=faults,
                    shown=shown,
                    meta=meta,
                    problems=problems,
                    phases=phases,
                )
    finally:
        shown.phase("stopping the cluster")
        meta["exit_codes"] = cluster.stop()
        meta["cluster"] = cluster.describe()
        meta["crashes"] = cluster.crashes
        if not options.keep_data:
            for node in cluster.nodes.values():
                shutil.rmtree(node.data_dir, ignore_errors=True)
    if cluster.crashes:
        problems.append(f"node(s) exited on their own: {cluster.crashes}")
    unclean = {
        i: code
        for i, code in meta["exit_codes"].items()
        if code != 0 and not cluster.nodes[i].killed and not cluster.nodes[i].retired
    }
    if unclean:
        problems.append(
            f"node(s) did not stop cleanly on SIGTERM (exit codes): {unclean}; "
            f"stacks before the SIGKILL: {cluster.stuck or 'not taken (no py-spy)'}"
        )
    shown.phase("checking the history")
    started = time.monotonic()
    ops = read_history(history_path)
    from .checkers import check_all  # noqa: PLC0415 - heavy, and only needed now
    from .report import write_report  # noqa: PLC0415

    check_report = check_all(ops)
    phases["check_s"] = time.monotonic() - started
    meta.update(phases={k: round(v, 3) for k, v in phases.items()}, ops=len(ops), problems=problems)
    shown.phase("writing the report")
    write_report(out, ops, check_report, meta)
    shown.phase("done")
    return RunResult(out, history_path, check_report, meta, problems)


async def _exercise(
    *,
    options: RunOptions,
    cluster: Cluster,
    api: NodeApi,
    recorder: Recorder,
    rng: random.Random,
    faults: Sequence[FaultSpec],
    shown: Reporter,
    meta: dict[str, Any],
    problems: list[str],
    phases: dict[str, float],
) -> None:
    workload = QueueWorkload(
        api=api,
        nodes=lambda: cluster.node_ids,
        recorder=recorder,
        rng=random.Random(rng.random()),
        options=QueueWorkloadOptions(
            clients=options.clients,
            queues=options.queues,
            rate=options.rate,
            lease_ms=options.lease_ms,
            op_timeout_s=options.op_timeout_s,
        ),
    )
    nemesis = Nemesis(
        cluster=cluster,
        api=api,
        recorder=recorder,
        rng=random.Random(rng.random()),
        faults=faults,
        fault_s=options.fault_s,
        heal_s=options.heal_s,
    )
    shown.phase("running")
    begin = time.monotonic()
    until = begin + options.time_s
    ticker = asyncio.create_task(_ticks(shown, recorder, nemesis, begin, options.time_s))
    try:
        await asyncio.gather(workload.run(until), nemesis.run(until))
    finally:
        ticker.cancel()
        shown.phase("healing every fault")
        await nemesis.heal_all()
    phases["run_s"] = time.monotonic() - begin
    meta["faults_applied"] = nemesis.applied

    started = time.monotonic()
    shown.phase("waiting for the cluster to converge")
    converged = await workload.converge(options.converge_timeout_s)
    if not converged:
        problems.append(f"the cluster did not converge within {options.converge_timeout_s}s")
    phases["converge_s"] = time.monotonic() - started

    started = time.monotonic()
    shown.phase("draining every queue")
    left = await workload.drain(options.drain_timeout_s)
    meta["drain_unfinished"] = left
    phases["drain_s"] = time.monotonic() - started

    started = time.monotonic()
    shown.phase("final reads")
    if converged:  # the drain wrote: let every node apply it (a broken cluster: no second wait)
        await workload.converge(options.converge_timeout_s)
    meta["final_reads_missing"] = await workload.final_reads(options.converge_timeout_s)
    shown.phase("state hashes")
    hashes = await workload.state_hashes(options.converge_timeout_s)
    meta["state_hashes"] = hashes
    meta["jobs_submitted"] = len(workload.book.order)
    phases["final_s"] = time.monotonic() - started


async def _wait_started(cluster: Cluster, api: NodeApi) -> None:
    """Until the new cluster converged; RunError at once if a node exits (a port taken, a
    bad config), or at the deadline, with every node's log tail."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        exited = {i: c for i, c in cluster.exit_codes().items() if c is not None}
        if exited:
            raise RunError(f"node(s) exited while starting: {exited}\n{_tails(cluster)}")
        if await wait_converged(api, cluster.node_ids, STARTUP_POLL_S) is not None:
            return
    raise RunError(
        f"the cluster did not elect a leader in {STARTUP_TIMEOUT_S} s\n{_tails(cluster)}"
    )


def _tails(cluster: Cluster) -> str:
    return "\n".join(f"--- node{i}:\n{cluster.log_tail(i)}" for i in cluster.node_ids)


async def _ticks(
    shown: Reporter, recorder: Recorder, nemesis: Nemesis, begin: float, total_s: float
) -> None:
    while True:
        shown.tick(
            Tick(
                elapsed_s=min(total_s, time.monotonic() - begin),
                total_s=total_s,
                counts=dict(recorder.counts),
                fault=nemesis.current,
                faults_applied=nemesis.applied,
            )
        )
        await asyncio.sleep(TICK_S)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000

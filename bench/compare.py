"""`python -m bench.compare [--quick]`: raftsched and its baselines (SPEC §9), same workload,
one run, one machine.

Systems (`--systems` picks some by key; --quick runs the ones marked quick, with less of each):

- raftsched: 3 nodes fsync always (the product's default), 3 nodes fsync never, 5 nodes, and
  1 node (what replication costs);
- a pysyncobj-replicated implementation of the same queue (bench/baselines/pysyncobj_node.py):
  3 and 5 nodes with pysyncobj's immediate appends (its fastest setting), and 3 nodes with its
  defaults (batched appends sent on a 50 ms tick);
- RQ on one local Redis (not replicated), AOF appendfsync everysec (fsync once a second) and
  always (fsync before answering, as raftsched's default does per commit).

raftsched and pysyncobj are driven by the same code (bench/cluster.py's submit drivers,
bench/jobs_e2e.py's end-to-end run with real `raftsched worker` processes); RQ through its own
API and `rq worker` processes (bench/baselines/rq_bench.py says exactly what is measured).
Writes bench/results/compare.json, compare.md and compare.png; prints a table. Processes
(nodes, redis-server, workers) are started on free ports and stopped by pid.

    python -m bench.compare             # everything, several minutes
    python -m bench.compare --quick     # smoke: raftsched 3, pysyncobj 3, RQ; under a minute
    python -m bench.compare --quick --systems pysyncobj-3 --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.baselines import report
from bench.baselines.http_systems import measure_cluster
from bench.baselines.pysyncobj_cluster import PysyncobjCluster
from bench.baselines.redis_server import RedisUnavailable, redis_server_path
from bench.baselines.rq_bench import measure_rq
from bench.baselines.settings import FULL, QUICK, Settings
from bench.jobs_e2e import Cluster
from bench.machine import machine_line
from raftsched.server.local_nodes import node_argv

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class System:
    key: str
    label: str
    kind: str  # raftsched | pysyncobj | rq
    nodes: int
    durability: str
    option: str  # raftsched: --fsync; pysyncobj: batch | immediate; rq: appendfsync
    quick: bool = False


SYSTEMS = (
    System("raftsched-3", "raftsched, 3 nodes", "raftsched", 3,
           "Raft, fsync before each commit (default)", "always", quick=True),
    System("raftsched-3-nofsync", "raftsched, 3 nodes, fsync never", "raftsched", 3,
           "Raft, no fsync", "never"),
    System("raftsched-5", "raftsched, 5 nodes", "raftsched", 5,
           "Raft, fsync before each commit", "always"),
    System("raftsched-1", "raftsched, 1 node", "raftsched", 1,
           "none (1 node), fsync before each commit", "always"),
    System("pysyncobj-3", "pysyncobj queue, 3 nodes", "pysyncobj", 3,
           "Raft (pysyncobj), journal never fsynced", "immediate", quick=True),
    System("pysyncobj-5", "pysyncobj queue, 5 nodes", "pysyncobj", 5,
           "Raft (pysyncobj), journal never fsynced", "immediate"),
    System("pysyncobj-3-batched", "pysyncobj queue, 3 nodes, pysyncobj defaults", "pysyncobj",
           3, "Raft (pysyncobj), journal never fsynced; appends on a 50 ms tick", "batch"),
    System("rq-everysec", "RQ + Redis", "rq", 1,
           "none (1 server); AOF fsync once a second", "everysec", quick=True),
    System("rq-always", "RQ + Redis, appendfsync always", "rq", 1,
           "none (1 server); AOF fsync before each answer", "always"),
)  # fmt: skip

NOTES = [
    "Every process (nodes, redis-server, workers, the load generator) runs on the same 2 "
    "cores. Systems run one after the other, the main rows first (raftsched 3 nodes, "
    "pysyncobj 3 nodes, RQ everysec: close in time, so at similar load), then the variants; "
    "a change in the machine's other load between rows shows in the load column.",
    "CPU ms per job: the CPU (user + system) that the servers (nodes or redis-server) and "
    "the workers with their children used during the end-to-end row, divided by its jobs. "
    "Other load on the machine slows every row down but barely changes this figure: it is "
    "the most comparable one on a shared machine.",
    "raftsched and the pysyncobj queue are driven by the same code: idle submit = one POST "
    "/v1/jobs at a time to the leader; submits/s = C concurrent submitters (one aiohttp "
    "client process) for the run's duration, each answer a 201 after commit on a majority "
    "and apply; batch = POST /v1/jobs:batch of 100 jobs, 8 in flight. Same JSON bodies.",
    "pysyncobj queue (bench/baselines/pysyncobj_node.py): the same routes and job documents "
    "over aiohttp (uvloop), each write one pysyncobj replicated call; followers answer 307 "
    "to the leader, as raftsched's do for its client. Kept lighter than raftsched: no "
    "idempotency keys, priorities, delays, backoff, payload checks or event history. Its "
    "journal is an mmap never fsynced before answering: compare with raftsched's fsync "
    "never row for durability-equal figures.",
    "RQ: the rq API called in this process (no HTTP front: RQ users enqueue from their own "
    "process), `Queue.enqueue(operator.add, 1, 2)` by C threads sharing one interpreter; "
    "batch = `enqueue_many` of 100 jobs, 8 threads. Not replicated: one Redis, so no "
    "failover figure.",
    "End to end: N worker processes; the clock runs from the first submit of the measured "
    "jobs (batches of 500) until all have succeeded. raftsched and pysyncobj: the same "
    "`raftsched worker` (concurrency 32, leases in batches, reports batched up to 64, the "
    "job `operator:add(1, 2)` run in its pool child). RQ: `rq worker` with "
    "SimpleWorker (job run in the worker) and with the default Worker (forks a work horse "
    "per job, fewer jobs per row); the job is `operator.add(1, 2)`.",
    "Failover (replicated systems): kill -9 of the leader, then POSTs to the survivors until "
    "one answers 201; the node is restarted and rejoins before the next kill. Election "
    "timeouts are each system's defaults (pysyncobj: 0.4-1.4 s).",
]


def _raftsched(system: System, base: Path, settings: Settings) -> dict[str, Any]:
    cluster = Cluster(base, system.nodes, system.option)

    def argv_of(node_id: int) -> list[str]:
        spec = cluster.specs[node_id - 1]
        return node_argv(spec, cluster.specs, cluster.files, fsync=cluster.fsync)

    return measure_cluster(cluster, settings, argv_of)


def _pysyncobj(system: System, base: Path, settings: Settings) -> dict[str, Any]:
    cluster = PysyncobjCluster(base, system.nodes, batch=system.option == "batch")
    return measure_cluster(cluster, settings, cluster.argv)


def revision() -> str:
    """The commit measured, and whether raftsched's or the bench's files had uncommitted
    changes (the working tree is shared while people work: say what really ran)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "raftsched", "bench")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return head + (" + uncommitted changes in raftsched/ or bench/" if dirty else "")


def run_system(
    system: System, settings: Settings, redis_binary: Callable[[], str]
) -> dict[str, Any]:
    """The system's entry in compare.json: its description plus `result`, `skipped` or
    `failed`. A failed system does not end the run; its data dir and logs are kept."""
    entry: dict[str, Any] = asdict(system)
    base = Path(tempfile.mkdtemp(prefix=f"compare-{system.key}-"))
    print(f"==> {system.key}: {system.label}", flush=True)
    started = time.monotonic()
    keep = False
    try:
        if system.kind == "raftsched":
            entry["result"] = _raftsched(system, base, settings)
        elif system.kind == "pysyncobj":
            entry["result"] = _pysyncobj(system, base, settings)
        else:
            try:
                binary = redis_binary()
            except RedisUnavailable as exc:
                entry["skipped"] = str(exc)
                print(f"    skipped: {exc}", flush=True)
                return entry
            entry["result"] = measure_rq(settings, base, appendfsync=system.option, binary=binary)
        keep = bool((entry["result"].get("failover") or {}).get("failed"))
    except Exception as exc:  # one system's failure is reported, the others still run
        entry["failed"] = f"{type(exc).__name__}: {exc}"
        keep = True
        print(f"    FAILED: {entry['failed']}", flush=True)
    finally:
        if keep:
            entry["kept_dir"] = str(base)
            print(f"    data and logs kept in {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)
    entry["seconds"] = round(time.monotonic() - started, 1)
    print(f"    done in {entry['seconds']} s", flush=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smoke run: fewer systems, less of each")
    p.add_argument("--systems", help="comma-separated keys: " + ", ".join(s.key for s in SYSTEMS))
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get install redis-server when missing (the RQ rows are then skipped)",
    )
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops its processes by pid.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    settings = QUICK if args.quick else FULL
    if args.systems:
        wanted = args.systems.split(",")
        unknown = set(wanted) - {s.key for s in SYSTEMS}
        if unknown:
            p.error(f"unknown systems {sorted(unknown)}")
        systems = [s for s in SYSTEMS if s.key in wanted]
    else:
        systems = [s for s in SYSTEMS if s.quick or not args.quick]
    binary: list[str] = []

    def redis_binary() -> str:  # installed at most once, and only when an RQ row runs
        if not binary:
            binary.append(redis_server_path(install=not args.no_install))
        return binary[0]

    command = "python -m bench.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()[0]
    # The main rows first, one after the other (similar load), then the variants; the
    # table keeps SYSTEMS' order.
    order = sorted(systems, key=lambda s: not s.quick)
    done = {s.key: run_system(s, settings, redis_binary) for s in order}
    entries = [done[s.key] for s in systems]
    doc = {
        "meta": {
            "command": command.strip(),
            "machine": machine_line(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "revision": revision(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": round(load_start, 2),
            "load_end": round(os.getloadavg()[0], 2),
            "settings": asdict(settings),
            "notes": NOTES,
        },
        "systems": entries,
    }
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "compare.md").write_text(report.render_markdown(doc, NOTES))
    report.plot(doc, out / "compare.png")
    report.print_rich(doc)
    print(f"wrote {out / 'compare.json'}, compare.md and compare.png")
    bad = report.problems(doc)
    for problem in bad:
        print(f"not sane: {problem}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

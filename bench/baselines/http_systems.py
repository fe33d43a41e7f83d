"""One measured configuration of an HTTP-served queue (raftsched, or the pysyncobj baseline).

Both run as `jobs_e2e.Cluster` processes on loopback and answer the same API, so every figure
comes from the same driver code: bench/cluster.py's `idle_latency` and `throughput` (single
submits and the batch endpoint, aiohttp client in this process), bench/jobs_e2e.py's `measure`
(real `raftsched worker` processes), and `failover` below (kill -9 the leader, submit to the
survivors until one answers 201, restart the node and wait until it knows the leader again).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.baselines.settings import Settings
from bench.cluster import BATCH_CONCURRENCY, BATCH_JOBS, idle_latency, pct, throughput
from bench.jobs_e2e import Cluster, measure
from raftsched.server.local_nodes import get_json

FAILOVER_DEADLINE_S = 30.0
CATCH_UP_DEADLINE_S = 30.0
POST_TIMEOUT_S = 2.0
RETRY_S = 0.005
E2E_BATCH = 500  # jobs per batch submit, as jobs_e2e's default
REPORT_BATCH_MAX = 64  # the workers' reports per request, as jobs_e2e's default
# Lines in a node's log that mean something went wrong, not just noise.
ALARMS = ("Traceback", "diverged")


def post_status(url: str, body: dict[str, Any]) -> int:
    """POST JSON; one 307 is followed by hand (urllib does not re-POST on 307). 0: no answer."""
    for _ in range(2):
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=POST_TIMEOUT_S) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            location = err.headers.get("Location")
            if err.code != 307 or not location:
                return int(err.code)
            url = location
        except OSError:
            return 0
    return 0


def failover(cluster: Cluster, kills: int, argv_of: Callable[[int], list[str]]) -> dict[str, Any]:
    """Kill -9 the leader `kills` times; seconds from each kill to the first 200/201 write.
    A system that does not recover within the deadline is a result, not a crash of the bench:
    `failed` says what did not happen (with the answers seen meanwhile) and the kills stop."""
    times: list[float] = []
    failed = None
    for k in range(kills):
        failed = _one_failover(cluster, k, argv_of, times)
        if failed is not None:
            break
    out: dict[str, Any] = {
        "kills": kills,
        "median_s": statistics.median(times) if times else float("nan"),
        "p99_s": pct(times, 0.99),
        "all_s": [round(t, 3) for t in times],
    }
    if failed is not None:
        out["failed"] = failed
    return out


def _one_failover(
    cluster: Cluster, k: int, argv_of: Callable[[int], list[str]], times: list[float]
) -> str | None:
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    while (leader := cluster.leader_url()) is None:
        if time.monotonic() > deadline:
            return f"kill {k + 1}: no leader to kill within {FAILOVER_DEADLINE_S}s"
        time.sleep(0.05)
    idx = cluster.urls.index(leader)
    cluster.procs[idx].kill()
    cluster.procs[idx].wait()
    killed_at = time.perf_counter()
    others = [u for u in cluster.urls if u != leader]
    seen: dict[int, int] = {}  # answer status -> count, for the report when it fails
    i = 0
    while (status := post_status(others[i % len(others)] + "/v1/jobs", {"queue": "fo"})) not in (
        200,
        201,
    ):
        seen[status] = seen.get(status, 0) + 1
        i += 1
        if time.perf_counter() - killed_at > FAILOVER_DEADLINE_S:
            return (
                f"kill {k + 1}: no write within {FAILOVER_DEADLINE_S}s of killing the leader "
                f"(answers seen: {seen}; 0 = no answer)"
            )
        time.sleep(RETRY_S)
    times.append(time.perf_counter() - killed_at)
    spec = cluster.specs[idx]
    with open(cluster.files.log_file(f"restart{spec.node_id}"), "ab") as log:
        cluster.procs[idx] = subprocess.Popen(  # the child keeps its own copy of the log fd
            argv_of(spec.node_id),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    back = time.monotonic() + CATCH_UP_DEADLINE_S
    while not _knows_leader(leader):
        if time.monotonic() > back:
            return f"kill {k + 1}: the restarted node did not rejoin within {CATCH_UP_DEADLINE_S}s"
        time.sleep(0.05)
    return None


def _knows_leader(url: str) -> bool:
    doc = get_json(url + "/v1/cluster", timeout_s=1.0)
    return isinstance(doc, dict) and bool(doc.get("leader_id"))


def replicas(cluster: Cluster) -> dict[str, Any]:
    """Once writes have stopped: do all replicas hold the same state? Compared through
    GET /v1/debug/digest (the pysyncobj baseline serves it; raftsched's convergence is
    checked by its jepsen tests instead, so for it this says `checked: false`)."""
    deadline = time.monotonic() + CATCH_UP_DEADLINE_S
    docs: list[Any] = []
    while time.monotonic() < deadline:
        docs = [get_json(u + "/v1/debug/digest", timeout_s=5.0) for u in cluster.urls]
        if all(d is None for d in docs) and not any(p.poll() is not None for p in cluster.procs):
            return {"checked": False}
        seen = [(d["applied_index"], d["digest"]) for d in docs if isinstance(d, dict)]
        if len(seen) == len(docs) and len(set(seen)) == 1:
            return {"checked": True, "agree": True, "applied_index": seen[0][0]}
        if len(seen) == len(docs) and len({a for a, _ in seen}) == 1:
            break  # same applied index, different states: they diverged
        time.sleep(0.1)
    if any(d is None for d in docs):
        return {"checked": False, "unreachable": sum(d is None for d in docs), "replicas": docs}
    return {"checked": True, "agree": False, "replicas": docs}


def alarms(logs: Path) -> list[str]:
    """The alarming lines (ALARMS) of every node log, for the report."""
    found = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if any(a in line for a in ALARMS):
                found.append(f"{path.name}: {line.strip()[:200]}")
    return found


def measure_cluster(
    cluster: Cluster, settings: Settings, argv_of: Callable[[int], list[str]]
) -> dict[str, Any]:
    """Start `cluster`, take every figure, stop it (always, by pid)."""
    load_start = os.getloadavg()[0]
    cluster.start()
    try:
        url = cluster.leader_url()
        assert url is not None
        idle = asyncio.run(idle_latency(url, settings.idle_count))
        tp = [asyncio.run(throughput(url, c, settings.duration_s)) for c in settings.concurrencies]
        batch = asyncio.run(
            throughput(url, BATCH_CONCURRENCY, settings.duration_s, batch=BATCH_JOBS)
        )
        logs = cluster.files.base / "logs"
        e2e = [
            asyncio.run(
                measure(
                    cluster,
                    w,
                    settings.e2e_jobs,
                    E2E_BATCH,
                    logs,
                    report_batch_max=REPORT_BATCH_MAX,
                )
            )
            for w in settings.e2e_workers
        ]
        fo = failover(cluster, settings.kills, argv_of) if len(cluster.specs) > 1 else None
        agree = replicas(cluster)
    finally:
        cluster.stop()
    return {
        "idle": idle,
        "throughput": tp,
        "batch": batch,
        "e2e": e2e,
        "failover": fo,
        "replicas": agree,
        "alarms": alarms(cluster.files.base / "logs"),
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }

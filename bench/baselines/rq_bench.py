"""RQ on a local Redis: what is measured, exactly.

Theory of operation. RQ has no server of its own: the application enqueues by calling the rq
API in its own process, and that is what is measured here (no HTTP front, which would add a
hop RQ users do not have). The job is `operator.add(1, 2)`, the same trivial callable as the
raftsched runs (`{"call": "operator:add", "args": [1, 2]}`), enqueued by its import path.

- idle enqueue latency: one `Queue.enqueue` at a time, p50/p99 over N.
- enqueue throughput: C threads in this process, each calling `Queue.enqueue` in a loop for
  D seconds (each its own Redis connection). An answer means Redis applied the job's hash and
  the queue push (one MULTI/EXEC pipeline); whether it is on disk depends on `appendfsync`.
  The threads share one interpreter (the GIL): a real app enqueuing from many web workers
  would have more CPUs behind it, and so would a raftsched client.
- batch: 8 threads, each `Queue.enqueue_many` of 100 jobs in one pipeline: jobs/s.
- end to end: N `rq worker` processes (RQ's default Worker forks a work horse per job;
  `--worker-class rq.SimpleWorker` runs jobs in the worker itself), started and given a
  warm-up round; then the clock runs from the first enqueue (`enqueue_many` in batches, as
  jobs_e2e submits in batches) until the finished-job registry counts every job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs in the venv (as bench/jobs_e2e.py)
import redis
from rq import Queue, Worker

from bench.baselines.http_systems import E2E_BATCH
from bench.baselines.redis_server import RedisServer
from bench.baselines.settings import Settings
from bench.cluster import pct
from bench.jobs_e2e import stop_all

JOB_FUNC = "operator.add"
JOB_ARGS = (1, 2)
BATCH_THREADS = 8
BATCH_JOBS = 100
WORKERS_DEADLINE_S = 60.0
DRAIN_DEADLINE_S = 600.0
POLL_S = 0.05
REPO_ROOT = Path(__file__).resolve().parents[2]


def _queue(url: str, name: str) -> Queue:
    return Queue(name, connection=redis.Redis.from_url(url))


def enqueue_latency(url: str, count: int) -> dict[str, float]:
    q = _queue(url, "rq-idle")
    lats = []
    for _ in range(count):
        started = time.perf_counter()
        q.enqueue(JOB_FUNC, *JOB_ARGS)
        lats.append((time.perf_counter() - started) * 1000)
    q.connection.close()
    return {"count": count, "p50_ms": pct(lats, 0.5), "p99_ms": pct(lats, 0.99)}


def _run_threads(
    url: str, name: str, threads: int, duration_s: float, op: Callable[[Queue], int]
) -> tuple[list[float], int, int, float]:
    """Each thread calls `op` (which returns the jobs it enqueued) until the deadline."""
    lats: list[list[float]] = [[] for _ in range(threads)]
    jobs = [0] * threads
    errors = [0] * threads
    queues = [_queue(url, name) for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def loop(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            try:
                jobs[i] += op(queues[i])
            except redis.exceptions.RedisError:
                errors[i] += 1
                continue
            lats[i].append((time.perf_counter() - began) * 1000)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    stop_at[0] = time.perf_counter() + duration_s
    began = time.perf_counter()
    start.wait()
    for t in workers:
        t.join(timeout=duration_s + 60)
    elapsed = time.perf_counter() - began
    for q in queues:
        q.connection.close()
    return [x for per in lats for x in per], sum(jobs), sum(errors), elapsed


def enqueue_throughput(url: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    def one(q: Queue) -> int:
        q.enqueue(JOB_FUNC, *JOB_ARGS)
        return 1

    run = _run_threads(url, f"rq-c{concurrency}", concurrency, duration_s, one)
    return _rates(concurrency, *run)


def enqueue_batch(url: str, duration_s: float) -> dict[str, Any]:
    def many(q: Queue) -> int:
        datas = [Queue.prepare_data(JOB_FUNC, JOB_ARGS) for _ in range(BATCH_JOBS)]
        return len(q.enqueue_many(datas))

    return _rates(BATCH_THREADS, *_run_threads(url, "rq-batch", BATCH_THREADS, duration_s, many))


def _rates(
    concurrency: int, lats: list[float], jobs: int, errors: int, elapsed: float
) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": len(lats),
        "errors": errors,
        "per_s": round(jobs / elapsed),
        "p50_ms": pct(lats, 0.5),
        "p99_ms": pct(lats, 0.99),
    }


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU of these processes, their live children and their reaped children
    (RQ's fork-per-job work horses are reaped by the worker: children_user/children_system)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in proc.children(recursive=True):
                ct = child.cpu_times()
                total += ct.user + ct.system
        except psutil.NoSuchProcess:
            continue
    return total


def _wait_finished(q: Queue, total: int) -> float:
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    while (done := q.finished_job_registry.count) < total:
        failed = q.failed_job_registry.count
        if failed:
            raise RuntimeError(f"{q.name}: {failed} RQ jobs failed (see the worker logs)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{q.name}: {done}/{total} finished after {DRAIN_DEADLINE_S}s")
        time.sleep(POLL_S)
    return time.monotonic()


def _enqueue_all(q: Queue, jobs: int, batch: int) -> None:
    for start in range(0, jobs, batch):
        n = min(batch, jobs - start)
        q.enqueue_many([Queue.prepare_data(JOB_FUNC, JOB_ARGS) for _ in range(n)])


def e2e_run(
    url: str,
    *,
    redis_pid: int,
    workers: int,
    jobs: int,
    batch: int,
    logs: Path,
    worker_class: str = "rq.Worker",
) -> dict[str, Any]:
    """N `rq worker` processes drain `jobs` trivial jobs; jobs/s from the first enqueue."""
    name = f"rq-e2e-{worker_class.rsplit('.', 1)[-1].lower()}-w{workers}"
    q = _queue(url, name)
    logs.mkdir(parents=True, exist_ok=True)
    rq_cli = [sys.executable, "-c", "from rq.cli import main; main()"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            argv = [
                *rq_cli, "worker", "--url", url, "--quiet", "--name", f"{name}-{i}",
                "--worker-class", worker_class, name,
            ]  # fmt: skip
            with open(logs / f"{name}-{i}.log", "ab") as log:  # the child keeps its own fd
                procs.append(
                    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
                )
        deadline = time.monotonic() + WORKERS_DEADLINE_S
        while Worker.count(connection=q.connection, queue=q) < workers:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"rq workers did not all register: see {logs}")
            time.sleep(POLL_S)
        warm = workers * 4
        _enqueue_all(q, warm, batch)
        _wait_finished(q, warm)
        pids = [redis_pid]
        worker_pids = [p.pid for p in procs]
        redis_cpu0, workers_cpu0 = _cpu_s(pids), _cpu_s(worker_pids)
        t0 = time.monotonic()
        _enqueue_all(q, jobs, batch)
        submitted = time.monotonic()
        t1 = _wait_finished(q, warm + jobs)
        elapsed = t1 - t0
        return {
            "workers": workers,
            "worker_class": worker_class,
            "jobs": jobs,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(jobs / elapsed, 1),
            "submit_seconds": round(submitted - t0, 3),
            "server_cpu_ms_per_job": round((_cpu_s(pids) - redis_cpu0) * 1000 / jobs, 3),
            "workers_cpu_ms_per_job": round((_cpu_s(worker_pids) - workers_cpu0) * 1000 / jobs, 3),
            "machine_load_1m": round(psutil.getloadavg()[0], 2),
        }
    finally:
        stop_all(procs)
        q.connection.close()


def measure_rq(settings: Settings, base: Path, *, appendfsync: str, binary: str) -> dict[str, Any]:
    """Every RQ figure against one fresh Redis server (stopped by pid at the end)."""
    load_start = os.getloadavg()[0]
    with RedisServer(base / "redis", appendfsync=appendfsync, binary=binary) as srv:
        idle = enqueue_latency(srv.url, settings.idle_count)
        tp = [enqueue_throughput(srv.url, c, settings.duration_s) for c in settings.concurrencies]
        batch = enqueue_batch(srv.url, settings.duration_s)
        runs = [("rq.SimpleWorker", settings.e2e_jobs), ("rq.Worker", settings.rq_fork_jobs)]
        e2e = [
            e2e_run(
                srv.url,
                redis_pid=srv.pid,
                workers=w,
                jobs=jobs,
                batch=E2E_BATCH,
                logs=base / "logs",
                worker_class=cls,
            )
            for cls, jobs in runs
            for w in settings.e2e_workers
        ]
        version = srv.version()
    return {
        "idle": idle,
        "throughput": tp,
        "batch": batch,
        "e2e": e2e,
        "failover": None,
        "alarms": [],
        "server": version,
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }

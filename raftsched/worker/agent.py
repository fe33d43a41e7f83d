"""The worker agent: register, lease up to free capacity, run, heartbeat, report.

Theory of operation. Three kinds of asyncio tasks share one `AsyncClient` (which follows the
leader and retries 503s / connection errors against any node with backoff):
- the registration loop heartbeats the worker (capacity = concurrency, queues) every ttl/3;
- the lease loop asks for up to the free capacity with a long poll, rotating over the queues;
  while jobs run and fewer than a quarter of the slots are free it lingers up to
  `lease_linger_ms` for more, so one lease (one Raft entry) fills several slots;
- one task per leased job runs it in a child process (runner.JobRun: a shell command in a new
  process, a Python callable in one of the pool's long-lived children, pool.py) while a lease
  heartbeat renews the lease every third of its remaining time. A 409 on renewal, or the local
  estimate of the expiry passing without a renewal (partitioned), means the lease is lost: the
  child's process group is killed and nothing is reported (another worker owns the job now).
At the end the job reports complete(result) or fail(error, retryable) with its lease's token;
reports finishing within `report_batch_ms` of each other (up to `report_batch_max`) go in ONE
request and one Raft entry (reports.py), each still accepted or refused on its own.
The registration heartbeat carries `incarnation`, a string unique to this process run, so a
restarted worker with the same id gets its previous run's leases released at once.
Drain (first SIGTERM/SIGINT): stop leasing (a grant from a poll already in flight joins the
running jobs), let running jobs finish for `drain_grace_s`, then stop the rest and fail them as
retryable so another worker can lease them at once. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from raftsched.client import (
    ApiError,
    AsyncClient,
    BadRequest,
    Conflict,
    Lease,
    Overloaded,
    Unauthorized,
    Unavailable,
)
from raftsched.worker.pool import PyPool
from raftsched.worker.reports import (
    REPORT_OVERLOADED_RETRY_S,
    ReportBatcher,
    ok_text,
    overload_wait_s,
)
from raftsched.worker.runner import STOPPED, SUCCEEDED, JobRun, Outcome

log = logging.getLogger("raftsched.worker")
# Lease once a quarter of the slots is free (or after the linger time, or when idle).
LEASE_BATCH_FRACTION = 4
EXIT_REFUSED = 1  # the cluster refused the worker itself (token, role, bad registration)


@dataclass(frozen=True)
class WorkerConfig:
    cluster: list[str]
    queues: list[str]
    concurrency: int = 1
    worker_id: str = ""
    token: str | None = None
    imports: list[str] = field(default_factory=list)
    ttl_ms: int = 10_000
    long_poll_ms: int = 5_000
    drain_grace_s: float = 30.0
    kill_grace_s: float = 2.0
    tail_bytes: int = 4096
    max_jobs: int | None = None  # stop after this many jobs (tests, benches)
    fresh_process: bool = False  # a new interpreter per Python job instead of the pool
    lease_linger_ms: int = 20  # how long a few free slots wait for more before leasing
    report_batch_ms: float = 2.0  # reports finishing this close together share one request
    report_batch_max: int = 64  # reports per batched request; 1: one request per report

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValueError("at least one --queue is required")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be >= 1")
        if self.lease_linger_ms < 0:
            raise ValueError("--lease-linger-ms must be >= 0")
        if self.report_batch_ms < 0 or self.report_batch_max < 1:
            raise ValueError("--report-batch-ms must be >= 0 and --report-batch-max >= 1")


def default_worker_id() -> str:
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


def new_incarnation() -> str:
    """Unique per process run (host, pid, start time): the API takes up to 200 chars."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{time.time_ns()}"


class LeaseLost(Exception):
    pass


class Agent:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id or default_worker_id()
        self.client = AsyncClient(config.cluster, token=config.token, timeout_s=30.0)
        self.incarnation = new_incarnation()
        self.reports = ReportBatcher(
            self.client,
            self._report_one,
            window_s=config.report_batch_ms / 1000,
            max_reports=config.report_batch_max,
        )
        self.running: dict[str, JobRun] = {}
        self.pool = (
            None
            if config.fresh_process
            else PyPool(
                size=config.concurrency,
                imports=config.imports,
                kill_grace_s=config.kill_grace_s,
                tail_bytes=config.tail_bytes,
            )
        )
        self.draining = False
        self.stop_now = False
        self.jobs_done = 0
        self._capacity_free = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- signals --

    def request_stop(self) -> None:
        if not self.draining:
            log.info("worker %s: draining (signal again to stop now)", self.worker_id)
            self.draining = True
        else:
            log.info("worker %s: stopping now", self.worker_id)
            self.stop_now = True
            for run in self.running.values():
                run.stop()
        self._stop_event.set()
        self._capacity_free.set()

    # -- main --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        log.info(
            "worker %s: queues %s, concurrency %d, cluster %s",
            self.worker_id,
            ",".join(self.config.queues),
            self.config.concurrency,
            ",".join(self.client.urls),
        )
        registration = asyncio.create_task(self._register_loop())
        try:
            await self._first_registration()
            await self._lease_loop()
            await self._drain()
        except (Unauthorized, BadRequest) as exc:  # retrying cannot fix these: say so, exit
            log.error("worker %s: the cluster refused this worker: %s", self.worker_id, exc)
            return EXIT_REFUSED
        finally:
            registration.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await registration
            await self.client.close()
            if self.pool is not None:
                await self.pool.close()
        log.info("worker %s: stopped after %d jobs", self.worker_id, self.jobs_done)
        return 0

    async def _register_once(self) -> None:
        await self.client.worker_heartbeat(
            self.worker_id,
            capacity=self.config.concurrency,
            queues=self.config.queues,
            ttl_ms=self.config.ttl_ms,
            incarnation=self.incarnation,
        )

    async def _first_registration(self) -> None:
        while not self.draining:
            try:
                await self._register_once()
                return
            except (Unauthorized, BadRequest):
                raise  # a wrong token or a bad flag: no retry will help
            except ApiError as exc:  # unavailable for the client's whole deadline, or refused
                log.warning("worker registration failed (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), 1.0)

    async def _register_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.ttl_ms / 3000)
            try:
                await self._register_once()
            except ApiError as exc:
                log.warning("worker heartbeat failed: %s", exc)

    def _draining(self) -> bool:
        # A method, not the attribute: a signal handler sets it while we await, which mypy's
        # narrowing of `self.draining` inside the loop cannot see.
        return self.draining

    def _free(self) -> int:
        return self.config.concurrency - len(self.running)

    def _lease_batch_min(self) -> int:
        return max(1, self.config.concurrency // LEASE_BATCH_FRACTION)

    async def _linger(self) -> int:
        """Wait up to `lease_linger_ms` for more slots to free up, so that one lease request
        (one Raft entry) fills several slots instead of one each: with short jobs, slots
        free up one completion at a time. Returns the free slots."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.lease_linger_ms / 1000
        while self.running and self._free() < self._lease_batch_min() and not self.draining:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._capacity_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._capacity_free.wait(), remaining)
        return self._free()

    def _done_enough(self) -> bool:
        return self.config.max_jobs is not None and self.jobs_done >= self.config.max_jobs

    async def _lease_loop(self) -> None:
        queues = self.config.queues
        turn = 0
        while not self.draining and not self._done_enough():
            free = self._free()
            if free <= 0:
                self._capacity_free.clear()
                await self._capacity_free.wait()
                continue
            if self.running and free < self._lease_batch_min():
                free = await self._linger()
                if self._draining():  # the signal came while lingering: lease nothing more
                    break
            queue = queues[turn % len(queues)]
            turn += 1
            wait_ms = self.config.long_poll_ms // len(queues)
            try:
                leases = await self.client.lease(
                    queue, worker_id=self.worker_id, max_jobs=free, wait_ms=wait_ms
                )
            except Unavailable as exc:
                log.warning("lease on %s: cluster unavailable (%s); retrying", queue, exc)
                continue
            except ApiError as exc:
                log.warning("lease on %s refused: %s", queue, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), 1.0)
                continue
            for lease in leases:
                # A grant from a poll already in flight when the drain began is run like the
                # other running jobs (handing it back would spend one of its attempts); only a
                # stop-now hands it back at once.
                if self.stop_now:
                    self._spawn(self._release(lease, "worker stopping"))
                else:
                    self._start(lease)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, lease: Lease) -> None:
        run = JobRun(
            lease,
            tail_bytes=self.config.tail_bytes,
            kill_grace_s=self.config.kill_grace_s,
            imports=self.config.imports,
            pool=self.pool,
        )
        self.running[lease.job_id] = run
        self._spawn(self._job(run))

    async def _job(self, run: JobRun) -> None:
        lease = run.lease
        started = time.monotonic()
        log.info(
            "job start id=%s attempt=%d token=%d queue=%s",
            lease.job_id,
            lease.attempt,
            lease.token,
            lease.queue,
        )
        keeper = asyncio.create_task(self._keep_lease(run))
        outcome_text = "?"
        try:
            outcome = await run.run()
            lost = keeper.done() and isinstance(keeper.exception(), LeaseLost)
            keeper.cancel()
            if lost or (outcome.kind == STOPPED and not self.stop_now):
                outcome_text = "lease_lost"
            elif outcome.kind == STOPPED:
                outcome_text = await self.reports.report(
                    lease, Outcome("failed", error={"kind": "worker_stopped"}, retryable=True)
                )
            else:
                outcome_text = await self.reports.report(lease, outcome)
        finally:
            keeper.cancel()
            self.running.pop(lease.job_id, None)
            self.jobs_done += 1
            self._capacity_free.set()
            log.info(
                "job end id=%s attempt=%d token=%d duration_ms=%d outcome=%s",
                lease.job_id,
                lease.attempt,
                lease.token,
                (time.monotonic() - started) * 1000,
                outcome_text,
            )

    async def _report_one(self, lease: Lease, outcome: Outcome) -> str:
        """complete/fail of one job with the lease's token (the batcher's fallback). 503s and
        lost connections are retried by the client; a 429 (the cluster overloaded) is retried
        here, with its Retry-After, for up to REPORT_OVERLOADED_RETRY_S: giving up would waste
        the run (the lease would expire and the job run again)."""
        deadline = time.monotonic() + REPORT_OVERLOADED_RETRY_S
        while True:
            try:
                if outcome.kind == SUCCEEDED:
                    await self.client.complete(lease.job_id, lease.token, outcome.result)
                else:
                    await self.client.fail(
                        lease.job_id, lease.token, outcome.error, retryable=outcome.retryable
                    )
                return ok_text(outcome)
            except Conflict as exc:  # stale token, lease expired, job cancelled meanwhile
                return f"refused ({exc.code}: lease lost)"
            except Overloaded as exc:
                wait_s = overload_wait_s(exc, deadline)
                if wait_s is None:
                    return f"report failed ({exc})"
                await asyncio.sleep(wait_s)
            except ApiError as exc:
                return f"report failed ({exc})"

    async def _release(self, lease: Lease, why: str) -> None:
        try:
            await self.client.fail(
                lease.job_id, lease.token, {"kind": "released", "message": why}, retryable=True
            )
        except ApiError as exc:
            log.warning("release of %s failed: %s", lease.job_id, exc)

    async def _keep_lease(self, run: JobRun) -> None:
        """Renew the lease until cancelled; on loss, stop the child and raise LeaseLost."""
        lease = run.lease
        expires_local = _local_expiry(lease.lease_expires_at)
        expiry_ms = lease.lease_expires_at
        while True:
            if _lasts_to_the_timeout(lease, expiry_ms):
                # The cluster caps a lease at the attempt's end (lease start + timeout_ms): a
                # renewal cannot extend it, so each one would only cost a log entry.
                await asyncio.Event().wait()
            remaining = expires_local - time.monotonic()
            await asyncio.sleep(max(0.05, min(remaining / 3, 10.0)))
            sent = time.monotonic()
            try:
                budget = max(0.1, expires_local - sent)
                new_expiry = await asyncio.wait_for(
                    self.client.heartbeat_lease(lease.job_id, lease.token), budget
                )
                expires_local = _local_expiry(new_expiry) if new_expiry is not None else sent + 10.0
                expiry_ms = new_expiry
            except Conflict as exc:  # stale token, expired, or the job ended (cancelled)
                log.warning("job %s: lease lost (%s); stopping it", lease.job_id, exc.code)
                run.stop()
                raise LeaseLost() from exc
            except (ApiError, TimeoutError) as exc:
                if time.monotonic() >= expires_local:
                    log.warning(
                        "job %s: lease expired unrenewed (%r); stopping it", lease.job_id, exc
                    )
                    run.stop()
                    raise LeaseLost() from exc

    async def _drain(self) -> None:
        if not self.running:
            return
        log.info(
            "worker %s: waiting up to %.0fs for %d running jobs",
            self.worker_id,
            self.config.drain_grace_s,
            len(self.running),
        )
        deadline = time.monotonic() + self.config.drain_grace_s
        while self.running and time.monotonic() < deadline and not self.stop_now:
            self._capacity_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._capacity_free.wait(), deadline - time.monotonic())
        if self.running:
            self.stop_now = True  # the jobs' tasks report them failed (retryable)
            for run in list(self.running.values()):
                run.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.kill_grace_s + 15.0)


def _lasts_to_the_timeout(lease: Lease, expiry_ms: int | None) -> bool:
    if expiry_ms is None or lease.leased_at is None or not lease.timeout_ms:
        return False
    return expiry_ms >= lease.leased_at + lease.timeout_ms


def _local_expiry(lease_expires_at_ms: int | None) -> float:
    """The monotonic time the lease ends, from the server's wall-clock ms (same-ish clock);
    a margin of a quarter second so the worker gives up before the server does."""
    if lease_expires_at_ms is None:
        return time.monotonic() + 10.0
    return time.monotonic() + (lease_expires_at_ms - time.time() * 1000) / 1000 - 0.25

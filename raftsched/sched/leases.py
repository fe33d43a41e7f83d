"""Leases, fencing tokens, and worker liveness.

Fencing: the token of a lease is the Raft index of the Lease entry that granted it. All jobs
leased by one Lease command share that token; a job's tokens strictly increase because indexes
do. Heartbeat, complete and fail must quote the job's current token:
- another token (an older lease, or a made-up one): `stale_token`, nothing changes;
- the current token while the job is leased: accepted (the lease is live: the due work of this
  very entry already released it if clock >= expiry);
- the current token of a job that already succeeded: a repeated Complete returns the same
  answer (the job document, which no longer changes); anything else `already_terminal`;
- the current token of a lease that expired (by its deadline or its worker's): `lease_expired`;
- the current token of an attempt that already failed: a repeated Fail is acknowledged again
  (Ok, nothing changes: a worker retrying after a lost answer must not see an error);
  heartbeat and complete get `not_leased`.

Selection: the queue's heap gives the highest-priority pending job, oldest first, in O(log n);
the number taken is min(max_jobs, worker room, queue room under max_in_flight). A paused queue
or a full worker gets an empty list, not an error: there is simply no work for it now.

Expiry: a lease is live while clock < lease_expires_ms. Heartbeats only ever extend a lease
(never shorten it), so a heap entry's time is never later than its lease's real expiry: when
an entry comes due and the lease was extended meanwhile, it is pushed again at the new expiry.
That keeps one heap entry per lease however often it is heartbeated. Workers use the same
scheme (`Worker.heap_ms` is the time of the worker's entry).

Release (expiry, worker expiry): the attempt counts as failed; the job is retried after its
backoff (`scheduled`, or `pending` if the delay is zero) or goes `dead` when its attempts are
exhausted. Worker expiry releases all the worker's leases in the order it took them.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from .backoff import retry_delay_ms
from .commands import Complete, Fail, HeartbeatLease, Lease, WorkerHeartbeat
from .errors import (
    AlreadyTerminal,
    LeaseExpired,
    NotFound,
    NotLeased,
    SchedError,
    StaleToken,
    TooManyWorkers,
)
from .job import (
    CLOSED_COMPLETED,
    CLOSED_EXPIRED,
    CLOSED_FAILED,
    CLOSED_WORKER_EXPIRED,
    DEAD,
    LEASED,
    REASON_ATTEMPTS_EXHAUSTED,
    REASON_FAILED,
    SUCCEEDED,
    TERMINAL,
    Job,
    job_outcome,
    lease_grant,
)
from .result import Ok, Refused, Result
from .workers import Worker

if TYPE_CHECKING:
    from .state import SchedulerState


# -- lease -----------------------------------------------------------------------------------------


def lease(st: SchedulerState, cmd: Lease, index: int) -> Result:
    now = st.clock_ms
    worker = st.workers.get(cmd.worker_id)
    if worker is None:
        limits = st.limits
        if len(st.workers) >= limits.max_workers:
            return Refused(TooManyWorkers(f"at most {limits.max_workers} workers",
                                          {"limit": limits.max_workers}))
        worker = _register(st, cmd.worker_id, limits.default_worker_capacity, (),
                           limits.default_worker_ttl_ms)
    else:
        worker.last_seen_ms = now
    queue = st.queues.get(cmd.queue)
    granted: list[dict[str, object]] = []
    if queue is None:
        return Ok({"leases": granted})
    count = min(cmd.max_jobs, worker.room(), queue.lease_room())
    leased = worker.leased
    for _ in range(count):
        job = queue.pop_pending(st.jobs)
        assert job is not None, "pending count and pending index disagree"
        job.token = index
        job.attempts += 1
        job.worker_id = worker.id
        job.lease_expires_ms = now + job.lease_ms
        job.closed_by = None
        st.transition(job, LEASED)
        leased[job.id] = job
        granted.append(lease_grant(job))
    return Ok({"leases": granted})


def _held(st: SchedulerState, job_id: str, token: int) -> Job | SchedError:
    """The job if `token` holds its live lease, else the refusal (see the module docstring)."""
    job = st.jobs.get(job_id)
    if job is None:
        return NotFound(f"job {job_id!r} not found", {"job_id": job_id})
    if token != job.token:
        return StaleToken(
            f"token {token} is not the current lease of job {job_id!r}",
            {"job_id": job_id, "token": token, "current_token": job.token})
    if job.state == LEASED:
        assert st.clock_ms < job.lease_expires_ms, "due work should have released it"
        return job
    details = {"job_id": job_id, "token": token, "state": job.state}
    if job.closed_by in (CLOSED_EXPIRED, CLOSED_WORKER_EXPIRED):
        return LeaseExpired(f"the lease of job {job_id!r} with token {token} expired", details)
    if job.state in TERMINAL:
        return AlreadyTerminal(f"job {job_id!r} is already {job.state}", details)
    return NotLeased(f"job {job_id!r} is not leased with token {token}", details)


def heartbeat(st: SchedulerState, cmd: HeartbeatLease, index: int) -> Result:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        return Refused(job)
    now = st.clock_ms
    extend_ms = job.lease_ms if cmd.extend_ms is None else cmd.extend_ms
    job.lease_expires_ms = max(job.lease_expires_ms, now + extend_ms)
    _touch_worker(st, job)
    return Ok({"job_id": job.id, "token": job.token, "lease_expires_at": job.lease_expires_ms})


def complete(st: SchedulerState, cmd: Complete, index: int) -> Result:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        existing = st.jobs.get(cmd.job_id)
        if (existing is not None and existing.state == SUCCEEDED
                and existing.token == cmd.token and existing.closed_by == CLOSED_COMPLETED):
            return Ok(job_outcome(existing))  # the same answer as the first complete
        return Refused(job)
    job.result = cmd.result
    job.closed_by = CLOSED_COMPLETED
    _touch_worker(st, job)
    st.transition(job, SUCCEEDED)
    return Ok(job_outcome(job))


def fail(st: SchedulerState, cmd: Fail, index: int) -> Result:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        existing = st.jobs.get(cmd.job_id)
        if (existing is not None and existing.token == cmd.token
                and existing.closed_by == CLOSED_FAILED):
            # A worker retrying its fail after a lost answer: acknowledge it again, change
            # nothing (the job may have moved on since; the answer shows where it is now).
            return Ok(job_outcome(existing))
        return Refused(job)
    job.error = cmd.error
    _touch_worker(st, job)
    _end_attempt(st, job, CLOSED_FAILED, cmd.retryable)
    return Ok(job_outcome(job))


def _end_attempt(st: SchedulerState, job: Job, closed_by: str, retryable: bool) -> None:
    """The leased attempt is over without success: retry after backoff, or dead."""
    assert job.state == LEASED
    job.closed_by = closed_by
    if retryable and job.attempts < job.max_attempts:
        job.run_at_ms = st.clock_ms + retry_delay_ms(job.spec.backoff, job.id, job.attempts)
        st.transition(job, st.ready_state(job))
    else:
        job.reason = REASON_ATTEMPTS_EXHAUSTED if retryable else REASON_FAILED
        st.transition(job, DEAD)


def _touch_worker(st: SchedulerState, job: Job) -> None:
    worker = st.workers.get(job.worker_id or "")
    if worker is not None:
        worker.last_seen_ms = st.clock_ms


# -- expiry ---------------------------------------------------------------------------------------


def expire_leases(st: SchedulerState) -> int:
    heap, now, released = st.lease_heap, st.clock_ms, 0
    while heap and heap[0][0] <= now:
        _, token, seq, job_id = heapq.heappop(heap)
        job = st.live_job(job_id, seq)
        if job is None or job.state != LEASED or job.token != token:
            continue  # stale: that lease already ended
        if job.lease_expires_ms <= now:
            job.error = "lease expired"
            _end_attempt(st, job, CLOSED_EXPIRED, True)
            released += 1
        else:  # heartbeated since: wait for the new expiry
            heapq.heappush(heap, (job.lease_expires_ms, token, seq, job_id))
    return released


def expire_workers(st: SchedulerState) -> int:
    heap, now, released = st.worker_heap, st.clock_ms, 0
    while heap and heap[0][0] <= now:
        at_ms, worker_id = heapq.heappop(heap)
        worker = st.workers.get(worker_id)
        if worker is None or worker.heap_ms != at_ms:
            continue
        if worker.expires_ms > now:
            worker.heap_ms = worker.expires_ms
            heapq.heappush(heap, (worker.heap_ms, worker_id))
            continue
        del st.workers[worker_id]
        for job in list(worker.leased.values()):
            job.error = "worker expired"
            _end_attempt(st, job, CLOSED_WORKER_EXPIRED, True)
            released += 1
    return released


# -- workers -----------------------------------------------------------------------------------


def _register(st: SchedulerState, worker_id: str, capacity: int, queues: tuple[str, ...],
              ttl_ms: int) -> Worker:
    worker = st.workers[worker_id] = Worker(worker_id, capacity, queues, ttl_ms, st.clock_ms)
    worker.heap_ms = worker.expires_ms
    heapq.heappush(st.worker_heap, (worker.heap_ms, worker_id))
    return worker


def worker_heartbeat(st: SchedulerState, cmd: WorkerHeartbeat, index: int) -> Result:
    limits = st.limits
    ttl_ms = limits.default_worker_ttl_ms if cmd.ttl_ms is None else cmd.ttl_ms
    worker = st.workers.get(cmd.worker_id)
    if worker is None:
        if len(st.workers) >= limits.max_workers:
            return Refused(TooManyWorkers(f"at most {limits.max_workers} workers",
                                          {"limit": limits.max_workers}))
        worker = _register(st, cmd.worker_id, cmd.capacity, cmd.queues, ttl_ms)
    else:
        worker.capacity = cmd.capacity
        worker.queues = cmd.queues
        worker.ttl_ms = ttl_ms
        worker.last_seen_ms = st.clock_ms
        if worker.expires_ms < worker.heap_ms:  # a shorter ttl: the old entry would be late
            worker.heap_ms = worker.expires_ms
            heapq.heappush(st.worker_heap, (worker.heap_ms, worker.id))
    return Ok({"worker": worker.doc()})


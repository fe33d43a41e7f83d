"""Leases, fencing tokens, attempt timeouts and worker liveness.

Fencing: the token of a lease is the Raft index of the Lease entry that granted it. All jobs
leased by one Lease command share that token; a job's tokens strictly increase because indexes
do. Heartbeat, complete and fail must quote the job's current token:
- another token (an older lease, or a made-up one): `stale_token`, nothing changes;
- the current token while the lease is live: accepted;
- the current token of a job that already succeeded: a repeated Complete returns the same
  answer; anything else `already_terminal`;
- the current token of a lease that expired (by its deadline, its attempt timeout or its
  worker's expiry): `lease_expired`;
- the current token of an attempt that already failed: a repeated Fail is acknowledged again
  (Ok, nothing changes: a worker retrying after a lost answer must not see an error); heartbeat
  and complete get `not_leased`. Once the job was leased again, that token is stale like any
  other: a repeated Fail then gets `stale_token` (issue 7 defect 10: code and docs agree).

A lease is live while clock < lease_expires_ms and its worker's registration (the incarnation
that took it) is live. Due work releases dead leases in bounded slices (state.py); a command
that meets a dead lease before its slice came releases that one job on the spot, so no command
ever acts on a dead lease and the outcome does not depend on how far the slices got.

Attempt timeout (SPEC §4): a job with timeout_ms must end its attempt at lease start +
timeout_ms whatever the heartbeats say: the lease expiry is capped at that deadline, and the
release then counts as a failed attempt (error "timed out"), retried or dead per the job's
policy.

Selection: the queue's pending index gives the highest-priority pending job, oldest first; the
number taken is min(max_jobs, worker room, queue room under max_in_flight). A paused queue, a
full worker or an unknown queue gets an empty list, not an error. A worker registered with a
queue list may lease only from those queues (`queue_not_allowed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .answers import (
    HeartbeatAnswer,
    JobOutcome,
    LeaseAnswer,
    LeaseGrant,
    ReportBatchAnswer,
    ReportOk,
    ReportRefused,
    WorkerAnswer,
)
from .backoff import retry_delay_ms
from .commands import Complete, Fail, HeartbeatLease, Lease, ReportBatch, WorkerHeartbeat
from .errors import (
    AlreadyTerminal,
    LeaseExpired,
    NotFound,
    NotLeased,
    QueueNotAllowed,
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
from .result import Ok, Refused
from .workers import Worker

if TYPE_CHECKING:
    from .state import Budget, SchedulerState

ERROR_LEASE_EXPIRED = "lease expired"
ERROR_TIMED_OUT = "timed out"
ERROR_WORKER_EXPIRED = "worker expired"


# -- lease -----------------------------------------------------------------------------------------


def lease(st: SchedulerState, cmd: Lease, index: int) -> Ok[LeaseAnswer] | Refused:
    now = st.clock_ms
    worker = st.workers.get(cmd.worker_id)
    if worker is None or worker.expires_ms <= now:
        limits = st.limits
        if worker is None and len(st.workers) >= limits.max_workers:
            return Refused(
                TooManyWorkers(
                    f"at most {limits.max_workers} workers", {"limit": limits.max_workers}
                )
            )
        worker = register(
            st,
            cmd.worker_id,
            capacity=limits.default_worker_capacity,
            queues=(),
            ttl_ms=limits.default_worker_ttl_ms,
            index=index,
            process=None,
        )
    elif not worker.may_lease(cmd.queue):
        return Refused(
            QueueNotAllowed(
                f"worker {worker.id!r} registered for queues {list(worker.queues)}, not "
                f"{cmd.queue!r}",
                {"worker_id": worker.id, "queue": cmd.queue},
            )
        )
    else:
        worker.last_seen_ms = now
    queue = st.queues.get(cmd.queue)
    granted: list[LeaseGrant] = []
    if queue is None:
        return Ok({"leases": granted})
    count = min(cmd.max_jobs, worker.room(), queue.lease_room(), st.limits.lease_grants_per_entry)
    leased = worker.leased
    jobs = st.jobs
    for _ in range(count):
        key = queue.pending.first()
        assert key is not None, "pending count and pending index disagree"
        job = jobs[key[2]]
        job.token = index
        job.attempts += 1
        job.worker_id = worker.id
        timeout_ms = job.spec.timeout_ms
        job.attempt_deadline_ms = 0 if timeout_ms is None else now + timeout_ms
        job.lease_expires_ms = _capped(job, now + job.lease_ms)
        job.closed_by = None
        st.transition(job, LEASED)
        leased[job.id] = job
        granted.append(lease_grant(job))
    return Ok({"leases": granted})


def _capped(job: Job, expires_ms: int) -> int:
    deadline = job.attempt_deadline_ms
    return min(expires_ms, deadline) if deadline else expires_ms


def lease_is_live(st: SchedulerState, job: Job) -> bool:
    assert job.state == LEASED
    if st.clock_ms >= job.lease_expires_ms:
        return False
    worker = st.workers.get(job.worker_id or "")
    return worker is not None and worker.expires_ms > st.clock_ms and job.id in worker.leased


def release_dead_lease(st: SchedulerState, job: Job) -> None:
    """End a leased attempt whose lease is dead (deadline, timeout or worker)."""
    assert not lease_is_live(st, job)
    st.lease_expirations += 1
    if st.clock_ms >= job.lease_expires_ms:
        deadline = job.attempt_deadline_ms
        timed_out = bool(deadline) and job.lease_expires_ms >= deadline
        job.error = ERROR_TIMED_OUT if timed_out else ERROR_LEASE_EXPIRED
        end_attempt(st, job, CLOSED_EXPIRED, True)
    else:
        job.error = ERROR_WORKER_EXPIRED
        end_attempt(st, job, CLOSED_WORKER_EXPIRED, True)


def _held(st: SchedulerState, job_id: str, token: int) -> Job | SchedError:
    """The job if `token` holds its live lease, else the refusal (see the module docstring)."""
    job = st.jobs.get(job_id)
    if job is None:
        return NotFound(f"job {job_id!r} not found", {"job_id": job_id})
    if token != job.token:
        return StaleToken(
            f"token {token} is not the current lease of job {job_id!r}",
            {"job_id": job_id, "token": token, "current_token": job.token},
        )
    if job.state == LEASED:
        if lease_is_live(st, job):
            return job
        release_dead_lease(st, job)  # its due-work slice has not come yet
    details = {"job_id": job_id, "token": token, "state": job.state}
    if job.closed_by in (CLOSED_EXPIRED, CLOSED_WORKER_EXPIRED):
        return LeaseExpired(f"the lease of job {job_id!r} with token {token} expired", details)
    if job.state in TERMINAL:
        return AlreadyTerminal(f"job {job_id!r} is already {job.state}", details)
    return NotLeased(f"job {job_id!r} is not leased with token {token}", details)


def heartbeat(st: SchedulerState, cmd: HeartbeatLease, index: int) -> Ok[HeartbeatAnswer] | Refused:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        return Refused(job)
    now = st.clock_ms
    extend_ms = job.lease_ms if cmd.extend_ms is None else cmd.extend_ms
    expires_ms = _capped(job, max(job.lease_expires_ms, now + extend_ms))
    if expires_ms != job.lease_expires_ms:
        st.lease_index.remove((job.lease_expires_ms, job.seq, job.id))
        job.lease_expires_ms = expires_ms
        st.lease_index.add((expires_ms, job.seq, job.id))
    _touch_worker(st, job)
    return Ok({"job_id": job.id, "token": job.token, "lease_expires_at": job.lease_expires_ms})


def complete(st: SchedulerState, cmd: Complete, index: int) -> Ok[JobOutcome] | Refused:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        existing = st.jobs.get(cmd.job_id)
        if (
            existing is not None
            and existing.state == SUCCEEDED
            and existing.token == cmd.token
            and existing.closed_by == CLOSED_COMPLETED
        ):
            return Ok(job_outcome(existing))  # the same answer as the first complete
        return Refused(job)
    job.result = cmd.result
    job.closed_by = CLOSED_COMPLETED
    _touch_worker(st, job)
    st.transition(job, SUCCEEDED)
    return Ok(job_outcome(job))


def fail(st: SchedulerState, cmd: Fail, index: int) -> Ok[JobOutcome] | Refused:
    job = _held(st, cmd.job_id, cmd.token)
    if isinstance(job, SchedError):
        existing = st.jobs.get(cmd.job_id)
        if (
            existing is not None
            and existing.token == cmd.token
            and existing.closed_by == CLOSED_FAILED
        ):
            # A worker retrying its fail after a lost answer, while its token is still the
            # job's current one: acknowledge it again, change nothing. Once the job was
            # leased again the token is stale and the answer is `stale_token` (fencing
            # comes first: a stale token never gets an Ok).
            return Ok(job_outcome(existing))
        return Refused(job)
    job.error = cmd.error
    _touch_worker(st, job)
    end_attempt(st, job, CLOSED_FAILED, cmd.retryable)
    return Ok(job_outcome(job))


def report_batch(st: SchedulerState, cmd: ReportBatch, index: int) -> Ok[ReportBatchAnswer]:
    """Each report as its own complete/fail: a refused one changed nothing (see `_held`),
    so the reports are independent, not all or none."""
    results: list[ReportOk | ReportRefused] = []
    for item in cmd.reports:
        result = complete(st, item, index) if isinstance(item, Complete) else fail(st, item, index)
        if isinstance(result, Ok):
            results.append({"job_id": item.job_id, "ok": True, "state": result.value["state"]})
        else:
            err = result.error
            results.append(
                {
                    "job_id": item.job_id,
                    "error": {"code": err.code, "message": err.message, "details": err.details},
                }
            )
    return Ok({"results": results})


def end_attempt(st: SchedulerState, job: Job, closed_by: str, retryable: bool) -> None:
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


# -- expiry (due work, bounded by the entry's budget) ---------------------------------------------


def expire_leases(st: SchedulerState, budget: Budget) -> int:
    index, now, released = st.lease_index, st.clock_ms, 0
    while budget.left > 0:
        key = index.first()
        if key is None or key[0] > now:
            break
        job = st.jobs[key[2]]
        assert job.state == LEASED and job.lease_expires_ms == key[0]
        release_dead_lease(st, job)  # removes the key
        budget.left -= 1
        released += 1
    return released


def expire_workers(st: SchedulerState, budget: Budget) -> int:
    """Release the leases of expired workers (in the order each took them) and forget them.
    A worker with more leases than the budget left is drained over several entries; its
    leases are dead meanwhile (`lease_is_live`)."""
    index, now, released = st.worker_index, st.clock_ms, 0
    while budget.left > 0:
        key = index.first()
        if key is None or key[0] > now:
            break
        worker = st.workers[key[1]]
        assert worker.index_ms == key[0]
        budget.left -= 1
        if worker.expires_ms > now:  # refreshed since it was indexed: move to the real expiry
            index.remove(key)
            worker.index_ms = worker.expires_ms
            index.add((worker.index_ms, worker.id))
            continue
        leased = worker.leased
        while leased and budget.left > 0:
            job = next(iter(leased.values()))
            release_dead_lease(st, job)  # pops it from `leased`
            budget.left -= 1
            released += 1
        if not leased:
            index.remove(key)
            del st.workers[worker.id]
    return released


# -- workers -----------------------------------------------------------------------------------


def register(
    st: SchedulerState,
    worker_id: str,
    *,
    capacity: int,
    queues: tuple[str, ...],
    ttl_ms: int,
    index: int,
    process: str | None,
) -> Worker:
    """A new incarnation of `worker_id`; the leases of a previous one are released now
    (at most its capacity, itself bounded by `Limits.max_lease_jobs`)."""
    old = st.workers.get(worker_id)
    if old is not None:
        st.worker_index.remove((old.index_ms, worker_id))
        del st.workers[worker_id]  # from here its leases are dead (`lease_is_live`)
        for job in list(old.leased.values()):
            release_dead_lease(st, job)
    worker = Worker(
        worker_id, capacity, queues, ttl_ms, st.clock_ms, incarnation=index, process=process
    )
    st.workers[worker_id] = worker
    worker.index_ms = worker.expires_ms
    st.worker_index.add((worker.index_ms, worker_id))
    return worker


def worker_heartbeat(
    st: SchedulerState, cmd: WorkerHeartbeat, index: int
) -> Ok[WorkerAnswer] | Refused:
    limits = st.limits
    ttl_ms = limits.default_worker_ttl_ms if cmd.ttl_ms is None else cmd.ttl_ms
    worker = st.workers.get(cmd.worker_id)
    # A registration made by a Lease has no incarnation string: the first heartbeat naming one
    # adopts it (the same process leased, then heartbeated) instead of releasing its leases.
    restarted = worker is not None and (
        worker.expires_ms <= st.clock_ms
        or (
            cmd.incarnation is not None
            and worker.process is not None
            and cmd.incarnation != worker.process
        )
    )
    if worker is None or restarted:
        if worker is None and len(st.workers) >= limits.max_workers:
            return Refused(
                TooManyWorkers(
                    f"at most {limits.max_workers} workers", {"limit": limits.max_workers}
                )
            )
        worker = register(
            st,
            cmd.worker_id,
            capacity=cmd.capacity,
            queues=cmd.queues,
            ttl_ms=ttl_ms,
            index=index,
            process=cmd.incarnation,
        )
    else:
        assert worker is not None
        worker.capacity = cmd.capacity
        worker.queues = cmd.queues
        worker.ttl_ms = ttl_ms
        worker.last_seen_ms = st.clock_ms
        if worker.process is None:
            worker.process = cmd.incarnation
        if worker.expires_ms < worker.index_ms:  # a shorter ttl: the key would be late
            st.worker_index.remove((worker.index_ms, worker.id))
            worker.index_ms = worker.expires_ms
            st.worker_index.add((worker.index_ms, worker.id))
    return Ok({"worker": worker.doc()})

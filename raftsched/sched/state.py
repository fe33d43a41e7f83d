"""The replicated scheduler state machine (SPEC §4): `apply(command, index, stamp_ms) -> Result`.

Theory of operation
-------------------
`apply` is a pure function of the state and the committed entry: no clock reads, no random, no
iteration over sets. Every replica applying the same entries reaches byte-identical state, which
`state_hash()` (blake2b of the canonical snapshot) lets anyone compare.

Each apply does three things, in this order:
1. Time. The state-machine clock becomes max(clock, stamp_ms): the leader's wall time, never
   backwards. `index` must exceed the last applied index (Raft indexes do).
2. Due work, decided against the new clock, before the command is looked at: release the leases
   of workers whose registration expired, release leases whose expiry has come (a lease is live
   while clock < expiry), promote scheduled jobs whose run time has come, fire due cron
   schedules, remove terminal jobs past retention, drop expired idempotency entries. Doing this
   on *every* entry (a `Tick` is just an entry with nothing else to do) means a command can never
   act on a lease that is already dead: a complete that arrives after the expiry finds the job
   released and is refused `lease_expired`.
3. The command, through the idempotency table when it carries a key. Handlers validate
   everything that depends on the state before they change anything, so a refusal changes
   nothing and a batch is all or none. User errors come back as `Refused(error)`, never raised.

Every timed thing sits in a min-heap with lazy deletion: stale entries are recognised and dropped
when they reach the top, so no step ever scans the jobs (leases: raftsched/sched/leases.py;
pending: raftsched/sched/queues.py). `transition` is the one place a job changes state; it keeps
the per-queue counts, the heaps, the worker's lease set and the dependency resolution in step.

Answers (`Ok.value`; small on purpose, the API renders full documents with `get_job`):
  SubmitJobs        {"jobs": [{"id", "state", "seq", "created"}]}  (created False: same spec)
  SubmitWorkflow    the same plus {"workflow": id}
  Lease             {"leases": [{"job_id", "queue", "payload", "token", "lease_expires_at",
                     "attempt", "max_attempts", "timeout_ms", "tags"}]}  (may be empty)
  HeartbeatLease    {"job_id", "token", "lease_expires_at"}
  Complete, Fail, Cancel   {"id", "state", "token", "attempts", "run_at"}
  WorkerHeartbeat   {"worker": worker document}
  ConfigureQueue    {"queue": {"name", "config", "counts"}}
  PutSchedule       {"schedule": schedule document, "created": bool}
  DeleteSchedule    {"deleted": name}
  Backfill          {"created": [job ids], "skipped": [job ids that exist or existed]}
  Tick              {"released", "promoted", "fired", "removed", "clock"}
Times are integer ms since the epoch. Refusals: raftsched/sched/errors.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections.abc import Callable
from typing import Any

from . import leases, schedules, submission
from .commands import (
    AcceptClockJump,
    Backfill,
    Bootstrap,
    Cancel,
    Command,
    Complete,
    ConfigureQueue,
    DeleteSchedule,
    Fail,
    HeartbeatLease,
    JobSpec,
    Lease,
    PutSchedule,
    SubmitJobs,
    SubmitWorkflow,
    Tick,
    UpdateSettings,
    WorkerHeartbeat,
)
from .errors import (
    AlreadyTerminal,
    IdempotencyKeyReused,
    NotFound,
    QueueFull,
    SchedError,
    ValidationError,
)
from .idempotency import IdempotencyTable, fingerprint
from .job import (
    CANCELLED,
    CLOSED_CANCELLED,
    LEASED,
    NEW,
    PENDING,
    REASON_CANCELLED,
    REASON_UPSTREAM_FAILED,
    SCHEDULED,
    SUCCEEDED,
    TERMINAL,
    WAITING,
    Job,
    job_doc,
    job_outcome,
)
from .limits import Limits
from .queues import Queue, QueueConfig
from .result import Ok, Refused, Result
from .schedules import FireRecord, Schedule
from .workers import Worker


class ClockSkew:
    """Stamps the per-entry bound refused (issue 7 defect 5): how many entries, the largest
    refused excess and the last such stamp. Replicated, so every node reports the same."""

    __slots__ = ("last_stamp_ms", "max_excess_ms", "refused_entries")

    def __init__(self) -> None:
        self.refused_entries = 0
        self.max_excess_ms = 0
        self.last_stamp_ms = 0

    def refuse(self, stamp_ms: int, excess_ms: int) -> None:
        self.refused_entries += 1
        self.max_excess_ms = max(self.max_excess_ms, excess_ms)
        self.last_stamp_ms = stamp_ms

    def to_plain(self) -> dict[str, int]:
        return {"refused_entries": self.refused_entries, "max_excess_ms": self.max_excess_ms,
                "last_stamp_ms": self.last_stamp_ms}

Handler = Callable[[Any, Any, int], Result]
_NOTHING_DUE = (0, 0, 0, 0, 0)


class SchedulerState:
    __slots__ = (
        "_ended",
        "_last_due",
        "_stamp_ms",
        "bootstrapped",
        "clock_ms",
        "clock_skew",
        "delay_heap",
        "fire_records",
        "idempotency",
        "jobs",
        "last_index",
        "lease_heap",
        "limits",
        "queues",
        "retention_heap",
        "schedule_heap",
        "schedule_version",
        "schedules",
        "seq",
        "worker_heap",
        "workers",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        # Genesis settings: the defaults, until the Bootstrap entry (tests may pass their own).
        self.limits = limits or Limits()
        self.bootstrapped = False
        self.clock_ms = 0
        self.clock_skew = ClockSkew()
        self.last_index = 0
        self.seq = 0  # creation order of jobs: unique, the "oldest first" tie-break
        self.schedule_version = 0
        self.jobs: dict[str, Job] = {}  # insertion order == seq order (list_jobs relies on it)
        self.queues: dict[str, Queue] = {}
        self.workers: dict[str, Worker] = {}
        self.schedules: dict[str, Schedule] = {}
        self.fire_records: dict[str, FireRecord] = {}
        self.idempotency = IdempotencyTable()
        # Timed indexes hold (time, ..., seq, job id): see queues.py for why ids, not Jobs.
        self.lease_heap: list[tuple[int, int, int, str]] = []  # (expiry, token, seq, id)
        self.delay_heap: list[tuple[int, int, str]] = []  # (run_at, seq, id)
        self.retention_heap: list[tuple[int, int, str]] = []  # (ended_ms, seq, id)
        self.worker_heap: list[tuple[int, str]] = []  # (expiry, worker id)
        self.schedule_heap: list[tuple[int, str, int]] = []  # (next fire, name, version)
        self._ended: list[Job] = []  # terminal jobs whose dependents await resolution
        self._last_due = _NOTHING_DUE
        self._stamp_ms = 0

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, command: Command, index: int, stamp_ms: int) -> Result:
        assert index > self.last_index, (index, self.last_index)
        assert stamp_ms >= 0
        self.last_index = index
        self._stamp_ms = stamp_ms
        now = self._advance_clock(stamp_ms)
        if ((self.lease_heap and self.lease_heap[0][0] <= now)
                or (self.delay_heap and self.delay_heap[0][0] <= now)
                or (self.worker_heap and self.worker_heap[0][0] <= now)
                or (self.schedule_heap and self.schedule_heap[0][0] <= now)
                or (self.retention_heap
                    and self.retention_heap[0][0] + self.limits.retention_ms <= now)):
            self._last_due = self._run_due()
        else:
            self._last_due = _NOTHING_DUE
        table = self.idempotency
        if table.entries:
            table.expire(now, self.limits.idempotency_ttl_ms)
        handler = _HANDLERS[type(command)]
        key = command.idempotency_key
        if key is None:
            return handler(self, command, index)
        fp = fingerprint(command)
        hit = table.get(key)
        if hit is not None:
            if hit[0] == fp:
                return hit[1]
            return Refused(_key_reused(key))
        result = handler(self, command, index)
        table.put(key, fp, result, now, self.limits.idempotency_max_entries)
        return result

    def _advance_clock(self, stamp_ms: int) -> int:
        """clock = max(clock, stamp), but one entry moves it forward by at most
        `max_clock_step_ms` (the genesis clock 0 takes any stamp): one bad stamp cannot move
        the cluster's time a year ahead for good. The clamped excess is counted."""
        clock = self.clock_ms
        if stamp_ms > clock:
            step = self.limits.max_clock_step_ms
            if clock and stamp_ms - clock > step:
                self.clock_skew.refuse(stamp_ms, stamp_ms - clock - step)
                clock += step
            else:
                clock = stamp_ms
            self.clock_ms = clock
        return clock

    def _run_due(self) -> tuple[int, int, int, int, int]:
        released = leases.expire_workers(self) + leases.expire_leases(self)
        promoted = self._promote_due()
        fired = schedules.fire_due(self)
        removed = self._remove_retained()
        return (released, promoted, fired, removed, 0)

    def _promote_due(self) -> int:
        heap, now, promoted = self.delay_heap, self.clock_ms, 0
        while heap and heap[0][0] <= now:
            run_at, seq, job_id = heapq.heappop(heap)
            job = self.live_job(job_id, seq)
            if job is not None and job.state == SCHEDULED and job.run_at_ms == run_at:
                self.transition(job, PENDING)
                promoted += 1
        return promoted

    def _remove_retained(self) -> int:
        heap, removed = self.retention_heap, 0
        now = self.clock_ms - self.limits.retention_ms  # jobs that ended by then are removed
        while heap and heap[0][0] <= now:
            _, seq, job_id = heapq.heappop(heap)
            job = self.live_job(job_id, seq)
            if job is not None:
                assert job.state in TERMINAL
                del self.jobs[job.id]
                self.queues[job.spec.queue].count_remove(job.state)
                job.dependents = None
                removed += 1
        return removed

    def live_job(self, job_id: str, seq: int) -> Job | None:
        """The job an index entry points to, unless it was removed (and its id reused)."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.seq == seq else None

    # -- the one place a job changes state --------------------------------------------------------

    def transition(self, job: Job, new_state: str) -> None:
        old_state = job.state
        queue = self.queues[job.spec.queue]
        if old_state == LEASED:
            worker = self.workers.get(job.worker_id or "")
            if worker is not None:
                worker.leased.pop(job.id, None)
        job.move(new_state, self.clock_ms, self.limits.event_history)
        queue.count_move(None if old_state == NEW else old_state, new_state)
        if new_state == PENDING:
            queue.push_pending(job)
        elif new_state == SCHEDULED:
            heapq.heappush(self.delay_heap, (job.run_at_ms, job.seq, job.id))
        elif new_state == LEASED:
            heapq.heappush(self.lease_heap, (job.lease_expires_ms, job.token, job.seq, job.id))
        elif new_state in TERMINAL:
            heapq.heappush(self.retention_heap, (job.ended_ms, job.seq, job.id))
            if job.dependents:
                self._ended.append(job)
                if len(self._ended) == 1:
                    self._resolve_dependents()

    def _resolve_dependents(self) -> None:
        """Wake or cancel the waiting dependents of ended jobs. A worklist, not recursion: a
        cancellation cascades down chains of any length."""
        ended = self._ended
        i = 0
        while i < len(ended):
            job = ended[i]
            i += 1
            dependents, job.dependents = job.dependents, None
            for dep in dependents or ():
                if dep.state != WAITING:
                    continue
                if job.state == SUCCEEDED:
                    dep.pending_deps -= 1
                    assert dep.pending_deps >= 0
                    if dep.pending_deps == 0:
                        self.transition(dep, self.ready_state(dep))
                else:
                    dep.reason = REASON_UPSTREAM_FAILED
                    self.transition(dep, CANCELLED)  # appends to `ended`
        ended.clear()

    def ready_state(self, job: Job) -> str:
        return SCHEDULED if job.run_at_ms > self.clock_ms else PENDING

    # -- helpers for the handlers -------------------------------------------------------------

    def queue_for(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
        return queue

    def check_room(self, new_per_queue: dict[str, int]) -> SchedError | None:
        """Refusal if adding these many unfinished jobs per queue would break a limit."""
        limits = self.limits
        new_queues = 0
        for name, count in new_per_queue.items():
            queue = self.queues.get(name)
            unfinished = 0 if queue is None else queue.unfinished
            new_queues += queue is None
            if unfinished + count > limits.max_jobs_per_queue:
                return QueueFull(
                    f"queue {name!r} holds {unfinished} unfinished jobs; adding {count} would "
                    f"pass the limit of {limits.max_jobs_per_queue}",
                    {"queue": name, "limit": limits.max_jobs_per_queue})
        if new_queues and len(self.queues) + new_queues > limits.max_queues:
            return QueueFull(f"at most {limits.max_queues} queues", {"limit": limits.max_queues})
        return None

    def create_job(self, spec: JobSpec, job_id: str, workflow: str | None) -> Job:
        """A new job in state `new` (the caller moves it on); resolves the queue defaults."""
        assert job_id not in self.jobs
        queue = self.queue_for(spec.queue)
        config, limits, now = queue.config, self.limits, self.clock_ms
        if spec.run_at_ms is not None:
            run_at_ms = spec.run_at_ms
        elif spec.delay_ms is not None:
            run_at_ms = now + spec.delay_ms
        else:
            run_at_ms = now
        self.seq += 1
        job = Job(job_id, spec, self.seq, now,
                  max_attempts=(spec.max_attempts or config.max_attempts
                                or limits.default_max_attempts),
                  lease_ms=spec.lease_ms or config.lease_ms or limits.default_lease_ms,
                  run_at_ms=run_at_ms, workflow=workflow)
        self.jobs[job_id] = job
        return job

    # -- handlers that fit nowhere else ------------------------------------------------------------

    def _cancel(self, cmd: Cancel, index: int) -> Result:
        job = self.jobs.get(cmd.job_id)
        if job is None:
            return Refused(NotFound(f"job {cmd.job_id!r} not found", {"job_id": cmd.job_id}))
        if job.state in TERMINAL:
            return Refused(AlreadyTerminal(f"job {job.id!r} is already {job.state}",
                                           {"job_id": job.id, "state": job.state}))
        if job.state == LEASED:
            job.closed_by = CLOSED_CANCELLED
        job.reason = cmd.reason or REASON_CANCELLED
        self.transition(job, CANCELLED)
        return Ok(job_outcome(job))

    def _configure_queue(self, cmd: ConfigureQueue, index: int) -> Result:
        if cmd.queue not in self.queues:
            refusal = self.check_room({cmd.queue: 0})
            if refusal is not None:
                return Refused(refusal)
        queue = self.queue_for(cmd.queue)
        queue.config = QueueConfig(max_in_flight=cmd.max_in_flight, lease_ms=cmd.lease_ms,
                                   max_attempts=cmd.max_attempts, paused=cmd.paused)
        return Ok({"queue": queue.doc()})

    def _bootstrap(self, cmd: Bootstrap, index: int) -> Result:
        applied = not self.bootstrapped
        if applied:
            self.limits = cmd.settings
            self.bootstrapped = True
        return Ok({"settings": self.limits.to_plain(), "applied": applied})

    def _update_settings(self, cmd: UpdateSettings, index: int) -> Result:
        try:
            self.limits = dataclasses.replace(self.limits, **dict(cmd.changes))
        except (TypeError, AssertionError):  # parse checks this; a hand-built one must not crash
            return Refused(ValidationError("settings", "unknown setting or bad value"))
        return Ok({"settings": self.limits.to_plain(), "applied": True})

    def _accept_clock_jump(self, cmd: AcceptClockJump, index: int) -> Result:
        if cmd.to_ms > self._stamp_ms:
            return Refused(ValidationError(
                "to", f"{cmd.to_ms} is after this entry's stamp {self._stamp_ms}"))
        self.clock_ms = max(self.clock_ms, cmd.to_ms)
        return Ok({"clock": self.clock_ms, "clock_skew": self.clock_skew.to_plain()})

    def _tick(self, cmd: Tick, index: int) -> Result:
        released, promoted, fired, removed, _ = self._last_due
        return Ok({"released": released, "promoted": promoted, "fired": fired,
                   "removed": removed, "clock": self.clock_ms})

    # -- queries (read-only) ---------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return None if job is None else job_doc(job)

    def list_jobs(self, queue: str | None = None, state: str | None = None, limit: int = 100,
                  after: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Jobs in creation order (`seq`), filtered; `after` is the `seq` of the last job of
        the previous page. Returns (page, cursor for the next page or None). Scans the jobs:
        the API must cap `limit` and expect O(jobs) per call."""
        assert limit >= 1
        page: list[dict[str, Any]] = []
        for job in self.jobs.values():
            if after is not None and job.seq <= after:
                continue
            if (queue is None or job.spec.queue == queue) and (state is None or job.state == state):
                if len(page) == limit:
                    return page, page[-1]["seq"]
                page.append(job_doc(job))
        return page, None

    def queue_counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(self.queues[name].counts) for name in sorted(self.queues)}

    def queue_docs(self) -> list[dict[str, Any]]:
        return [self.queues[name].doc() for name in sorted(self.queues)]

    def worker_docs(self) -> list[dict[str, Any]]:
        return [self.workers[w].doc() for w in sorted(self.workers)]

    def schedule_docs(self) -> list[dict[str, Any]]:
        return [self.schedules[n].doc(self.fire_records[n]) for n in sorted(self.schedules)]

    def next_deadline_ms(self) -> int | None:
        """Earliest time at which due work waits (lease or worker expiry, a delayed job, a cron
        fire, a retention removal): the leader proposes a Tick then. Drops stale heap tops
        first (index upkeep only: the logical state and the snapshot do not change), so the
        answer is exact. Idempotency expiry is left out: any entry performs it, and it is not
        worth a Tick of its own."""
        self._drop_stale_tops()
        tops = [heap[0][0] for heap in (self.lease_heap, self.delay_heap, self.worker_heap,
                                        self.schedule_heap) if heap]
        if self.retention_heap:
            tops.append(self.retention_heap[0][0] + self.limits.retention_ms)
        return min(tops) if tops else None

    def has_due_work(self, now_ms: int) -> bool:
        """Whether the leader, whose clock reads `now_ms`, should propose a Tick now: due work
        waits, or the state clock lags `now_ms` by more than one entry may move it."""
        deadline = self.next_deadline_ms()
        if deadline is not None and deadline <= now_ms:
            return True
        return bool(self.clock_ms) and now_ms - self.clock_ms > self.limits.max_clock_step_ms

    def _drop_stale_tops(self) -> None:
        live_job = self.live_job
        leases_ = self.lease_heap
        while leases_:
            at_ms, token, seq, job_id = leases_[0]
            job = live_job(job_id, seq)
            if job is None or job.state != LEASED or job.token != token:
                heapq.heappop(leases_)
            elif job.lease_expires_ms != at_ms:  # heartbeated: move to the real expiry
                heapq.heapreplace(leases_, (job.lease_expires_ms, token, seq, job_id))
            else:
                break
        delays = self.delay_heap
        while delays:
            run_at, seq, job_id = delays[0]
            job = live_job(job_id, seq)
            if job is not None and job.state == SCHEDULED and job.run_at_ms == run_at:
                break
            heapq.heappop(delays)
        retained = self.retention_heap
        while retained and live_job(retained[0][2], retained[0][1]) is None:
            heapq.heappop(retained)
        workers = self.worker_heap
        while workers:
            worker = self.workers.get(workers[0][1])
            if worker is None or worker.heap_ms != workers[0][0]:
                heapq.heappop(workers)
            elif worker.expires_ms != worker.heap_ms:  # refreshed: move to the real expiry
                worker.heap_ms = worker.expires_ms
                heapq.heapreplace(workers, (worker.heap_ms, worker.id))
            else:
                break
        fires = self.schedule_heap
        while fires:
            schedule = self.schedules.get(fires[0][1])
            if schedule is None or schedule.version != fires[0][2]:
                heapq.heappop(fires)
            else:
                break

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        from .snapshot import dump_state  # noqa: PLC0415 - snapshot imports this module

        return dump_state(self)

    @classmethod
    def restore(cls, data: bytes) -> SchedulerState:
        from .snapshot import load_state  # noqa: PLC0415 - snapshot imports this module

        return load_state(data)

    def state_hash(self) -> str:
        return hashlib.blake2b(self.snapshot(), digest_size=32).hexdigest()


def _key_reused(key: str) -> SchedError:
    return IdempotencyKeyReused(f"idempotency key {key!r} was first used for another command",
                                {"idempotency_key": key})


_HANDLERS: dict[type[Any], Handler] = {
    SubmitJobs: submission.submit_jobs,
    SubmitWorkflow: submission.submit_workflow,
    Lease: leases.lease,
    HeartbeatLease: leases.heartbeat,
    Complete: leases.complete,
    Fail: leases.fail,
    Cancel: SchedulerState._cancel,
    WorkerHeartbeat: leases.worker_heartbeat,
    ConfigureQueue: SchedulerState._configure_queue,
    PutSchedule: schedules.put_schedule,
    DeleteSchedule: schedules.delete_schedule,
    Backfill: schedules.backfill,
    Tick: SchedulerState._tick,
    Bootstrap: SchedulerState._bootstrap,
    UpdateSettings: SchedulerState._update_settings,
    AcceptClockJump: SchedulerState._accept_clock_jump,
}

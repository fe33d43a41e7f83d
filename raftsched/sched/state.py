"""The replicated scheduler state machine (SPEC §4): `apply(command, index, stamp_ms) -> Result`.

Theory of operation
-------------------
`apply` is a pure function of the state and the committed entry: no clock reads, no random, no
iteration over sets. Every replica applying the same entries reaches byte-identical state, which
`state_hash()` (blake2b of the canonical snapshot) lets anyone compare.

Each apply does three things, in this order:
1. Time. The state-machine clock becomes max(clock, stamp_ms), moved forward by at most
   `Limits.max_clock_step_ms` per entry (the excess is counted in `clock_skew`). `index` must
   exceed the last applied index (Raft indexes do).
2. Due work, in a bounded slice (raftsched/sched/due.py): the dependents of ended jobs, worker
   and lease expiries, promotions, cron fires, retention, idempotency expiry, at most
   `Limits.due_work_per_entry` units. What is left waits for the next entry; the leader
   proposes Ticks while `has_due_work(now)` is true. A command never acts on a dead lease:
   one whose slice has not come is released on the spot (leases.py).
3. The command, through the idempotency table when it carries a key. Handlers validate
   everything that depends on the state before they change anything, so a refusal changes
   nothing and a batch is all or none. User errors come back as `Refused(error)`, never raised.
   Dependents woken or cancelled by the command are resolved with what is left of the budget.

Every timed or ordered thing sits in a `SortedIndex` (index.py) with eager deletion: no stale
entries, so no step ever scans garbage, and the budget counts the same work on every replica.
`transition` is the one place a job changes state; it keeps the per-queue counts, every index,
the worker's lease set and the dependency resolution in step.

Settings (limits) are replicated: `Bootstrap` sets them once, `UpdateSettings` changes them
(docs/scheduler.md "Replicated settings"). Answers: docs/scheduler.md; refusals: errors.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections import deque
from typing import Any, assert_never

from . import due, idempotency, leases, operations, schedules, snapshot, submission
from .answers import ClockJumpAnswer, QueueAnswer, SettingsAnswer, TickAnswer
from .commands import (
    AcceptClockJump,
    Backfill,
    Bootstrap,
    Cancel,
    CancelWorkflow,
    Command,
    Complete,
    ConfigureQueue,
    DeleteSchedule,
    Fail,
    HeartbeatLease,
    JobSpec,
    Lease,
    PurgeDead,
    PutSchedule,
    ReportBatch,
    RequeueDead,
    SubmitJobs,
    SubmitWorkflow,
    Tick,
    UpdateSettings,
    WorkerHeartbeat,
)
from .errors import (
    IdempotencyKeyReused,
    Overloaded,
    QueueFull,
    SchedError,
    ValidationError,
)
from .idempotency import IdempotencyTable, fingerprint
from .index import SortedIndex
from .job import (
    CANCELLED,
    DEAD,
    LEASED,
    NEW,
    PENDING,
    REASON_UPSTREAM_FAILED,
    SCHEDULED,
    STATES,
    SUCCEEDED,
    TERMINAL,
    WAITING,
    Job,
    JobState,
    job_doc,
)
from .job_table import JobTable
from .limits import Limits
from .queues import Queue, QueueConfig
from .result import Ok, Refused, Result
from .schedules import FireRecord, Schedule
from .workers import Worker

TimedKey = tuple[int, int, str]  # (time ms, seq, job id)
ListingKey = tuple[int, str]  # (seq, job id)


class Budget:
    """Units of due work one entry may still do (`Limits.due_work_per_entry`)."""

    __slots__ = ("left",)

    def __init__(self, units: int) -> None:
        self.left = units


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
        return {
            "refused_entries": self.refused_entries,
            "max_excess_ms": self.max_excess_ms,
            "last_stamp_ms": self.last_stamp_ms,
        }


class SchedulerState:
    __slots__ = (
        "_last_due",
        "_stamp_ms",
        "bootstrapped",
        "cascade",
        "clock_ms",
        "clock_skew",
        "delay_index",
        "fire_records",
        "firing",
        "idempotency",
        "jobs",
        "last_index",
        "lease_expirations",
        "lease_index",
        "limits",
        "listing",
        "queues",
        "retained_bytes",
        "retention_index",
        "schedule_index",
        "schedule_version",
        "schedules",
        "seq",
        "state_counts",
        "worker_index",
        "workers",
        "workflows",
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
        self.jobs = JobTable()  # iterates in seq order
        self.queues: dict[str, Queue] = {}
        self.workers: dict[str, Worker] = {}
        self.schedules: dict[str, Schedule] = {}
        self.fire_records: dict[str, FireRecord] = {}
        self.idempotency = IdempotencyTable()
        self.workflows: dict[str, list[str]] = {}  # workflow id -> job ids, creation order
        self.state_counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.retained_bytes = 0  # approximate size of the terminal jobs kept (admission)
        # Indexes (never in the snapshot; rebuilt by restore). Keys hold ids, not Jobs.
        self.lease_index: SortedIndex[TimedKey] = SortedIndex()  # (lease expiry, seq, id)
        self.delay_index: SortedIndex[TimedKey] = SortedIndex()  # (run_at, seq, id)
        self.retention_index: SortedIndex[TimedKey] = SortedIndex()  # (ended_ms, seq, id)
        self.worker_index: SortedIndex[tuple[int, str]] = SortedIndex()  # (index_ms, id)
        self.schedule_index: SortedIndex[tuple[int, str]] = SortedIndex()  # (next fire, name)
        self.listing: dict[tuple[str, str], SortedIndex[ListingKey]] = {}  # (queue, state)
        # Replicated work in progress (in the snapshot).
        self.cascade: deque[Job] = deque()  # ended jobs whose dependents await resolution
        self.firing: deque[str] = deque()  # schedules with fires left to create
        self._last_due = due.NOTHING_DUE
        self._stamp_ms = 0
        # Leases ended by expiry (their own, their attempt's timeout or their worker's) since
        # this object was built: a metric, the same on every replica that applied the same
        # entries, but not in the snapshot (a restored state counts from 0).
        self.lease_expirations = 0

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, command: Command, index: int, stamp_ms: int) -> Result:
        assert index > self.last_index, (index, self.last_index)
        assert stamp_ms >= 0
        self.last_index = index
        self._stamp_ms = stamp_ms
        now = self._advance_clock(stamp_ms)
        budget = Budget(self.limits.due_work_per_entry)
        self._last_due = due.run_due(self, budget)
        key = command.idempotency_key
        if key is None:
            result = self._dispatch(command, index)
        else:
            result = self._apply_keyed(command, key, index, now)
        if self.cascade:
            self.resolve_dependents(budget)
        return result

    def _apply_keyed(self, command: Command, key: str, index: int, now: int) -> Result:
        table = self.idempotency
        fp = fingerprint(command)
        hit = table.get(key)
        if hit is not None:
            if hit[0] == fp:
                return idempotency.expand(self, hit[1])
            return Refused(
                IdempotencyKeyReused(
                    f"idempotency key {key!r} was first used for another command",
                    {"idempotency_key": key},
                )
            )
        limit = self.limits.idempotency_max_entries
        if len(table) >= limit:
            # A guarantee, not best effort: never forget a live key to make room.
            return Refused(
                Overloaded(
                    f"the idempotency table holds {limit} live keys; retry later",
                    {"what": "idempotency_keys", "limit": limit},
                )
            )
        result = self._dispatch(command, index)
        if idempotency.storable(result):
            table.put(key, fp, idempotency.compact(command, result), now)
        return result

    def _dispatch(self, cmd: Command, index: int) -> Result:
        match cmd:
            case SubmitJobs():
                return submission.submit_jobs(self, cmd, index)
            case SubmitWorkflow():
                return submission.submit_workflow(self, cmd, index)
            case Lease():
                return leases.lease(self, cmd, index)
            case HeartbeatLease():
                return leases.heartbeat(self, cmd, index)
            case Complete():
                return leases.complete(self, cmd, index)
            case Fail():
                return leases.fail(self, cmd, index)
            case ReportBatch():
                return leases.report_batch(self, cmd, index)
            case Cancel():
                return operations.cancel(self, cmd)
            case WorkerHeartbeat():
                return leases.worker_heartbeat(self, cmd, index)
            case ConfigureQueue():
                return self._configure_queue(cmd)
            case PutSchedule():
                return schedules.put_schedule(self, cmd, index)
            case DeleteSchedule():
                return schedules.delete_schedule(self, cmd, index)
            case Backfill():
                return schedules.backfill(self, cmd, index)
            case Tick():
                return self._tick()
            case Bootstrap():
                return self._bootstrap(cmd)
            case UpdateSettings():
                return self._update_settings(cmd)
            case AcceptClockJump():
                return self._accept_clock_jump(cmd)
            case RequeueDead():
                return operations.requeue_dead(self, cmd)
            case PurgeDead():
                return operations.purge_dead(self, cmd)
            case CancelWorkflow():
                return operations.cancel_workflow(self, cmd)
            case _:
                assert_never(cmd)

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

    # -- the one place a job changes state --------------------------------------------------------

    def transition(self, job: Job, new_state: JobState) -> None:
        old_state = job.state
        queue = self.queues[job.spec.queue]
        seq, job_id = job.seq, job.id
        if old_state == PENDING:
            queue.pending.remove(Queue.pending_key(job))
        elif old_state == SCHEDULED:
            self.delay_index.remove((job.run_at_ms, seq, job_id))
        elif old_state == LEASED:
            self.lease_index.remove((job.lease_expires_ms, seq, job_id))
            worker = self.workers.get(job.worker_id or "")
            if worker is not None:
                worker.leased.pop(job_id, None)
        elif old_state in TERMINAL:  # a dead job requeued
            self.retention_index.remove((job.ended_ms, seq, job_id))
            self.retained_bytes -= job.size_estimate()
        if old_state != NEW:
            self.listing[(queue.name, old_state)].remove((seq, job_id))
            self.state_counts[old_state] -= 1
        job.move(new_state, self.clock_ms, self.limits.event_history)
        queue.count_move(None if old_state == NEW else old_state, new_state)
        self.state_counts[new_state] += 1
        listing = self.listing.get((queue.name, new_state))
        if listing is None:
            listing = self.listing[(queue.name, new_state)] = SortedIndex()
        listing.add((seq, job_id))
        if new_state == PENDING:
            queue.pending.add(Queue.pending_key(job))
        elif new_state == SCHEDULED:
            self.delay_index.add((job.run_at_ms, seq, job_id))
        elif new_state == LEASED:
            self.lease_index.add((job.lease_expires_ms, seq, job_id))
        elif new_state in TERMINAL:
            self.retention_index.add((job.ended_ms, seq, job_id))
            self.retained_bytes += job.size_estimate()
            if job.dependents:
                self.cascade.append(job)

    def forget(self, job: Job) -> None:
        """A terminal job leaves the state (retention, purge); its index keys are gone."""
        assert job.state in TERMINAL
        queue = self.queues[job.spec.queue]
        queue.count_remove(job.state)
        self.state_counts[job.state] -= 1
        self.retained_bytes -= job.size_estimate()
        self.listing[(queue.name, job.state)].remove((job.seq, job.id))
        job.dependents = None

    def resolve_dependents(self, budget: Budget) -> int:
        """Wake or cancel the waiting dependents of ended jobs, one unit per dependent, in
        the order the jobs ended. A worklist, not recursion: a cancellation cascades down
        chains of any length, across entries if need be. Dependents no longer waiting are
        skipped without a unit: the snapshot keeps only waiting ones, and a restored replica
        must count the same units."""
        cascade, resolved = self.cascade, 0
        while cascade and budget.left > 0:
            job = cascade[0]
            dependents = job.dependents
            while dependents and budget.left > 0:
                dep = dependents.pop()
                if dep.state != WAITING:
                    continue
                budget.left -= 1
                resolved += 1
                if job.state == SUCCEEDED:
                    dep.pending_deps -= 1
                    assert dep.pending_deps >= 0
                    if dep.pending_deps == 0:
                        self.transition(dep, self.ready_state(dep))
                else:
                    dep.reason = REASON_UPSTREAM_FAILED
                    self.transition(dep, CANCELLED)  # appends to the cascade
            if not dependents:
                job.dependents = None
                cascade.popleft()
        return resolved

    def ready_state(self, job: Job) -> JobState:
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
        new_queues, total = 0, 0
        for name, count in new_per_queue.items():
            queue = self.queues.get(name)
            unfinished = 0 if queue is None else queue.unfinished
            new_queues += queue is None
            total += count
            if unfinished + count > limits.max_jobs_per_queue:
                return QueueFull(
                    f"queue {name!r} holds {unfinished} unfinished jobs; adding {count} would "
                    f"pass the limit of {limits.max_jobs_per_queue}",
                    {"queue": name, "limit": limits.max_jobs_per_queue},
                )
        if new_queues and len(self.queues) + new_queues > limits.max_queues:
            return QueueFull(f"at most {limits.max_queues} queues", {"limit": limits.max_queues})
        return self.check_admission(total)

    def check_admission(self, new_jobs: int) -> SchedError | None:
        """Cluster-wide caps (SPEC §4 admission control): live jobs, retained terminal jobs
        (count and bytes), so memory and snapshots stay bounded."""
        limits, counts = self.limits, self.state_counts
        retained = counts[SUCCEEDED] + counts[DEAD] + counts[CANCELLED]
        live = len(self.jobs) - retained
        if new_jobs and live + new_jobs > limits.max_live_jobs:
            return Overloaded(
                f"the cluster holds {live} unfinished jobs (limit {limits.max_live_jobs})",
                {"what": "live_jobs", "limit": limits.max_live_jobs},
            )
        if new_jobs and retained >= limits.max_retained_jobs:
            return Overloaded(
                f"the cluster keeps {retained} finished jobs (limit "
                f"{limits.max_retained_jobs}); lower retention or purge",
                {"what": "retained_jobs", "limit": limits.max_retained_jobs},
            )
        if new_jobs and self.retained_bytes >= limits.max_retained_bytes:
            return Overloaded(
                f"finished jobs hold about {self.retained_bytes} bytes (limit "
                f"{limits.max_retained_bytes}); lower retention or purge",
                {"what": "retained_bytes", "limit": limits.max_retained_bytes},
            )
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
        job = Job(
            job_id,
            spec,
            self.seq,
            now,
            max_attempts=(spec.max_attempts or config.max_attempts or limits.default_max_attempts),
            lease_ms=spec.lease_ms or config.lease_ms or limits.default_lease_ms,
            run_at_ms=run_at_ms,
            workflow=workflow,
        )
        self.jobs[job_id] = job
        if workflow is not None:
            self.workflows.setdefault(workflow, []).append(job_id)
        return job

    # -- handlers that fit nowhere else ------------------------------------------------------------

    def _configure_queue(self, cmd: ConfigureQueue) -> Ok[QueueAnswer] | Refused:
        if cmd.queue not in self.queues:
            refusal = self.check_room({cmd.queue: 0})
            if refusal is not None:
                return Refused(refusal)
        queue = self.queue_for(cmd.queue)
        if cmd.fields_set is None:  # every field given: replace
            queue.config = QueueConfig(
                max_in_flight=cmd.max_in_flight,
                lease_ms=cmd.lease_ms,
                max_attempts=cmd.max_attempts,
                paused=cmd.paused,
            )
        else:  # a partial update: only the fields the request named
            queue.config = dataclasses.replace(
                queue.config, **{name: getattr(cmd, name) for name in cmd.fields_set}
            )
        return Ok({"queue": queue.doc()})

    def _bootstrap(self, cmd: Bootstrap) -> Ok[SettingsAnswer]:
        applied = not self.bootstrapped
        if applied:
            self.limits = cmd.settings
            self.bootstrapped = True
        return Ok({"settings": self.limits.to_plain(), "applied": applied})

    def _update_settings(self, cmd: UpdateSettings) -> Ok[SettingsAnswer] | Refused:
        try:
            self.limits = dataclasses.replace(self.limits, **dict(cmd.changes))
        except (TypeError, AssertionError):  # parse checks this; a hand-built one must not crash
            return Refused(ValidationError("settings", "unknown setting or bad value"))
        return Ok({"settings": self.limits.to_plain(), "applied": True})

    def _accept_clock_jump(self, cmd: AcceptClockJump) -> Ok[ClockJumpAnswer] | Refused:
        if cmd.to_ms > self._stamp_ms:
            return Refused(
                ValidationError("to", f"{cmd.to_ms} is after this entry's stamp {self._stamp_ms}")
            )
        self.clock_ms = max(self.clock_ms, cmd.to_ms)
        return Ok({"clock": self.clock_ms, "clock_skew": self.clock_skew.to_plain()})

    def _tick(self) -> Ok[TickAnswer]:
        d = self._last_due
        return Ok[TickAnswer](
            {
                "released": d.released,
                "promoted": d.promoted,
                "fired": d.fired,
                "removed": d.removed,
                "resolved": d.resolved,
                "clock": self.clock_ms,
                "more": self.next_deadline_ms() == self.clock_ms,
            }
        )

    # -- queries (read-only) ---------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return None if job is None else job_doc(job)

    def list_jobs(
        self,
        queue: str | None = None,
        state: str | None = None,
        limit: int = 100,
        after: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Jobs in creation order (`seq`), filtered; `after` is the `seq` of the last job of
        the previous page. Returns (page, cursor for the next page or None). Costs
        O(page + log n) per (queue, state) pair merged, from the (queue, state) index."""
        assert limit >= 1
        start: ListingKey | None = None if after is None else (after, "\U0010ffff")
        sources = [
            index.after(start)
            for (q, s), index in sorted(self.listing.items())
            if (queue is None or q == queue) and (state is None or s == state)
        ]
        page: list[dict[str, Any]] = []
        for _, job_id in heapq.merge(*sources):
            if len(page) == limit:
                return page, page[-1]["seq"]
            page.append(job_doc(self.jobs[job_id]))
        return page, None

    def queue_counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(self.queues[name].counts) for name in sorted(self.queues)}

    def queue_docs(self) -> list[dict[str, Any]]:
        return [self.queues[name].doc() for name in sorted(self.queues)]

    def worker_docs(self) -> list[dict[str, Any]]:
        return [self.workers[w].doc() for w in sorted(self.workers)]

    def schedule_docs(self) -> list[dict[str, Any]]:
        return [self.schedules[n].doc(self.fire_records[n]) for n in sorted(self.schedules)]

    def workflow_status(self, workflow_id: str) -> dict[str, Any] | None:
        return operations.workflow_status(self, workflow_id)

    def next_deadline_ms(self) -> int | None:
        """Earliest time at which due work waits (lease or worker expiry, a delayed job, a cron
        fire, a retention removal; the clock itself while a slice is unfinished): the leader
        proposes a Tick then. Idempotency expiry is left out: any entry performs it."""
        return due.work_waits(self)

    def has_due_work(self, now_ms: int) -> bool:
        """Whether the leader, whose clock reads `now_ms`, should propose a Tick now: due work
        waits, or the state clock lags `now_ms` by more than one entry may move it."""
        deadline = due.work_waits(self)
        if deadline is not None and deadline <= max(now_ms, self.clock_ms):
            return True
        created_ms = self.idempotency.oldest_created_ms()
        if created_ms is not None and created_ms + self.limits.idempotency_ttl_ms <= self.clock_ms:
            return True
        return bool(self.clock_ms) and now_ms - self.clock_ms > self.limits.max_clock_step_ms

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return snapshot.dump_state(self)

    @classmethod
    def restore(cls, data: bytes) -> SchedulerState:
        return snapshot.load_state(data, cls)

    def state_hash(self) -> str:
        return hashlib.blake2b(self.snapshot(), digest_size=32).hexdigest()

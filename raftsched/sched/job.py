"""The job record and its lifecycle (SPEC §4).

```
           submit                      deps done / run_at reached
  (new) ───────────► waiting|scheduled ───────────────────────────► pending
                                                                       │ lease (token = log index)
                           fail(retryable) or lease expired,           ▼
  scheduled ◄──────────────── attempts < max_attempts ─────────── leased
                                                                       │ complete(token)
  dead ◄── fail or expiry with attempts exhausted / fail(retryable=false)
  cancelled ◄── cancel (any non-terminal state)                        ▼
                                                                   succeeded
```
`TRANSITIONS` is that diagram as a table; `Job.move` asserts every change against it, stamps
`updated_ms` and appends to the bounded event history of (time_ms, state, token) triples, kept
flat in one tuple: a tuple of ints and interned strings is one object that the garbage collector
stops tracking, where a list of tuples would be 1 + n tracked objects per job. A job created
with an unfinished dependency starts `waiting`; with a future run time `scheduled`; a job whose
dependency already ended dead or cancelled starts `cancelled` (reason `upstream_failed`). A
retry whose backoff is already over goes straight back to `pending`.

`Job` is a `__slots__` record: a million of them must fit in well under a GiB. The submitted
`JobSpec` is kept by reference (it is immutable) and is what "same spec" compares.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from .answers import JobOutcome, LeaseGrant
from .commands import JobSpec

JobState = Literal["waiting", "scheduled", "pending", "leased", "succeeded", "dead", "cancelled"]
"""A job's state (SPEC §4); `NEW` is only the pseudo-state before creation."""

WAITING: Final = "waiting"
SCHEDULED: Final = "scheduled"
PENDING: Final = "pending"
LEASED: Final = "leased"
SUCCEEDED: Final = "succeeded"
DEAD: Final = "dead"
CANCELLED: Final = "cancelled"

STATES: tuple[JobState, ...] = (WAITING, SCHEDULED, PENDING, LEASED, SUCCEEDED, DEAD, CANCELLED)
TERMINAL: frozenset[JobState] = frozenset({SUCCEEDED, DEAD, CANCELLED})
NEW: Final = "new"  # pseudo-state: before creation
assert set(STATES) == set(get_args(JobState))

TRANSITIONS = frozenset(
    {
        (NEW, WAITING),
        (NEW, SCHEDULED),
        (NEW, PENDING),
        (NEW, CANCELLED),
        (WAITING, SCHEDULED),
        (WAITING, PENDING),
        (WAITING, CANCELLED),
        (SCHEDULED, PENDING),
        (SCHEDULED, CANCELLED),
        (PENDING, LEASED),
        (PENDING, CANCELLED),
        (LEASED, SUCCEEDED),
        (LEASED, SCHEDULED),
        (LEASED, PENDING),
        (LEASED, DEAD),
        (LEASED, CANCELLED),
        (DEAD, PENDING),  # dead-letter requeue
    }
)

# How the job's last lease ended; decides the refusal of a late heartbeat/complete/fail.
CLOSED_COMPLETED = "completed"
CLOSED_FAILED = "failed"
CLOSED_EXPIRED = "expired"
CLOSED_WORKER_EXPIRED = "worker_expired"
CLOSED_CANCELLED = "cancelled"

REASON_UPSTREAM_FAILED = "upstream_failed"
REASON_CANCELLED = "cancelled"
REASON_FAILED = "failed"
REASON_ATTEMPTS_EXHAUSTED = "attempts_exhausted"
REASON_WORKFLOW_CANCELLED = "workflow_cancelled"

_RECORD_BYTES = 400  # the record, its spec and index keys, roughly


def approx_json_bytes(value: Any) -> int:
    """A cheap, deterministic estimate of a JSON value's size, for the retained-bytes cap."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        return 2 + sum(len(k) + 3 + approx_json_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return 2 + sum(1 + approx_json_bytes(v) for v in value)
    return 8


class Job:
    __slots__ = (
        "attempt_deadline_ms",
        "attempts",
        "closed_by",
        "created_ms",
        "dependents",
        "ended_ms",
        "error",
        "events",
        "id",
        "lease_expires_ms",
        "lease_ms",
        "max_attempts",
        "pending_deps",
        "reason",
        "result",
        "run_at_ms",
        "seq",
        "spec",
        "state",
        "token",
        "updated_ms",
        "worker_id",
        "workflow",
    )

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        seq: int,
        now_ms: int,
        *,
        max_attempts: int,
        lease_ms: int,
        run_at_ms: int,
        workflow: str | None,
    ) -> None:
        self.id = job_id
        self.spec = spec
        self.seq = seq
        # Always a JobState (or NEW) since `move` takes only a JobState; read as str so that
        # callers comparing it twice in a row are not told by mypy their second test is
        # unreachable (Literal narrowing of an attribute that changes between the tests).
        self.state: str = NEW
        self.reason: str | None = None
        self.workflow = workflow
        self.max_attempts = max_attempts
        self.lease_ms = lease_ms
        self.run_at_ms = run_at_ms
        self.attempts = 0
        self.token = 0  # 0: never leased; otherwise the log index of the last Lease entry
        self.lease_expires_ms = 0
        self.attempt_deadline_ms = 0  # lease start + timeout_ms of this attempt; 0: none
        self.worker_id: str | None = None
        self.closed_by: str | None = None
        self.result: Any = None
        self.error: Any = None
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.ended_ms = 0
        self.pending_deps = 0
        self.dependents: list[Job] | None = None  # waiting jobs to resolve when this one ends
        self.events: tuple[Any, ...] = ()  # flat (time_ms, state, token) triples

    def size_estimate(self) -> int:
        """Bytes this job holds, roughly (the same on every replica: a function of its data)."""
        return (
            _RECORD_BYTES
            + approx_json_bytes(self.spec.payload)
            + approx_json_bytes(self.result)
            + approx_json_bytes(self.error)
        )

    @property
    def queue(self) -> str:
        return self.spec.queue

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def move(self, new_state: JobState, now_ms: int, history: int) -> None:
        """Change state along an edge of the lifecycle diagram and record the event."""
        assert (self.state, new_state) in TRANSITIONS, (self.id, self.state, new_state)
        self.state = new_state
        self.updated_ms = now_ms
        events = (*self.events, now_ms, new_state, self.token)
        self.events = events[3:] if len(events) > 3 * history else events
        if new_state in TERMINAL:
            self.ended_ms = now_ms


def job_outcome(job: Job) -> JobOutcome:
    """The small answer of a command that changed a job; the API renders the full document
    with `SchedulerState.get_job` when it needs one. Small on purpose: it is built on the apply
    path and stored in the idempotency table."""
    return {
        "id": job.id,
        "state": job.state,
        "token": job.token,
        "attempts": job.attempts,
        "run_at": job.run_at_ms,
    }


def lease_grant(job: Job) -> LeaseGrant:
    """What a worker needs to run a leased job."""
    spec = job.spec
    return {
        "job_id": job.id,
        "queue": spec.queue,
        "payload": spec.payload,
        "token": job.token,
        "lease_expires_at": job.lease_expires_ms,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        "timeout_ms": spec.timeout_ms,
        "tags": list(spec.tags),
    }


def job_doc(job: Job) -> dict[str, Any]:
    """The API's job document (SPEC §4 fields; times in ms since the epoch)."""
    spec = job.spec
    b = spec.backoff
    ev = job.events
    return {
        "id": job.id,
        "seq": job.seq,
        "queue": spec.queue,
        "state": job.state,
        "reason": job.reason,
        "workflow": job.workflow,
        "payload": spec.payload,
        "priority": spec.priority,
        "run_at": job.run_at_ms,
        "max_attempts": job.max_attempts,
        "backoff": {"initial_ms": b.initial_ms, "multiplier": b.multiplier, "max_ms": b.max_ms},
        "lease_ms": job.lease_ms,
        "timeout_ms": spec.timeout_ms,
        "depends_on": list(spec.depends_on),
        "tags": list(spec.tags),
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "token": job.token,
        "lease_expires_at": job.lease_expires_ms if job.state == LEASED else None,
        "worker_id": job.worker_id,
        "created_at": job.created_ms,
        "updated_at": job.updated_ms,
        "ended_at": job.ended_ms or None,
        "events": [
            {"at": ev[i], "state": ev[i + 1], "token": ev[i + 2]} for i in range(0, len(ev), 3)
        ],
    }

"""The commands of the scheduler state machine: one frozen slotted dataclass each.

A command is what a committed Raft entry carries (with the leader's stamp, which the runtime keeps
in its entry envelope). Commands are validated once, when parsed from the API's JSON
(raftsched/sched/parse.py) or decoded from the wire (raftsched/wire/sched_codec.py, which
uses the same parse functions); `apply` then checks only the rules that depend on the state.

`to_plain(cmd)` gives the command's JSON-like form in the API's field names (SPEC §5); it is the
inverse of `parse_command(kind, plain)`. The wire codec and the idempotency fingerprint are both
built on it, so there is one description of each command's fields.

Times are integer milliseconds since the Unix epoch (`run_at`, `from`, `to`); durations end in
`_ms`. Every command may carry an `idempotency_key` (SPEC §5 `Idempotency-Key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from .limits import Limits

# A JSON value (dict with str keys, list, str, int, float, bool, None); checked by parse.py.
JsonValue = Any

MISFIRE_POLICIES = ("skip", "fire_once", "fire_all")
OVERLAP_POLICIES = ("allow", "skip_if_running")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delay: min(max_ms, initial_ms * multiplier ** (attempt - 1)), minus a jitter of up
    to a quarter derived from (job id, attempt) (raftsched/sched/backoff.py)."""

    initial_ms: int = 1_000
    multiplier: float = 2.0
    max_ms: int = 300_000


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as submitted. `id` None: the state machine generates `auto-<index>-<position>`.
    None for max_attempts / lease_ms means the queue's default at submit time."""

    id: str | None
    queue: str
    payload: JsonValue = None
    priority: int = 0
    run_at_ms: int | None = None
    delay_ms: int | None = None
    max_attempts: int | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    lease_ms: int | None = None
    timeout_ms: int | None = None
    depends_on: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """What a cron schedule fires: a JobSpec without id, run time and dependencies."""

    queue: str
    payload: JsonValue = None
    priority: int = 0
    max_attempts: int | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    lease_ms: int | None = None
    timeout_ms: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubmitJobs:
    """Submit one or many jobs, atomically (all or none). Jobs may depend on each other."""

    jobs: tuple[JobSpec, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitWorkflow:
    """Submit a DAG of jobs atomically; every job has an explicit id; a cycle is refused."""

    workflow_id: str
    jobs: tuple[JobSpec, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """Lease up to `max_jobs` pending jobs of `queue` for `worker_id`. `wait_ms` is for the
    server's long poll only; it does not change what apply does."""

    queue: str
    worker_id: str
    max_jobs: int = 1
    wait_ms: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatLease:
    """Extend a lease to clock + extend_ms (default: the job's lease_ms)."""

    job_id: str
    token: int
    extend_ms: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    job_id: str
    token: int
    result: JsonValue = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    job_id: str
    token: int
    error: JsonValue = None
    retryable: bool = True
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ReportBatch:
    """Many completes and fails in one entry (POST /v1/jobs:complete). Each report is applied
    on its own, in order, exactly as the single command would be: a refused report (a stale
    token, say) changes nothing and does not stop the others. Items carry no idempotency key
    (their tokens make them idempotent); the batch itself may."""

    reports: tuple[Complete | Fail, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: str
    reason: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """Register a worker or refresh it: it stays registered until clock >= last_seen + ttl_ms."""

    worker_id: str
    capacity: int
    queues: tuple[str, ...] = ()
    ttl_ms: int | None = None
    idempotency_key: str | None = None
    incarnation: str | None = None
    """The worker process's own id for this run (e.g. host:pid:start); a different one than
    registered means the worker restarted: its old leases are released at once."""


@dataclass(frozen=True, slots=True)
class ConfigureQueue:
    """Replace a queue's configuration (PUT semantics). max_in_flight None: unlimited;
    lease_ms / max_attempts None: the cluster defaults (Limits)."""

    queue: str
    max_in_flight: int | None = None
    lease_ms: int | None = None
    max_attempts: int | None = None
    paused: bool = False
    idempotency_key: str | None = None
    fields_set: tuple[str, ...] | None = None
    """The config fields the request named (a partial update keeps the others); None: all of
    them (replace the whole config, the original PUT semantics)."""


@dataclass(frozen=True, slots=True)
class PutSchedule:
    """Create or replace a cron schedule. Replacing keeps its fire watermark."""

    name: str
    cron: str
    template: JobTemplate
    timezone: str = "UTC"
    misfire: str = "fire_once"
    misfire_cap: int = 100
    misfire_grace_ms: int | None = None
    paused: bool = False
    idempotency_key: str | None = None
    overlap: str = "allow"
    """`skip_if_running`: a fire whose previous fire's job is not terminal makes no job."""


@dataclass(frozen=True, slots=True)
class DeleteSchedule:
    name: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Backfill:
    """Create the fires of `name` with from_ms < fire time <= to_ms that never made a job."""

    name: str
    from_ms: int
    to_ms: int
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Proposed by the leader when something falls due and the cluster is idle. Every entry
    does the due work (raftsched/sched/state.py); a Tick only carries the stamp."""

    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RequeueDead:
    """Dead-letter requeue: move the named dead jobs back to pending with a new attempt budget
    (attempts restart from 0; `max_attempts` None keeps each job's own)."""

    job_ids: tuple[str, ...]
    max_attempts: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PurgeDead:
    """Dead-letter purge: remove the named dead jobs now instead of at retention."""

    job_ids: tuple[str, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    """Cancel every unfinished job of a workflow (reason `workflow_cancelled`)."""

    workflow_id: str
    reason: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """The replicated settings of a new cluster (issue 7 defect 4): the runtime proposes it as
    the first entry once it leads, with its configured values. Only the first Bootstrap
    applied sets them; a later one (a new leader that did not see the first commit) changes
    nothing and answers the settings in force. `UpdateSettings` changes them afterwards."""

    settings: Limits
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateSettings:
    """Admin only: change some replicated settings (a partial update, name -> value)."""

    changes: tuple[tuple[str, int], ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AcceptClockJump:
    """Admin only: move the state-machine clock forward to `to_ms` at once, past the per-entry
    bound `Limits.max_clock_step_ms` (after an outage longer than the bound, say)."""

    to_ms: int
    idempotency_key: str | None = None


Command = (
    SubmitJobs
    | SubmitWorkflow
    | Lease
    | HeartbeatLease
    | Complete
    | Fail
    | ReportBatch
    | Cancel
    | WorkerHeartbeat
    | ConfigureQueue
    | PutSchedule
    | DeleteSchedule
    | Backfill
    | Tick
    | Bootstrap
    | UpdateSettings
    | AcceptClockJump
    | RequeueDead
    | PurgeDead
    | CancelWorkflow
)

# Stable kind names: the wire codec writes them, so never rename one.
KIND_BY_TYPE: dict[type[Any], str] = {
    SubmitJobs: "submit_jobs",
    SubmitWorkflow: "submit_workflow",
    Lease: "lease",
    HeartbeatLease: "heartbeat_lease",
    Complete: "complete",
    Fail: "fail",
    ReportBatch: "report_batch",
    Cancel: "cancel",
    WorkerHeartbeat: "worker_heartbeat",
    ConfigureQueue: "configure_queue",
    PutSchedule: "put_schedule",
    DeleteSchedule: "delete_schedule",
    Backfill: "backfill",
    Tick: "tick",
    Bootstrap: "bootstrap",
    UpdateSettings: "update_settings",
    AcceptClockJump: "accept_clock_jump",
    RequeueDead: "requeue_dead",
    PurgeDead: "purge_dead",
    CancelWorkflow: "cancel_workflow",
}


def command_kind(cmd: Command) -> str:
    return KIND_BY_TYPE[type(cmd)]


def _backoff_plain(b: Backoff) -> dict[str, Any]:
    return {"initial_ms": b.initial_ms, "multiplier": b.multiplier, "max_ms": b.max_ms}


def _opt(out: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


def job_spec_plain(spec: JobSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"queue": spec.queue, "payload": spec.payload, "priority": spec.priority}
    _opt(out, "id", spec.id)
    _opt(out, "run_at", spec.run_at_ms)
    _opt(out, "delay_ms", spec.delay_ms)
    _opt(out, "max_attempts", spec.max_attempts)
    out["backoff"] = _backoff_plain(spec.backoff)
    _opt(out, "lease_ms", spec.lease_ms)
    _opt(out, "timeout_ms", spec.timeout_ms)
    out["depends_on"] = list(spec.depends_on)
    out["tags"] = list(spec.tags)
    return out


def template_plain(t: JobTemplate) -> dict[str, Any]:
    out: dict[str, Any] = {"queue": t.queue, "payload": t.payload, "priority": t.priority}
    _opt(out, "max_attempts", t.max_attempts)
    out["backoff"] = _backoff_plain(t.backoff)
    _opt(out, "lease_ms", t.lease_ms)
    _opt(out, "timeout_ms", t.timeout_ms)
    out["tags"] = list(t.tags)
    return out


def report_plain(item: Complete | Fail) -> dict[str, Any]:
    """One item of a ReportBatch: a fail is the item with `error` and `retryable`."""
    if isinstance(item, Complete):
        return {"job_id": item.job_id, "token": item.token, "result": item.result}
    return {
        "job_id": item.job_id,
        "token": item.token,
        "error": item.error,
        "retryable": item.retryable,
    }


def to_plain(cmd: Command) -> dict[str, Any]:
    """The command in API field names; `parse_command(command_kind(cmd), to_plain(cmd))`
    gives back an equal command."""
    out: dict[str, Any]
    match cmd:
        case SubmitJobs(jobs=jobs):
            out = {"jobs": [job_spec_plain(j) for j in jobs]}
        case SubmitWorkflow(workflow_id=wid, jobs=jobs):
            out = {"id": wid, "jobs": [job_spec_plain(j) for j in jobs]}
        case Lease():
            out = {
                "queue": cmd.queue,
                "worker_id": cmd.worker_id,
                "max_jobs": cmd.max_jobs,
                "wait_ms": cmd.wait_ms,
            }
        case HeartbeatLease():
            out = {"job_id": cmd.job_id, "token": cmd.token}
            _opt(out, "extend_ms", cmd.extend_ms)
        case Complete():
            out = {"job_id": cmd.job_id, "token": cmd.token, "result": cmd.result}
        case Fail():
            out = {
                "job_id": cmd.job_id,
                "token": cmd.token,
                "error": cmd.error,
                "retryable": cmd.retryable,
            }
        case ReportBatch():
            out = {"reports": [report_plain(r) for r in cmd.reports]}
        case Cancel():
            out = {"job_id": cmd.job_id}
            _opt(out, "reason", cmd.reason)
        case WorkerHeartbeat():
            out = {"worker_id": cmd.worker_id, "capacity": cmd.capacity, "queues": list(cmd.queues)}
            _opt(out, "ttl_ms", cmd.ttl_ms)
            _opt(out, "incarnation", cmd.incarnation)
        case ConfigureQueue() if cmd.fields_set is not None:
            out = {"queue": cmd.queue}
            out.update((name, getattr(cmd, name)) for name in cmd.fields_set)
        case ConfigureQueue():
            out = {
                "queue": cmd.queue,
                "max_in_flight": cmd.max_in_flight,
                "paused": cmd.paused,
                "lease_ms": cmd.lease_ms,
                "max_attempts": cmd.max_attempts,
            }
        case PutSchedule():
            out = {
                "name": cmd.name,
                "cron": cmd.cron,
                "timezone": cmd.timezone,
                "template": template_plain(cmd.template),
                "misfire": cmd.misfire,
                "misfire_cap": cmd.misfire_cap,
                "paused": cmd.paused,
            }
            _opt(out, "misfire_grace_ms", cmd.misfire_grace_ms)
            if cmd.overlap != "allow":  # absent means allow: older entries stay as they were
                out["overlap"] = cmd.overlap
        case DeleteSchedule():
            out = {"name": cmd.name}
        case Backfill():
            out = {"name": cmd.name, "from": cmd.from_ms, "to": cmd.to_ms}
        case Tick():
            out = {}
        case Bootstrap():
            out = {"settings": cmd.settings.to_plain()}
        case UpdateSettings():
            out = {"settings": dict(cmd.changes)}
        case AcceptClockJump():
            out = {"to": cmd.to_ms}
        case RequeueDead():
            out = {"job_ids": list(cmd.job_ids)}
            _opt(out, "max_attempts", cmd.max_attempts)
        case PurgeDead():
            out = {"job_ids": list(cmd.job_ids)}
        case CancelWorkflow():
            out = {"id": cmd.workflow_id}
            _opt(out, "reason", cmd.reason)
        case _:
            assert_never(cmd)
    _opt(out, "idempotency_key", cmd.idempotency_key)
    return out

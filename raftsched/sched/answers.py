"""The shapes of `Ok.value`, one TypedDict per answer (docs/scheduler.md "Answers").

Plain dicts at run time (the API renders them as JSON, the idempotency table and the snapshot
store them as they are); typed for mypy, so a handler cannot drift from its documented shape.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class JobAnswer(TypedDict):
    id: str
    state: str
    seq: int
    created: bool


class SubmitAnswer(TypedDict):
    jobs: list[JobAnswer]
    workflow: NotRequired[str]  # SubmitWorkflow only


class LeaseGrant(TypedDict):
    job_id: str
    queue: str | None
    payload: Any
    token: int
    lease_expires_at: int
    attempt: int
    max_attempts: int
    timeout_ms: int | None
    tags: list[str]


class LeaseAnswer(TypedDict):
    leases: list[LeaseGrant]


class HeartbeatAnswer(TypedDict):
    job_id: str
    token: int
    lease_expires_at: int


class JobOutcome(TypedDict):
    """Complete, Fail, Cancel."""

    id: str
    state: str
    token: int
    attempts: int
    run_at: int


class ReportOk(TypedDict):
    job_id: str
    ok: bool  # always True
    state: str


class ReportRefused(TypedDict):
    job_id: str
    error: dict[str, Any]  # {code, message, details}, as the API renders a refusal


class ReportBatchAnswer(TypedDict):
    """One result per report, in the request's order."""

    results: list[ReportOk | ReportRefused]


class WorkerAnswer(TypedDict):
    worker: dict[str, Any]


class QueueAnswer(TypedDict):
    queue: dict[str, Any]


class ScheduleAnswer(TypedDict):
    schedule: dict[str, Any]
    created: bool


class DeletedAnswer(TypedDict):
    deleted: str


class BackfillAnswer(TypedDict):
    created: list[str]
    skipped: list[str]


class TickAnswer(TypedDict):
    released: int
    promoted: int
    fired: int
    removed: int
    resolved: int
    clock: int
    more: bool


class SettingsAnswer(TypedDict):
    settings: dict[str, int]
    applied: bool


class ClockJumpAnswer(TypedDict):
    clock: int
    clock_skew: dict[str, int]


class RequeueAnswer(TypedDict):
    jobs: list[JobOutcome]


class PurgeAnswer(TypedDict):
    purged: list[str]


class CancelWorkflowAnswer(TypedDict):
    workflow: str
    cancelled: list[str]

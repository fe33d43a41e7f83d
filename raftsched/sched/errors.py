"""Every refusal the scheduler state machine can give, one named type each.

Who is at fault: all of these are the *user's* doing (bad input, a stale token, a full queue).
The state machine never raises them out of `apply`; it returns `Refused(error)` so that every
replica records the same refusal and nothing changes. The parse functions (raftsched/sched/parse.py)
do raise them, before a command is ever proposed. Broken invariants are `AssertionError`s.

Each type has a stable `code` (the API's `error.code`) and the HTTP status the API maps it to.
`details` holds plain data only (str/int/list/dict), so a refusal can be stored in the
idempotency table, snapshotted and rebuilt with `error_from_wire`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class SchedError(Exception):
    """Base of every refusal. `code` and `http_status` are fixed per type."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details) if details else {}

    def to_wire(self) -> tuple[str, str, dict[str, Any]]:
        return (self.code, self.message, self.details)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SchedError)
            and type(other) is type(self)
            and other.to_wire() == self.to_wire()
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.details!r})"


# -- input errors (raised by the parse functions; 400 / 413) -----------------------------------


class ValidationError(SchedError):
    """The input is malformed: wrong type, missing or unknown field, value out of range.
    `field` names the offending field with a path (e.g. `jobs[2].backoff.max_ms`)."""

    code = "invalid"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", {"field": field})

    @property
    def field(self) -> str:
        return str(self.details.get("field", ""))


class PayloadTooLarge(ValidationError):
    """A payload/result/error value is larger than `Limits.max_payload_bytes` (canonical JSON)."""

    code = "payload_too_large"
    http_status = 413


class BatchTooLarge(ValidationError):
    """More jobs in one submission (or fires in one backfill) than the limit allows."""

    code = "batch_too_large"
    http_status = 413


class TooManyDependencies(ValidationError):
    """A job lists more `depends_on` entries than `Limits.max_dependencies`."""

    code = "too_many_dependencies"
    http_status = 400


# -- state-dependent refusals (returned by apply) -----------------------------------------------


class NotFound(SchedError):
    """The job, schedule or worker does not exist (or was removed by retention)."""

    code = "not_found"
    http_status = 404


class Conflict(SchedError):
    """The id exists with a different spec."""

    code = "conflict"
    http_status = 409


class IdempotencyKeyReused(SchedError):
    """The idempotency key was first used for a different command."""

    code = "idempotency_key_reused"
    http_status = 409


class StaleToken(SchedError):
    """The fencing token is not the job's current one: another lease superseded it."""

    code = "stale_token"
    http_status = 409


class LeaseExpired(SchedError):
    """The token is current but the lease expired (by its own deadline or because the worker's
    registration expired) and the job was released."""

    code = "lease_expired"
    http_status = 409


class NotLeased(SchedError):
    """The token is current but the lease already ended (the attempt failed) or never existed."""

    code = "not_leased"
    http_status = 409


class AlreadyTerminal(SchedError):
    """The job already succeeded, died or was cancelled."""

    code = "already_terminal"
    http_status = 409


class UnknownDependency(SchedError):
    """A `depends_on` id names no existing job and no job of the same submission."""

    code = "unknown_dependency"
    http_status = 400


class CycleError(SchedError):
    """The dependencies of a submission form a cycle; `details["cycle"]` lists it, first id
    repeated at the end (`["a", "b", "a"]`)."""

    code = "cycle"
    http_status = 400


class QueueFull(SchedError):
    """The queue holds `Limits.max_jobs_per_queue` unfinished jobs already."""

    code = "queue_full"
    http_status = 429


class TooManySchedules(SchedError):
    """The number of schedule names (live plus remembered fire records) reached the limit."""

    code = "too_many_schedules"
    http_status = 429


class QueueNotAllowed(SchedError):
    """The worker registered with a queue list that does not name the queue it leases from."""

    code = "queue_not_allowed"
    http_status = 409


class Overloaded(SchedError):
    """A cluster-wide cap is reached (idempotency table full, live or retained jobs): retry
    later. Never stored as an idempotent answer."""

    code = "overloaded"
    http_status = 429


class TooManyWorkers(SchedError):
    """The number of registered workers reached `Limits.max_workers`."""

    code = "too_many_workers"
    http_status = 429


_BY_CODE: dict[str, type[SchedError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        PayloadTooLarge,
        BatchTooLarge,
        TooManyDependencies,
        NotFound,
        Conflict,
        IdempotencyKeyReused,
        StaleToken,
        LeaseExpired,
        NotLeased,
        AlreadyTerminal,
        UnknownDependency,
        CycleError,
        QueueFull,
        TooManySchedules,
        TooManyWorkers,
        QueueNotAllowed,
        Overloaded,
    )
}

ERROR_CODES: tuple[str, ...] = tuple(sorted(_BY_CODE))


def error_from_wire(code: str, message: str, details: Mapping[str, Any]) -> SchedError:
    """Rebuild a refusal stored by `SchedError.to_wire` (snapshots, the idempotency table)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        raise ValueError(f"unknown scheduler error code {code!r}")
    error = cls.__new__(cls)
    SchedError.__init__(error, message, details)
    return error

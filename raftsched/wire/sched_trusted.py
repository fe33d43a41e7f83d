"""Decoding of COMMITTED scheduler commands: structural checks only, for the apply hot path.

Theory of operation. `sched_codec.decode_command` re-runs the API's whole parse
(`sched.parse`) on every replica for every committed entry: name patterns, the JSON walk and
canonical size of every payload, duplicate checks. That is the leader's job, done once before
it proposes (the API parses every request; the runtime's own Tick and Bootstrap are built in
code). A committed entry only has to turn back into the very command the leader encoded, so
for the frequent kinds (submits, leases, heartbeats, completes, fails, report batches,
cancels, ticks) `decode_committed` builds the command dataclasses straight from the msgpack
map, checking what the state machine relies on to not crash: the envelope, the field names,
each field's type (a bool is not an int) and the integer ranges. Strings and JSON values are
taken as msgpack decoded them (valid UTF-8, string map keys, no ext types: `unpack_strict`).
Rare kinds go through the full parse.

Determinism: a pure function of the bytes, so every replica running this code decodes every
entry the same way, whatever its configuration. For what the leader encodes (a parsed
command), `decode_committed(b) == decode_command(b)` (tests/wire/test_sched_trusted.py checks
it on generated commands), so this only skips work. Anything malformed raises
`WireDecodeError`, never another exception (the entry is then refused on every replica).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..sched.commands import (
    DEFAULT_BACKOFF,
    Backoff,
    Cancel,
    Command,
    Complete,
    Fail,
    HeartbeatLease,
    JobSpec,
    Lease,
    ReportBatch,
    SubmitJobs,
    SubmitWorkflow,
    Tick,
)
from ..sched.errors import SchedError
from ..sched.parse import BACKOFF_KEYS, JOB_KEYS, parse_command
from .errors import WireDecodeError
from .sched_codec import WIRE_LIMITS, unpack_command

INT64_MAX: Final = 2**63 - 1


class _Bad(Exception):
    """A structural defect; becomes WireDecodeError with the command kind."""


def _keys(d: dict[str, Any], allowed: frozenset[str]) -> None:
    if not allowed.issuperset(d):
        raise _Bad(f"unknown field {sorted(set(d) - allowed)[0]!r}")


def _int(v: Any, name: str, lo: int, hi: int = INT64_MAX) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _Bad(f"{name} must be an integer in [{lo}, {hi}]")
    return v


def _opt_int(d: dict[str, Any], name: str, lo: int, hi: int = INT64_MAX) -> int | None:
    v = d.get(name)
    return None if v is None else _int(v, name, lo, hi)


def _int_or(d: dict[str, Any], name: str, default: int, lo: int) -> int:
    """An int field whose absence or null means `default` (as parse reads it)."""
    v = d.get(name)
    return default if v is None else _int(v, name, lo)


def _str(v: Any, name: str) -> str:
    if type(v) is not str or not v:
        raise _Bad(f"{name} must be a non-empty string")
    return v


def _opt_str(d: dict[str, Any], name: str) -> str | None:
    v = d.get(name)
    return None if v is None else _str(v, name)


def _strs(d: dict[str, Any], name: str) -> tuple[str, ...]:
    v = d.get(name)
    if v is None:
        return ()
    if type(v) is not list:
        raise _Bad(f"{name} must be a list")
    for item in v:
        if type(item) is not str or not item:
            raise _Bad(f"{name} must hold non-empty strings")
    return tuple(v)


def _req(d: dict[str, Any], name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise _Bad(f"{name} is required") from None


_DEFAULT_BACKOFF_MAP: Final = {
    "initial_ms": DEFAULT_BACKOFF.initial_ms,
    "multiplier": DEFAULT_BACKOFF.multiplier,
    "max_ms": DEFAULT_BACKOFF.max_ms,
}


def _backoff(v: Any) -> Backoff:
    if v is None:
        return DEFAULT_BACKOFF
    if type(v) is not dict:
        raise _Bad("backoff must be a map")
    # The leader writes every job's backoff, nearly always the default one: share the frozen
    # default (equal to what the checks below would build) when the map is exactly it, types
    # included (1000.0 or True would compare equal but must be refused below).
    if (
        v == _DEFAULT_BACKOFF_MAP
        and type(v["initial_ms"]) is int
        and type(v["max_ms"]) is int
        and type(v["multiplier"]) in (int, float)
    ):
        return DEFAULT_BACKOFF
    _keys(v, BACKOFF_KEYS)
    initial = _int_or(v, "initial_ms", DEFAULT_BACKOFF.initial_ms, 0)
    maximum = _int_or(v, "max_ms", DEFAULT_BACKOFF.max_ms, initial)
    mult = v.get("multiplier", DEFAULT_BACKOFF.multiplier)
    if type(mult) not in (int, float) or not 1.0 <= mult <= 100.0:
        raise _Bad("multiplier must be a number from 1 to 100")
    return Backoff(initial_ms=initial, multiplier=float(mult), max_ms=maximum)


def _job(v: Any) -> JobSpec:
    """The same checks as the helpers above, written out: this runs once per job of every
    committed submit on every replica, and most optional fields are absent or empty."""
    if type(v) is not dict:
        raise _Bad("a job must be a map")
    _keys(v, JOB_KEYS)
    get = v.get
    run_at = get("run_at")
    if run_at is not None:
        _int(run_at, "run_at", 0)
    delay = get("delay_ms")
    if delay is not None:
        _int(delay, "delay_ms", 0)
    if run_at is not None and delay is not None:
        raise _Bad("run_at and delay_ms both given")
    ident = get("id")
    priority = get("priority")
    max_attempts = get("max_attempts")
    lease_ms = get("lease_ms")
    timeout_ms = get("timeout_ms")
    depends_on = get("depends_on")
    tags = get("tags")
    return JobSpec(
        id=None if ident is None else _str(ident, "id"),
        queue=_str(_req(v, "queue"), "queue"),
        payload=get("payload"),
        priority=0 if priority is None else _int(priority, "priority", -INT64_MAX),
        run_at_ms=run_at,
        delay_ms=delay,
        max_attempts=None if max_attempts is None else _int(max_attempts, "max_attempts", 1),
        backoff=_backoff(get("backoff")),
        lease_ms=None if lease_ms is None else _int(lease_ms, "lease_ms", 1),
        timeout_ms=None if timeout_ms is None else _int(timeout_ms, "timeout_ms", 1),
        depends_on=() if depends_on == [] else _strs(v, "depends_on"),
        tags=() if tags == [] else _strs(v, "tags"),
    )


def _jobs(d: dict[str, Any]) -> tuple[JobSpec, ...]:
    raw = _req(d, "jobs")
    if type(raw) is not list or not raw:
        raise _Bad("jobs must be a non-empty list")
    return tuple(_job(j) for j in raw)


def _fields(d: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    _keys(d, allowed | {"idempotency_key"})
    return d


def _submit_jobs(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"jobs"}))
    return SubmitJobs(jobs=_jobs(d), idempotency_key=_opt_str(d, "idempotency_key"))


def _submit_workflow(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"id", "jobs"}))
    jobs = _jobs(d)
    if any(j.id is None for j in jobs):
        raise _Bad("every job of a workflow has an id")
    return SubmitWorkflow(
        workflow_id=_str(_req(d, "id"), "id"),
        jobs=jobs,
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _lease(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"queue", "worker_id", "max_jobs", "wait_ms"}))
    return Lease(
        queue=_str(_req(d, "queue"), "queue"),
        worker_id=_str(_req(d, "worker_id"), "worker_id"),
        max_jobs=_int_or(d, "max_jobs", 1, 1),
        wait_ms=_int_or(d, "wait_ms", 0, 0),
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _heartbeat_lease(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"job_id", "token", "extend_ms"}))
    return HeartbeatLease(
        job_id=_str(_req(d, "job_id"), "job_id"),
        token=_int(_req(d, "token"), "token", 1),
        extend_ms=_opt_int(d, "extend_ms", 1),
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _complete(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"job_id", "token", "result"}))
    return Complete(
        job_id=_str(_req(d, "job_id"), "job_id"),
        token=_int(_req(d, "token"), "token", 1),
        result=d.get("result"),
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _fail(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"job_id", "token", "error", "retryable"}))
    retryable = d.get("retryable")
    if retryable is None:
        retryable = True
    elif type(retryable) is not bool:
        raise _Bad("retryable must be a boolean")
    return Fail(
        job_id=_str(_req(d, "job_id"), "job_id"),
        token=_int(_req(d, "token"), "token", 1),
        error=d.get("error"),
        retryable=retryable,
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _report(v: Any) -> Complete | Fail:
    if type(v) is not dict:
        raise _Bad("a report must be a map")
    if "error" in v or "retryable" in v:  # as parse tells a fail from a complete
        cmd = _fail(v)
    else:
        cmd = _complete(v)
    assert isinstance(cmd, Complete | Fail)
    if cmd.idempotency_key is not None:
        raise _Bad("a report carries no idempotency_key")
    return cmd


def _report_batch(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"reports"}))
    raw = _req(d, "reports")
    if type(raw) is not list or not raw:
        raise _Bad("reports must be a non-empty list")
    reports = tuple(_report(r) for r in raw)
    if len({r.job_id for r in reports}) != len(reports):
        raise _Bad("reports repeat a job_id")
    return ReportBatch(reports=reports, idempotency_key=_opt_str(d, "idempotency_key"))


def _cancel(d: dict[str, Any]) -> Command:
    _fields(d, frozenset({"job_id", "reason"}))
    return Cancel(
        job_id=_str(_req(d, "job_id"), "job_id"),
        reason=_opt_str(d, "reason"),
        idempotency_key=_opt_str(d, "idempotency_key"),
    )


def _tick(d: dict[str, Any]) -> Command:
    _fields(d, frozenset())
    return Tick(idempotency_key=_opt_str(d, "idempotency_key"))


TRUSTED: Final[dict[str, Callable[[dict[str, Any]], Command]]] = {
    "submit_jobs": _submit_jobs,
    "submit_workflow": _submit_workflow,
    "lease": _lease,
    "heartbeat_lease": _heartbeat_lease,
    "complete": _complete,
    "fail": _fail,
    "report_batch": _report_batch,
    "cancel": _cancel,
    "tick": _tick,
}


def decode_committed(data: bytes | bytearray | memoryview) -> Command:
    """The command a committed entry carries (encoded by `sched_codec.encode_command`)."""
    kind, fields = unpack_command(data)
    trusted = TRUSTED.get(kind)
    try:
        if trusted is not None:
            return trusted(fields)
        return parse_command(kind, fields, WIRE_LIMITS)
    except _Bad as exc:
        raise WireDecodeError(f"invalid {kind} command: {exc}") from exc
    except SchedError as exc:
        raise WireDecodeError(f"invalid {kind} command: {exc.message}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise WireDecodeError(f"invalid {kind} command: {type(exc).__name__}: {exc}") from exc


__all__ = ["TRUSTED", "decode_committed"]

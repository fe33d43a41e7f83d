"""Parse and validate commands from JSON-like dicts (the HTTP API's bodies, SPEC §5 field names).

Strict by design: unknown fields, missing fields, wrong types (a bool is not an int, a float is
not an int), out-of-range values and oversize payloads all raise a `ValidationError` (or one of
its subclasses with its own code: `PayloadTooLarge`, `BatchTooLarge`, `TooManyDependencies`)
whose `field` names the offending field by path, e.g. `jobs[3].backoff.max_ms`.

The server merges path parameters into the body before parsing (`job_id`, `queue`, `worker_id`,
`name`), and may pass the `Idempotency-Key` header as `idempotency_key=`.

Payload size is the length of the canonical JSON encoding (sorted keys, no spaces, UTF-8).
Job ids a client chooses may not contain `@` (reserved for cron fires, `<schedule>@<fire ms>`)
nor start with `auto-` (reserved for generated ids), so neither can collide with a client's id.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import cron
from .commands import (
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    AcceptClockJump,
    Backfill,
    Backoff,
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
    JobTemplate,
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
    BatchTooLarge,
    PayloadTooLarge,
    TooManyDependencies,
    ValidationError,
)
from .limits import SETTING_MAX, SETTING_NAMES, Limits

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
JOB_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*(@[0-9]+)?")
GENERATED_ID_PREFIX = "auto-"
MAX_INT = 2**53  # JSON-safe integers only: every client language reads them exactly
MAX_PRIORITY = 2**31
MAX_JSON_DEPTH = 64
MAX_TAG_CHARS = 100
MAX_REASON_CHARS = 1_000
DEFAULT_LIMITS = Limits()


# -- primitive readers -------------------------------------------------------------------------


def _path(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(path or "body", "must be an object")
    return value


def _keys(data: Mapping[str, Any], path: str, allowed: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ValidationError(_path(path, unknown[0]), "unknown field")


def _get(data: Mapping[str, Any], key: str, path: str, required: bool) -> Any:
    if key in data:
        return data[key]
    if required:
        raise ValidationError(_path(path, key), "is required")
    return None


def _int(
    data: Mapping[str, Any],
    key: str,
    path: str,
    *,
    lo: int,
    hi: int = MAX_INT,
    required: bool = False,
    default: int | None = None,
) -> int | None:
    value = _get(data, key, path, required)
    if value is None:
        if required:
            raise ValidationError(_path(path, key), "is required (not null)")
        return default
    if type(value) is not int:  # bool and float are not ints
        raise ValidationError(_path(path, key), "must be an integer")
    if not lo <= value <= hi:
        raise ValidationError(_path(path, key), f"must be between {lo} and {hi}")
    return value


def _req_int(data: Mapping[str, Any], key: str, path: str, *, lo: int, hi: int = MAX_INT) -> int:
    value = _int(data, key, path, lo=lo, hi=hi, required=True)
    assert value is not None
    return value


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = _get(data, key, path, False)
    if value is None:
        return default
    if type(value) is not bool:
        raise ValidationError(_path(path, key), "must be a boolean")
    return value


def _str(
    data: Mapping[str, Any],
    key: str,
    path: str,
    *,
    required: bool,
    max_chars: int,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    value = _get(data, key, path, required)
    if value is None:
        if required:
            raise ValidationError(_path(path, key), "is required (not null)")
        return None
    return _check_str(value, _path(path, key), max_chars, pattern)


def _utf8(value: str, path: str) -> str:
    """Refuse what UTF-8 cannot carry (a lone surrogate from a JSON "\\ud800" escape): it
    would pass here and break the wire encoder, the snapshot and every replica later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(path, "must be valid unicode (no lone surrogates)") from None
    return value


def _check_str(value: Any, path: str, max_chars: int, pattern: re.Pattern[str] | None) -> str:
    if type(value) is not str:
        raise ValidationError(path, "must be a string")
    _utf8(value, path)
    if not 1 <= len(value) <= max_chars:
        raise ValidationError(path, f"must be 1 to {max_chars} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise ValidationError(path, f"must match {pattern.pattern}")
    return value


def _name(data: Mapping[str, Any], key: str, path: str, limits: Limits) -> str:
    value = _str(data, key, path, required=True, max_chars=limits.max_id_chars, pattern=NAME_RE)
    assert value is not None
    return value


def _str_list(
    data: Mapping[str, Any],
    key: str,
    path: str,
    *,
    max_items: int,
    max_chars: int,
    pattern: re.Pattern[str] | None,
) -> tuple[str, ...]:
    value = _get(data, key, path, False)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValidationError(_path(path, key), "must be a list")
    if len(value) > max_items:
        raise ValidationError(_path(path, key), f"at most {max_items} items")
    items = tuple(
        _check_str(v, f"{_path(path, key)}[{i}]", max_chars, pattern) for i, v in enumerate(value)
    )
    if len(set(items)) != len(items):
        raise ValidationError(_path(path, key), "must not repeat an item")
    return items


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(path, f"nested deeper than {MAX_JSON_DEPTH}")
    if value is None or type(value) is bool:
        return
    if type(value) is str:
        _utf8(value, path)
        return
    if type(value) is int:
        if not -(2**63) <= value < 2**64:  # what msgpack (the log, the snapshot) can hold
            raise ValidationError(path, "integer outside the 64-bit range")
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise ValidationError(path, "must not be NaN or infinite")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, path, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if type(k) is not str:
                raise ValidationError(path, "object keys must be strings")
            _utf8(k, path)
            _check_json(item, path, depth + 1)
        return
    raise ValidationError(path, f"is not a JSON value ({type(value).__name__})")


def canonical_json_size(value: Any) -> int:
    """Bytes of the canonical JSON encoding (sorted keys, compact, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8"))


def _json(data: Mapping[str, Any], key: str, path: str, limits: Limits) -> Any:
    value = data.get(key)
    field = _path(path, key)
    _check_json(value, field, 0)
    size = canonical_json_size(value)
    if size > limits.max_payload_bytes:
        raise PayloadTooLarge(field, f"{size} bytes, limit {limits.max_payload_bytes}")
    return value


def _idempotency_key(data: Mapping[str, Any], header: str | None) -> str | None:
    body = _str(data, "idempotency_key", "", required=False, max_chars=200)
    if header is not None:
        header = _check_str(header, "idempotency_key", 200, None)
        if body is not None and body != header:
            raise ValidationError("idempotency_key", "header and body disagree")
        return header
    return body


# -- jobs ----------------------------------------------------------------------------------------

# The fields a job spec may carry; the trusted decode of committed entries checks the same sets.
BACKOFF_KEYS = frozenset({"initial_ms", "multiplier", "max_ms"})
JOB_KEYS = frozenset(
    {
        "id",
        "queue",
        "payload",
        "priority",
        "run_at",
        "delay_ms",
        "max_attempts",
        "backoff",
        "lease_ms",
        "timeout_ms",
        "depends_on",
        "tags",
    }
)
_TEMPLATE_KEYS = frozenset(
    {
        "queue",
        "payload",
        "priority",
        "max_attempts",
        "backoff",
        "lease_ms",
        "timeout_ms",
        "tags",
    }
)


def _backoff(data: Mapping[str, Any], path: str) -> Backoff:
    raw = _get(data, "backoff", path, False)
    if raw is None:
        return Backoff()
    bpath = _path(path, "backoff")
    b = _mapping(raw, bpath)
    _keys(b, bpath, BACKOFF_KEYS)
    default = Backoff()
    initial_ms = _int(b, "initial_ms", bpath, lo=0, hi=7 * 86_400_000, default=default.initial_ms)
    max_ms = _int(b, "max_ms", bpath, lo=0, hi=7 * 86_400_000, default=default.max_ms)
    assert initial_ms is not None and max_ms is not None
    if max_ms < initial_ms:
        raise ValidationError(_path(bpath, "max_ms"), "must be >= initial_ms")
    mult = b.get("multiplier", default.multiplier)
    if type(mult) not in (int, float) or not 1.0 <= mult <= 100.0:
        raise ValidationError(_path(bpath, "multiplier"), "must be a number from 1 to 100")
    return Backoff(initial_ms=initial_ms, multiplier=float(mult), max_ms=max_ms)


def _common_job_fields(d: Mapping[str, Any], path: str, limits: Limits) -> dict[str, Any]:
    return {
        "queue": _name(d, "queue", path, limits),
        "payload": _json(d, "payload", path, limits),
        "priority": _int(d, "priority", path, lo=-MAX_PRIORITY, hi=MAX_PRIORITY, default=0),
        "max_attempts": _int(d, "max_attempts", path, lo=1, hi=limits.max_attempts_limit),
        "backoff": _backoff(d, path),
        "lease_ms": _int(d, "lease_ms", path, lo=1, hi=limits.max_lease_ms),
        "timeout_ms": _int(d, "timeout_ms", path, lo=1, hi=MAX_INT),
        "tags": _str_list(
            d, "tags", path, max_items=limits.max_tags, max_chars=MAX_TAG_CHARS, pattern=None
        ),
    }


def _new_job_id(d: Mapping[str, Any], path: str, limits: Limits, required: bool) -> str | None:
    job_id = _str(d, "id", path, required=required, max_chars=limits.max_id_chars, pattern=NAME_RE)
    if job_id is not None and job_id.startswith(GENERATED_ID_PREFIX):
        raise ValidationError(_path(path, "id"), f"the prefix {GENERATED_ID_PREFIX!r} is reserved")
    return job_id


def parse_job_spec(
    data: Any, path: str = "", limits: Limits = DEFAULT_LIMITS, require_id: bool = False
) -> JobSpec:
    d = _mapping(data, path)
    _keys(d, path, JOB_KEYS)
    job_id = _new_job_id(d, path, limits, require_id)
    run_at_ms = _int(d, "run_at", path, lo=0)
    delay_ms = _int(d, "delay_ms", path, lo=0)
    if run_at_ms is not None and delay_ms is not None:
        raise ValidationError(_path(path, "delay_ms"), "give run_at or delay_ms, not both")
    deps_path = _path(path, "depends_on")
    raw_deps = d.get("depends_on")
    if isinstance(raw_deps, list | tuple) and len(raw_deps) > limits.max_dependencies:
        raise TooManyDependencies(
            deps_path, f"{len(raw_deps)} dependencies, limit {limits.max_dependencies}"
        )
    depends_on = _str_list(
        d,
        "depends_on",
        path,
        max_items=limits.max_dependencies,
        max_chars=limits.max_id_chars,
        pattern=JOB_REF_RE,
    )
    if job_id is not None and job_id in depends_on:
        raise ValidationError(deps_path, "a job cannot depend on itself")
    return JobSpec(
        id=job_id,
        run_at_ms=run_at_ms,
        delay_ms=delay_ms,
        depends_on=depends_on,
        **_common_job_fields(d, path, limits),
    )


def parse_job_template(data: Any, path: str, limits: Limits = DEFAULT_LIMITS) -> JobTemplate:
    d = _mapping(data, path)
    _keys(d, path, _TEMPLATE_KEYS)
    return JobTemplate(**_common_job_fields(d, path, limits))


def _job_list(d: Mapping[str, Any], limits: Limits, require_id: bool) -> tuple[JobSpec, ...]:
    raw = _get(d, "jobs", "", True)
    if not isinstance(raw, list | tuple):
        raise ValidationError("jobs", "must be a list")
    if not raw:
        raise ValidationError("jobs", "must not be empty")
    if len(raw) > limits.max_batch_jobs:
        raise BatchTooLarge("jobs", f"{len(raw)} jobs, limit {limits.max_batch_jobs}")
    specs = tuple(parse_job_spec(j, f"jobs[{i}]", limits, require_id) for i, j in enumerate(raw))
    first_at: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.id is None:
            continue
        if spec.id in first_at:
            raise ValidationError(f"jobs[{i}].id", f"repeats jobs[{first_at[spec.id]}].id")
        first_at[spec.id] = i
    return specs


def parse_submit_job(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> SubmitJobs:
    """POST /v1/jobs: one job object."""
    d = dict(_mapping(data, ""))
    key = _idempotency_key(d, idempotency_key)
    d.pop("idempotency_key", None)
    return SubmitJobs(jobs=(parse_job_spec(d, "", limits),), idempotency_key=key)


def parse_submit_batch(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> SubmitJobs:
    """POST /v1/jobs:batch: {"jobs": [...]}, all or none."""
    d = _mapping(data, "")
    _keys(d, "", frozenset({"jobs", "idempotency_key"}))
    key = _idempotency_key(d, idempotency_key)
    return SubmitJobs(jobs=_job_list(d, limits, False), idempotency_key=key)


def parse_submit_workflow(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> SubmitWorkflow:
    """POST /v1/workflows: {"id": ..., "jobs": [...]}; every job needs an id."""
    d = _mapping(data, "")
    _keys(d, "", frozenset({"id", "jobs", "idempotency_key"}))
    return SubmitWorkflow(
        workflow_id=_name(d, "id", "", limits),
        jobs=_job_list(d, limits, True),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


# -- leases and workers --------------------------------------------------------------------------


def _body(data: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    d = _mapping(data, "")
    _keys(d, "", keys | {"idempotency_key"})
    return d


def _token(d: Mapping[str, Any]) -> int:
    return _req_int(d, "token", "", lo=1, hi=2**63 - 1)


def _job_ref(d: Mapping[str, Any], limits: Limits) -> str:
    value = _str(
        d, "job_id", "", required=True, max_chars=limits.max_id_chars + 21, pattern=JOB_REF_RE
    )
    assert value is not None
    return value


def parse_lease(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Lease:
    d = _body(data, frozenset({"queue", "worker_id", "max_jobs", "wait_ms"}))
    max_jobs = _int(d, "max_jobs", "", lo=1, hi=limits.max_lease_jobs, default=1)
    wait_ms = _int(d, "wait_ms", "", lo=0, hi=60_000, default=0)
    assert max_jobs is not None and wait_ms is not None
    return Lease(
        queue=_name(d, "queue", "", limits),
        worker_id=_name(d, "worker_id", "", limits),
        max_jobs=max_jobs,
        wait_ms=wait_ms,
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_heartbeat_lease(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> HeartbeatLease:
    d = _body(data, frozenset({"job_id", "token", "extend_ms"}))
    return HeartbeatLease(
        job_id=_job_ref(d, limits),
        token=_token(d),
        extend_ms=_int(d, "extend_ms", "", lo=1, hi=limits.max_lease_ms),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_complete(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Complete:
    d = _body(data, frozenset({"job_id", "token", "result"}))
    return Complete(
        job_id=_job_ref(d, limits),
        token=_token(d),
        result=_json(d, "result", "", limits),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_fail(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Fail:
    d = _body(data, frozenset({"job_id", "token", "error", "retryable"}))
    return Fail(
        job_id=_job_ref(d, limits),
        token=_token(d),
        error=_json(d, "error", "", limits),
        retryable=_bool(d, "retryable", "", True),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


_COMPLETE_ITEM_KEYS = frozenset({"job_id", "token", "result"})
_FAIL_ITEM_KEYS = frozenset({"job_id", "token", "error", "retryable"})


def _report(data: Any, path: str, limits: Limits) -> Complete | Fail:
    """One report: a fail when it has `error` or `retryable`, else a complete."""
    d = _mapping(data, path)
    is_fail = "error" in d or "retryable" in d
    _keys(d, path, _FAIL_ITEM_KEYS if is_fail else _COMPLETE_ITEM_KEYS)
    job_id = _str(
        d, "job_id", path, required=True, max_chars=limits.max_id_chars + 21, pattern=JOB_REF_RE
    )
    assert job_id is not None
    token = _req_int(d, "token", path, lo=1, hi=2**63 - 1)
    if is_fail:
        return Fail(
            job_id=job_id,
            token=token,
            error=_json(d, "error", path, limits),
            retryable=_bool(d, "retryable", path, True),
        )
    return Complete(job_id=job_id, token=token, result=_json(d, "result", path, limits))


def parse_report_batch(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> ReportBatch:
    """POST /v1/jobs:complete: {"reports": [complete | fail, ...]}, each applied on its own."""
    d = _body(data, frozenset({"reports"}))
    raw = _get(d, "reports", "", True)
    if not isinstance(raw, list | tuple):
        raise ValidationError("reports", "must be a list")
    if not raw:
        raise ValidationError("reports", "must not be empty")
    if len(raw) > limits.max_batch_jobs:
        raise BatchTooLarge("reports", f"{len(raw)} reports, limit {limits.max_batch_jobs}")
    reports = tuple(_report(r, f"reports[{i}]", limits) for i, r in enumerate(raw))
    first_at: dict[str, int] = {}
    for i, report in enumerate(reports):
        if report.job_id in first_at:
            raise ValidationError(
                f"reports[{i}].job_id", f"repeats reports[{first_at[report.job_id]}].job_id"
            )
        first_at[report.job_id] = i
    return ReportBatch(reports=reports, idempotency_key=_idempotency_key(d, idempotency_key))


def parse_cancel(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Cancel:
    d = _body(data, frozenset({"job_id", "reason"}))
    return Cancel(
        job_id=_job_ref(d, limits),
        reason=_str(d, "reason", "", required=False, max_chars=MAX_REASON_CHARS),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_worker_heartbeat(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> WorkerHeartbeat:
    d = _body(data, frozenset({"worker_id", "capacity", "queues", "ttl_ms", "incarnation"}))
    return WorkerHeartbeat(
        worker_id=_name(d, "worker_id", "", limits),
        capacity=_req_int(d, "capacity", "", lo=0, hi=limits.max_lease_jobs),
        queues=_str_list(
            d, "queues", "", max_items=1_000, max_chars=limits.max_id_chars, pattern=NAME_RE
        ),
        ttl_ms=_int(d, "ttl_ms", "", lo=1, hi=limits.max_lease_ms),
        incarnation=_str(d, "incarnation", "", required=False, max_chars=200),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_configure_queue(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> ConfigureQueue:
    """PUT /v1/queues/{queue}: a partial update; only the fields present change (`null`
    resets max_in_flight to unlimited, lease_ms / max_attempts to the cluster defaults)."""
    d = _body(data, frozenset({"queue", *_QUEUE_FIELDS}))
    present = tuple(name for name in _QUEUE_FIELDS if name in d)
    return ConfigureQueue(
        queue=_name(d, "queue", "", limits),
        max_in_flight=_int(d, "max_in_flight", "", lo=0, hi=MAX_INT),
        lease_ms=_int(d, "lease_ms", "", lo=1, hi=limits.max_lease_ms),
        max_attempts=_int(d, "max_attempts", "", lo=1, hi=limits.max_attempts_limit),
        paused=_bool(d, "paused", "", False),
        fields_set=None if len(present) == len(_QUEUE_FIELDS) else present,
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


_QUEUE_FIELDS = ("max_in_flight", "lease_ms", "max_attempts", "paused")


def _job_ids(d: Mapping[str, Any], limits: Limits) -> tuple[str, ...]:
    ids = _str_list(
        d,
        "job_ids",
        "",
        max_items=limits.max_requeue_jobs,
        max_chars=limits.max_id_chars + 21,
        pattern=JOB_REF_RE,
    )
    if not ids:
        raise ValidationError("job_ids", "must name at least one job")
    return ids


def parse_requeue_dead(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> RequeueDead:
    d = _body(data, frozenset({"job_ids", "max_attempts"}))
    return RequeueDead(
        job_ids=_job_ids(d, limits),
        max_attempts=_int(d, "max_attempts", "", lo=1, hi=limits.max_attempts_limit),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_purge_dead(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> PurgeDead:
    d = _body(data, frozenset({"job_ids"}))
    return PurgeDead(
        job_ids=_job_ids(d, limits), idempotency_key=_idempotency_key(d, idempotency_key)
    )


def parse_cancel_workflow(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> CancelWorkflow:
    d = _body(data, frozenset({"id", "reason"}))
    return CancelWorkflow(
        workflow_id=_name(d, "id", "", limits),
        reason=_str(d, "reason", "", required=False, max_chars=MAX_REASON_CHARS),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


# -- schedules -----------------------------------------------------------------------------------


def parse_put_schedule(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> PutSchedule:
    d = _body(
        data,
        frozenset(
            {
                "name",
                "cron",
                "timezone",
                "template",
                "misfire",
                "misfire_cap",
                "misfire_grace_ms",
                "paused",
                "overlap",
            }
        ),
    )
    name = _name(d, "name", "", limits)
    expr = _str(d, "cron", "", required=True, max_chars=200)
    assert expr is not None
    try:
        cron.parse_cron(expr)
    except cron.CronError as exc:
        raise ValidationError("cron", str(exc)) from None
    tz = _str(d, "timezone", "", required=False, max_chars=100) or "UTC"
    try:
        cron.validate_timezone(tz)
    except cron.CronError as exc:
        raise ValidationError("timezone", str(exc)) from None
    misfire = _str(d, "misfire", "", required=False, max_chars=20) or "fire_once"
    if misfire not in MISFIRE_POLICIES:
        raise ValidationError("misfire", f"must be one of {', '.join(MISFIRE_POLICIES)}")
    overlap = _str(d, "overlap", "", required=False, max_chars=20) or "allow"
    if overlap not in OVERLAP_POLICIES:
        raise ValidationError("overlap", f"must be one of {', '.join(OVERLAP_POLICIES)}")
    cap = _int(d, "misfire_cap", "", lo=1, hi=limits.max_misfire_cap, default=100)
    assert cap is not None
    return PutSchedule(
        name=name,
        cron=expr,
        timezone=tz,
        template=parse_job_template(_get(d, "template", "", True), "template", limits),
        misfire=misfire,
        misfire_cap=cap,
        misfire_grace_ms=_int(d, "misfire_grace_ms", "", lo=0, hi=MAX_INT),
        paused=_bool(d, "paused", "", False),
        overlap=overlap,
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_delete_schedule(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> DeleteSchedule:
    d = _body(data, frozenset({"name"}))
    return DeleteSchedule(
        name=_name(d, "name", "", limits), idempotency_key=_idempotency_key(d, idempotency_key)
    )


def parse_backfill(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Backfill:
    d = _body(data, frozenset({"name", "from", "to"}))
    from_ms = _req_int(d, "from", "", lo=0)
    to_ms = _req_int(d, "to", "", lo=0)
    if to_ms < from_ms:
        raise ValidationError("to", "must not be before from")
    return Backfill(
        name=_name(d, "name", "", limits),
        from_ms=from_ms,
        to_ms=to_ms,
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_tick(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Tick:
    d = _body(data, frozenset())
    return Tick(idempotency_key=_idempotency_key(d, idempotency_key))


def _settings(d: Mapping[str, Any], *, partial: bool) -> dict[str, int]:
    raw = _mapping(_get(d, "settings", "", True), "settings")
    _keys(raw, "settings", frozenset(SETTING_NAMES))
    if partial and not raw:
        raise ValidationError("settings", "must change at least one setting")
    return {
        name: _req_int(raw, name, "settings", lo=1, hi=SETTING_MAX)
        for name in SETTING_NAMES
        if name in raw
    }


def parse_bootstrap(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Bootstrap:
    """The runtime's first entry: the full settings (absent names: the genesis defaults)."""
    d = _body(data, frozenset({"settings"}))
    return Bootstrap(
        settings=Limits(**_settings(d, partial=False)),
        idempotency_key=_idempotency_key(d, idempotency_key),
    )


def parse_update_settings(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> UpdateSettings:
    d = _body(data, frozenset({"settings"}))
    changes = _settings(d, partial=True)
    return UpdateSettings(
        changes=tuple(sorted(changes.items())), idempotency_key=_idempotency_key(d, idempotency_key)
    )


def parse_accept_clock_jump(
    data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> AcceptClockJump:
    d = _body(data, frozenset({"to"}))
    return AcceptClockJump(
        to_ms=_req_int(d, "to", "", lo=0), idempotency_key=_idempotency_key(d, idempotency_key)
    )


Parser = Callable[[Any, Limits, "str | None"], Command]

PARSERS: dict[str, Parser] = {
    "submit_jobs": parse_submit_batch,
    "submit_workflow": parse_submit_workflow,
    "lease": parse_lease,
    "heartbeat_lease": parse_heartbeat_lease,
    "complete": parse_complete,
    "fail": parse_fail,
    "report_batch": parse_report_batch,
    "cancel": parse_cancel,
    "worker_heartbeat": parse_worker_heartbeat,
    "configure_queue": parse_configure_queue,
    "put_schedule": parse_put_schedule,
    "delete_schedule": parse_delete_schedule,
    "backfill": parse_backfill,
    "tick": parse_tick,
    "bootstrap": parse_bootstrap,
    "update_settings": parse_update_settings,
    "accept_clock_jump": parse_accept_clock_jump,
    "requeue_dead": parse_requeue_dead,
    "purge_dead": parse_purge_dead,
    "cancel_workflow": parse_cancel_workflow,
}


def parse_command(
    kind: str, data: Any, limits: Limits = DEFAULT_LIMITS, idempotency_key: str | None = None
) -> Command:
    """Parse any command by its kind name (`commands.KIND_BY_TYPE`)."""
    parser = PARSERS.get(kind)
    if parser is None:
        raise ValidationError("kind", f"unknown command kind {kind!r}")
    return parser(data, limits, idempotency_key)

"""GET /v1/openapi.json: an OpenAPI 3.1 document generated from the API's route table.

Generated, not written by hand, so it lists exactly the routes the router serves, each with its
required role (`x-role`), whether a follower forwards it (`x-forwarded-to-leader`), request
body fields with their JSON types (unknown fields are refused: additionalProperties false),
query parameters, the success status and answer, and every error status with the common error
body and the `error.code` values each status can carry (`x-error-codes`). The route table lives
in api_table.py; this module only renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from raftsched.sched import SchedError

ERROR_TEXT = {
    "400": "bad input; error.details.field names the field",
    "401": "missing or unknown bearer token",
    "403": "the token's role may not do this",
    "404": "not found",
    "409": "conflict: stale token, lease expired or ended, already terminal, duplicate id "
    "with another spec, idempotency key reused for another command",
    "413": "body, payload or batch too large",
    "429": "overloaded or queue full; wait Retry-After seconds",
    "503": "no leader / outcome unknown / shutting down / not ready; retry after Retry-After "
    "seconds with the same Idempotency-Key",
}
ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "object"},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": ERROR_BODY},
}
# The API's own codes by status; the state machine's refusals are added from their classes.
API_CODES: dict[str, tuple[str, ...]] = {
    "400": ("invalid",),
    "401": ("unauthorized",),
    "403": ("forbidden",),
    "404": ("not_found", "no_route", "unknown_member"),
    "409": (
        "member_exists",
        "id_retired",
        "change_in_progress",
        "last_voter",
        "no_target",
        "transfer_in_progress",
    ),
    "413": ("body_too_large",),
    "429": ("overloaded",),
    "503": ("no_leader", "outcome_unknown", "shutting_down", "not_ready"),
}


def _sched_codes() -> dict[str, set[str]]:
    codes: dict[str, set[str]] = {}
    todo: list[type[SchedError]] = [SchedError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not SchedError:
            codes.setdefault(str(cls.http_status), set()).add(cls.code)
    return codes


def error_codes() -> dict[str, list[str]]:
    """Every `error.code` the API can answer, by HTTP status."""
    merged = {status: set(codes) for status, codes in API_CODES.items()}
    for status, codes in _sched_codes().items():
        merged.setdefault(status, set()).update(codes)
    return {status: sorted(codes) for status, codes in sorted(merged.items())}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


JsonSchema = dict[str, Any]
INT: JsonSchema = {"type": "integer"}
STR: JsonSchema = {"type": "string"}
BOOL: JsonSchema = {"type": "boolean"}
ANY: JsonSchema = {}  # any JSON value
NULL_INT: JsonSchema = {"type": ["integer", "null"]}
NULL_STR: JsonSchema = {"type": ["string", "null"]}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Job": _obj(
        {
            "id": STR,
            "seq": INT,
            "queue": STR,
            "state": {
                "enum": [
                    "waiting",
                    "scheduled",
                    "pending",
                    "leased",
                    "succeeded",
                    "dead",
                    "cancelled",
                ]
            },
            "reason": NULL_STR,
            "workflow": NULL_STR,
            "payload": ANY,
            "priority": INT,
            "run_at": INT,
            "max_attempts": INT,
            "backoff": _obj({"initial_ms": INT, "multiplier": {"type": "number"}, "max_ms": INT}),
            "lease_ms": INT,
            "timeout_ms": NULL_INT,
            "depends_on": _list_of(STR),
            "tags": _list_of(STR),
            "result": ANY,
            "error": ANY,
            "attempts": INT,
            "token": INT,
            "lease_expires_at": NULL_INT,
            "worker_id": NULL_STR,
            "created_at": INT,
            "updated_at": INT,
            "ended_at": NULL_INT,
            "events": _list_of(_obj({"at": INT, "state": STR, "token": INT})),
            "created": {"type": "boolean", "description": "submit answers only"},
        },
        ("id", "queue", "state"),
    ),
    "LeaseGrant": _obj(
        {
            "job_id": STR,
            "queue": STR,
            "payload": ANY,
            "token": INT,
            "lease_expires_at": INT,
            "attempt": INT,
            "max_attempts": INT,
            "timeout_ms": NULL_INT,
            "tags": _list_of(STR),
            "job": _ref("Job"),
        },
        ("job_id", "token", "lease_expires_at"),
    ),
    "Outcome": _obj({"id": STR, "state": STR, "token": INT, "attempts": INT, "run_at": INT}),
    "Queue": _obj(
        {
            "name": STR,
            "config": _obj(
                {
                    "max_in_flight": NULL_INT,
                    "lease_ms": NULL_INT,
                    "max_attempts": NULL_INT,
                    "paused": BOOL,
                }
            ),
            "counts": {"type": "object", "additionalProperties": INT},
        }
    ),
    "Worker": _obj(
        {
            "id": STR,
            "capacity": INT,
            "queues": _list_of(STR),
            "ttl_ms": INT,
            "last_seen_at": INT,
            "registered_at": INT,
            "expires_at": INT,
            "leased": _list_of(STR),
        }
    ),
    "Schedule": _obj(
        {
            "name": STR,
            "cron": STR,
            "timezone": STR,
            "template": {"type": "object"},
            "misfire": STR,
            "misfire_cap": INT,
            "misfire_grace_ms": NULL_INT,
            "paused": BOOL,
            "next_fire_at": NULL_INT,
            "fired_through": INT,
            "missed_fires": INT,
            "last_error": NULL_STR,
        }
    ),
    "ClusterView": _obj(
        {
            "node_id": INT,
            "role": STR,
            "term": INT,
            "leader_id": NULL_INT,
            "leader_http_url": NULL_STR,
            "commit_index": INT,
            "applied_index": INT,
            "members": _list_of(
                _obj(
                    {
                        "node_id": INT,
                        "voter": BOOL,
                        "http_url": NULL_STR,
                        "match_index": NULL_INT,
                        "lag": NULL_INT,
                    }
                )
            ),
        }
    ),
}
JOBS = _obj({"jobs": _list_of(_ref("Job"))})
ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/jobs"): _obj({"job": _ref("Job")}),
    ("POST", "/v1/jobs:batch"): JOBS,
    ("POST", "/v1/workflows"): _obj({"workflow": STR, "jobs": _list_of(_ref("Job"))}),
    ("GET", "/v1/jobs"): _obj({"jobs": _list_of(_ref("Job")), "next_after": NULL_INT}),
    ("GET", "/v1/jobs/{id}"): _ref("Job"),
    ("POST", "/v1/jobs/{id}/cancel"): _obj({"job": _ref("Job")}),
    ("POST", "/v1/jobs/{id}/heartbeat"): _obj(
        {"job_id": STR, "token": INT, "lease_expires_at": INT}
    ),
    ("POST", "/v1/jobs/{id}/complete"): _ref("Outcome"),
    ("POST", "/v1/jobs/{id}/fail"): _ref("Outcome"),
    ("POST", "/v1/jobs:complete"): _obj(
        {
            "results": _list_of(
                _obj(
                    {
                        "job_id": STR,
                        "ok": BOOL,
                        "state": STR,
                        "error": ERROR_BODY,
                    },
                    required=("job_id",),
                )
            )
        }
    ),
    ("POST", "/v1/queues/{queue}/lease"): _obj({"leases": _list_of(_ref("LeaseGrant"))}),
    ("GET", "/v1/queues"): _obj({"queues": _list_of(_ref("Queue"))}),
    ("GET", "/v1/queues/{queue}"): _obj({"queue": _ref("Queue")}),
    ("PUT", "/v1/queues/{queue}"): _obj({"queue": _ref("Queue")}),
    ("POST", "/v1/workers/{id}/heartbeat"): _obj({"worker": _ref("Worker")}),
    ("GET", "/v1/workers"): _obj({"workers": _list_of(_ref("Worker"))}),
    ("PUT", "/v1/schedules/{name}"): _obj({"schedule": _ref("Schedule"), "created": BOOL}),
    ("GET", "/v1/schedules"): _obj({"schedules": _list_of(_ref("Schedule"))}),
    ("GET", "/v1/schedules/{name}"): _obj({"schedule": _ref("Schedule")}),
    ("DELETE", "/v1/schedules/{name}"): _obj({"deleted": STR}),
    ("POST", "/v1/schedules/{name}/backfill"): _obj(
        {"created": _list_of(STR), "skipped": _list_of(STR)}
    ),
    ("GET", "/v1/cluster"): _ref("ClusterView"),
    ("GET", "/v1/workflows/{id}"): _obj(
        {
            "workflow": STR,
            "counts": {"type": "object", "additionalProperties": INT},
            "done": BOOL,
            "jobs": _list_of(_obj({"id": STR, "state": STR})),
        }
    ),
    ("POST", "/v1/workflows/{id}/cancel"): _obj({"workflow": STR, "cancelled": _list_of(STR)}),
    ("POST", "/v1/jobs:requeue"): _obj({"jobs": _list_of(_ref("Outcome"))}),
    ("POST", "/v1/jobs:purge"): _obj({"purged": _list_of(STR)}),
    ("GET", "/v1/cluster/settings"): _obj(
        {"settings": {"type": "object", "additionalProperties": INT}}
    ),
    ("PATCH", "/v1/cluster/settings"): _obj(
        {"settings": {"type": "object", "additionalProperties": INT}, "applied": BOOL}
    ),
}


RAFT_HEADERS = {
    "X-Raft-Leader": {
        "description": "the leader's node id as this node knows it (may be empty)",
        "schema": {"type": "string"},
    },
    "X-Raft-Term": {"description": "this node's Raft term", "schema": {"type": "string"}},
}


class FieldLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def doc(self) -> str: ...
    @property
    def required(self) -> bool: ...


class RouteLike(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def ok(self) -> int: ...
    @property
    def mutating(self) -> bool: ...
    @property
    def forward(self) -> bool: ...
    @property
    def body(self) -> tuple[FieldLike, ...]: ...
    @property
    def query(self) -> tuple[FieldLike, ...]: ...
    @property
    def errors(self) -> tuple[str, ...]: ...


def _schema(f: FieldLike) -> dict[str, Any]:
    schema: dict[str, Any] = {"description": f.doc}
    if f.type != "any":
        schema["type"] = f.type
    return schema


def _parameters(r: RouteLike) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", r.path)
    ]
    params += [
        {
            "name": f.name,
            "in": "query",
            "required": False,
            "description": f.doc,
            "schema": {"type": f.type},
        }
        for f in r.query
    ]
    if r.mutating:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a retry with the same key returns the first answer",
                "schema": {"type": "string", "maxLength": 200},
            }
        )
    if r.forward:
        params.append(
            {
                "name": "X-Raft-No-Proxy",
                "in": "header",
                "required": False,
                "description": "1: a follower answers 307 + Location (the leader) instead of "
                "proxying",
                "schema": {"type": "string", "enum": ["1"]},
            }
        )
    return params


def _success(r: RouteLike) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": r.answer, "headers": RAFT_HEADERS}
    schema = ANSWERS.get((r.method, r.path))
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    return answer


def _operation(r: RouteLike, codes: dict[str, list[str]]) -> dict[str, Any]:
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {
        str(r.ok): _success(r),
        **{
            status: {
                "description": ERROR_TEXT.get(status, "error"),
                "headers": RAFT_HEADERS,
                "content": error_content,
                "x-error-codes": codes.get(status, []),
            }
            for status in r.errors
        },
        "500": {"description": "a bug (logged on the node)", "content": error_content},
    }
    if r.forward:
        responses["307"] = {
            "description": "X-Raft-No-Proxy: 1 on a follower: Location is "
            "the same request on the leader",
            "headers": RAFT_HEADERS,
        }
    op: dict[str, Any] = {
        "summary": r.summary,
        "x-role": r.role,
        "x-forwarded-to-leader": r.forward,
        "parameters": _parameters(r),
        "responses": responses,
    }
    if r.role == "open":
        op["security"] = []
    if r.body:
        op["requestBody"] = {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": [f.name for f in r.body if f.required],
                        "properties": {f.name: _schema(f) for f in r.body},
                    }
                }
            }
        }
    return op


def document(routes: Iterable[RouteLike]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    codes = error_codes()
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, codes)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "raftsched",
            "version": "1",
            "description": "Every response carries X-Raft-Leader and X-Raft-Term. Followers "
            "proxy mutating requests to the leader; send X-Raft-No-Proxy: 1 to get 307 + "
            "Location instead. Errors: {error: {code, message, details}}.",
        },
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }

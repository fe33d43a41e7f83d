"""GET /v1/openapi.json: an OpenAPI 3.1 document generated from the API's route table.

Generated, not written by hand, so it lists exactly the routes the router serves, each with its
required role, request body fields, success status and error statuses (all with the common
error body). The route table lives in api.py; this module only renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

ERROR_TEXT = {
    "400": "bad input; error.details.field names the field",
    "401": "missing or unknown bearer token",
    "403": "token's role may not do this",
    "404": "not found",
    "409": "conflict: stale token, duplicate id with another spec, "
    "idempotency key reused, already terminal",
    "413": "body, payload or batch too large",
    "429": "overloaded or queue full; see Retry-After",
    "503": "no leader / outcome unknown / shutting down; retry (same Idempotency-Key)",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


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
    def ok(self) -> int: ...
    @property
    def mutating(self) -> bool: ...
    @property
    def body(self) -> dict[str, str]: ...
    @property
    def query(self) -> dict[str, str]: ...
    @property
    def errors(self) -> tuple[str, ...]: ...


def _operation(r: RouteLike) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", r.path)
    ]
    params += [
        {
            "name": k,
            "in": "query",
            "required": False,
            "description": v,
            "schema": {"type": "string"},
        }
        for k, v in r.query.items()
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
    op: dict[str, Any] = {
        "summary": r.summary,
        "x-role": r.role,
        "parameters": params,
        "responses": {
            str(r.ok): {"description": "success"},
            **{
                code: {
                    "description": ERROR_TEXT.get(code, "error"),
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code in r.errors
            },
        },
    }
    if r.body:
        op["requestBody"] = {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {k: {"description": v} for k, v in r.body.items()},
                    }
                }
            }
        }
    return op


def document(routes: Iterable[RouteLike]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "raftsched",
            "version": "1",
            "description": "Every response carries X-Raft-Leader and X-Raft-Term. "
            "Followers proxy mutating requests to the leader; send X-Raft-No-Proxy: 1 "
            "to get 307 + Location instead.",
        },
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }

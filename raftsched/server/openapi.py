"""GET /v1/openapi.json: an OpenAPI 3.1 document generated from the API's route table.

Generated, not written by hand, so it lists exactly the routes the router serves, each with its
required role (`x-role`), whether a follower forwards it (`x-forwarded-to-leader`), request
body fields with their JSON types (unknown fields are refused: additionalProperties false),
query parameters, the success status and answer, and every error status with the common error
body. The route table lives in api_table.py; this module only renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

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


def _operation(r: RouteLike) -> dict[str, Any]:
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {
        str(r.ok): {"description": r.answer, "headers": RAFT_HEADERS},
        **{
            code: {
                "description": ERROR_TEXT.get(code, "error"),
                "headers": RAFT_HEADERS,
                "content": error_content,
            }
            for code in r.errors
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
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
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
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }

"""The API's error answers: one JSON shape, one mapping from every failure to a status.

Every error body is `{"error": {"code", "message", "details"}}` (SPEC §5). Its sources:
- `ApiError`: raised by the handlers themselves (bad JSON, bad query, auth, unknown route).
- `SchedError`: the scheduler's refusals and the parse functions' validation errors; each type
  carries its own `code` and `http_status` (raftsched/sched/errors.py), so the mapping is theirs
  (a 429 also gets Retry-After).
- The runtime's errors (raftsched/server/errors.py): no leader / outcome unknown / shutting down
  -> 503 + Retry-After, overloaded -> 429 + Retry-After, ClusterRefused -> its own 400/404/409.
  NotLeader is handled by the proxy hop before it gets here; if it does arrive (a proxied
  request that found no leader) it is a 503.
Anything else is a bug: 500 with an error body and one log line, never a traceback to the client.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from raftsched.sched import SchedError

from .errors import ClusterRefused, NoLeader, NotLeader, OutcomeUnknown, Overloaded, ShuttingDown

log = logging.getLogger("raftsched.api")

RETRY_AFTER_NO_LEADER_S = 1
RETRY_AFTER_FULL_S = 1


class ApiError(Exception):
    """An error answer the handler decided on: status, stable code, message, details, headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        assert 400 <= status <= 599, status
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid", f"{field}: {message}", {"field": field})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def to_api_error(exc: BaseException) -> ApiError | None:
    """The ApiError for a known failure, or None for a bug."""
    match exc:
        case ApiError():
            return exc
        case SchedError():
            # A full queue or table empties as work completes: say when to try again.
            retry = _retry_after(RETRY_AFTER_FULL_S) if exc.http_status == 429 else None
            return ApiError(exc.http_status, exc.code, exc.message, exc.details, retry)
        case ClusterRefused():
            return ApiError(exc.http_status, exc.code, exc.message)
        case Overloaded():
            return ApiError(
                429, "overloaded", str(exc), {"what": exc.what}, _retry_after(exc.retry_after_s)
            )
        case NotLeader():
            return ApiError(
                503,
                "no_leader",
                "this node is not the leader and cannot forward",
                {"leader_id": exc.leader_id},
                _retry_after(RETRY_AFTER_NO_LEADER_S),
            )
        case NoLeader():
            return ApiError(503, "no_leader", str(exc), {}, _retry_after(RETRY_AFTER_NO_LEADER_S))
        case OutcomeUnknown():
            advice = (
                ""
                if "idempotency" in str(exc).lower()
                else ("; retry with the same Idempotency-Key")
            )
            return ApiError(
                503,
                "outcome_unknown",
                f"{exc}{advice}",
                {},
                _retry_after(RETRY_AFTER_NO_LEADER_S),
            )
        case ShuttingDown():
            return ApiError(
                503, "shutting_down", str(exc), {}, _retry_after(RETRY_AFTER_NO_LEADER_S)
            )
        case web.HTTPRequestEntityTooLarge():
            return ApiError(
                413,
                "body_too_large",
                "request body too large",
                {"max_bytes": exc.max_size if hasattr(exc, "max_size") else None},
            )
        case web.HTTPNotFound():
            return ApiError(404, "no_route", "no such route")
        case web.HTTPMethodNotAllowed():
            return ApiError(
                405, "method_not_allowed", str(exc.reason), {"allowed": sorted(exc.allowed_methods)}
            )
        case _:
            return None


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def render(exc: BaseException, route: str) -> web.Response:
    """The error answer for `exc`; a bug is logged as one line (type, message, where)."""
    err = to_api_error(exc)
    if err is None:
        log.error("bug: %s %s: %s at %s", route, type(exc).__name__, exc, _where(exc))
        err = ApiError(500, "internal", "internal error (logged on the node)")
    return error_response(err.status, err.code, err.message, err.details, err.headers)

"""The hops every API handler shares: read the body, parse, propose, map the answer.

handler -> `read_json` (400 bad JSON / 413 oversize via client_max_size) -> a sched/parse.py
function (ValidationError -> 400 naming the field) -> `propose` (runtime.propose: returns only
after commit + fsync + apply; NotLeader is forwarded by the middleware) -> `answer` (Ok -> the
value, Refused -> the refusal's own status: 404, 409, 429...). Reads go through `read_point`:
linearizable by default (runtime.read_barrier, on followers too) or `?consistency=stale`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from raftsched.sched import Command, Ok, Refused, SchedulerState

from .api_runtime import RuntimeLike, plain
from .http_errors import ApiError, bad_request

RUNTIME_KEY = web.AppKey("runtime", RuntimeLike)
IDEMPOTENCY_HEADER = "Idempotency-Key"


def runtime_of(request: web.Request) -> RuntimeLike:
    return request.app[RUNTIME_KEY]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request, *, empty_ok: bool = True) -> dict[str, Any]:
    raw = await request.read()  # raises 413 past client_max_size
    if not raw.strip():
        if empty_ok:
            return {}
        raise bad_request("body", "a JSON object is required")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("body", f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise bad_request("body", "must be a JSON object")
    return value


def merge_path(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    """Put a path parameter into the body; a body that names another value is refused."""
    if field in body and body[field] != value:
        raise bad_request(field, "differs from the value in the path")
    body[field] = value
    return body


def idempotency_key(request: web.Request) -> str | None:
    return request.headers.get(IDEMPOTENCY_HEADER)


def answer(result: Ok | Refused) -> Any:
    if isinstance(result, Refused):
        raise result.error  # a SchedError: http_errors maps it by its own status
    return plain(result.value)


async def propose(request: web.Request, command: Command) -> Any:
    return answer(await runtime_of(request).propose(command))


async def read_point(request: web.Request) -> SchedulerState:
    """The state to read, after a linearizable read barrier unless ?consistency=stale."""
    consistency = request.query.get("consistency", "linearizable")
    runtime = runtime_of(request)
    if consistency == "linearizable":
        await runtime.read_barrier()
    elif consistency != "stale":
        raise bad_request("consistency", "must be linearizable or stale")
    return runtime.state


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(value, separators=(",", ":")),
        content_type="application/json",
    )


def query_int(
    request: web.Request, name: str, *, lo: int, hi: int, default: int | None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise bad_request(name, "must be a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request(name, f"must be between {lo} and {hi}")
    return value


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found", {"id": ident})

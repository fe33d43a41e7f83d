"""The hops every API handler shares: read the body, parse, propose, answer.

A mutating request reads, in named hops:
  handler -> `read_json` (400 bad JSON; 413 past the body limit, checked by the middleware
  from Content-Length before any byte is read, and by aiohttp's client_max_size while reading)
  -> a sched/parse.py function (ValidationError -> 400 naming the field; nothing proposed)
  -> `propose` (runtime.propose: the entry is committed on a majority, fsynced and applied
  before it returns; NotLeader makes the middleware forward the request to the leader)
  -> `answer` (Ok -> the state machine's value; Refused -> the refusal's own status: 404, 409,
  429...; the refusal was applied as a no-op on every replica, so it changed nothing).
Reads go through `read_point`: linearizable by default (runtime.read_barrier, which works on
followers) or `?consistency=stale` (this replica as it is).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from raftsched.sched import Command, Refused, Result, SchedulerState

from .api_runtime import RuntimeLike, plain
from .http_errors import ApiError, bad_request, to_api_error

RUNTIME_KEY = web.AppKey("runtime", RuntimeLike)
IDEMPOTENCY_HEADER = "Idempotency-Key"
_DIGITS = re.compile(r"[0-9]+")


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
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
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


def answer(result: Result) -> Any:
    """The state machine's answer as fresh JSON-ready data, or its refusal as an ApiError.

    Both may be the very objects of the idempotency table: the value is copied (`plain`) and
    the stored SchedError is never raised itself (raising would pin this request's frames
    to it through its __traceback__ for as long as the table keeps the entry)."""
    return plain(answer_shared(result))


def answer_shared(result: Result) -> Any:
    """`answer` without the copy, for a handler that only reads the value to build its own
    answer: it must not change it or hand it out (it may belong to the idempotency table)."""
    if isinstance(result, Refused):
        error = to_api_error(result.error)
        assert error is not None
        raise error
    return result.value


async def propose(request: web.Request, command: Command) -> Any:
    return answer(await runtime_of(request).propose(command))


async def propose_shared(request: web.Request, command: Command) -> Any:
    """`propose` answering the state machine's value itself (see `answer_shared`)."""
    return answer_shared(await runtime_of(request).propose(command))


async def read_point(request: web.Request) -> SchedulerState:
    """The state to read, after a linearizable read barrier unless ?consistency=stale."""
    consistency = request.query.get("consistency", "linearizable")
    runtime = runtime_of(request)
    if consistency == "linearizable":
        await runtime.read_barrier()
    elif consistency != "stale":
        raise bad_request("consistency", "must be linearizable or stale")
    return runtime.state


# One encoder for every answer (json.dumps with options builds a new one per call). ASCII
# output (ensure_ascii), so the body bytes need no charset work: the same bytes and the same
# Content-Type as `text=json.dumps(...)` gave.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=_ENCODER.encode(value).encode("ascii"),
        content_type="application/json",
        charset="utf-8",
    )


def check_query(request: web.Request, allowed: frozenset[str]) -> None:
    """Strict input for query strings too: an unknown or repeated parameter is a 400."""
    for name in request.query:
        if name not in allowed:
            raise bad_request(name, "unknown query parameter")
        if len(request.query.getall(name)) > 1:
            raise bad_request(name, "given more than once")


def query_str(
    request: web.Request, name: str, pattern: re.Pattern[str], max_chars: int
) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_chars or pattern.fullmatch(raw) is None:
        raise bad_request(name, f"must match {pattern.pattern} (at most {max_chars} characters)")
    return raw


def query_int(
    request: web.Request, name: str, *, lo: int, hi: int, default: int | None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if len(raw) > 19 or _DIGITS.fullmatch(raw) is None:
        raise bad_request(name, "must be a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request(name, f"must be between {lo} and {hi}")
    return value


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found", {"id": ident})

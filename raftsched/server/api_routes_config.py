"""Queue and schedule routes of SPEC §5: queues list/get/configure, schedules
put/list/get/delete/backfill.

PUT /v1/queues/{queue} is a partial update: fields the body leaves out keep their current
value (`null` means "no limit" for max_in_flight and "the cluster default" for lease_ms and
max_attempts). The state machine's ConfigureQueue does it (it records which fields were
given), so two concurrent partial updates never overwrite each other's fields.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftsched.sched import parse as p

from .api_common import (
    idempotency_key,
    json_response,
    merge_path,
    not_found,
    propose,
    read_json,
    read_point,
    runtime_of,
)
from .api_routes_jobs import limits_of
from .api_routes_leases import path_name


async def list_queues(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"queues": state.queue_docs()})


async def get_queue(request: web.Request) -> web.Response:
    name = path_name(request, "queue", "queue")
    state = await read_point(request)
    queue = state.queues.get(name)
    if queue is None:
        raise not_found("queue", name)
    return json_response({"queue": queue.doc()})


async def configure_queue(request: web.Request) -> web.Response:
    """A partial update, applied as one command: only the fields present change."""
    name = path_name(request, "queue", "queue")
    body = merge_path(await read_json(request), "queue", name)
    cmd = p.parse_configure_queue(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def put_schedule(request: web.Request) -> web.Response:
    name = path_name(request, "name", "name")
    body = merge_path(await read_json(request, empty_ok=False), "name", name)
    cmd = p.parse_put_schedule(body, limits_of(request), idempotency_key(request))
    value = await propose(request, cmd)
    return json_response(value, status=201 if value.get("created") else 200)


def _schedule_doc(request: web.Request, name: str) -> dict[str, Any] | None:
    state = runtime_of(request).state
    schedule = state.schedules.get(name)
    return None if schedule is None else schedule.doc(state.fire_records[name])


async def list_schedules(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"schedules": state.schedule_docs()})


async def get_schedule(request: web.Request) -> web.Response:
    name = path_name(request, "name", "name")
    await read_point(request)
    doc = _schedule_doc(request, name)
    if doc is None:
        raise not_found("schedule", name)
    return json_response({"schedule": doc})


async def delete_schedule(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request), "name", path_name(request, "name", "name"))
    cmd = p.parse_delete_schedule(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def backfill(request: web.Request) -> web.Response:
    body = merge_path(
        await read_json(request, empty_ok=False), "name", path_name(request, "name", "name")
    )
    cmd = p.parse_backfill(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))

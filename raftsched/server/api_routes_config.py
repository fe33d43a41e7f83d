"""Queue and schedule routes of SPEC §5: queues list/get/configure, schedules
put/list/get/delete/backfill.

PUT /v1/queues/{queue} is a partial update: fields the body leaves out keep their current
value (`null` means "no limit" for max_in_flight and "the cluster default" for lease_ms and
max_attempts). The state machine's ConfigureQueue replaces the whole config, so the handler
fills the missing fields from the leader's applied state; it holds one lock per node across
read + propose so two partial updates on the same leader cannot overwrite each other's fields.
(Across a leader change a concurrent update that was not yet committed fails with 503 anyway.)
"""

from __future__ import annotations

import asyncio
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

QUEUE_CONFIG_LOCK = web.AppKey("queue_config_lock", asyncio.Lock)
QUEUE_FIELDS = ("max_in_flight", "lease_ms", "max_attempts", "paused")


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
    name = path_name(request, "queue", "queue")
    body = merge_path(await read_json(request), "queue", name)
    limits = limits_of(request)
    p.parse_configure_queue(body, limits)  # refuse bad input before taking the lock
    async with request.app[QUEUE_CONFIG_LOCK]:
        queue = runtime_of(request).state.queues.get(name)
        if queue is not None:
            current = queue.config.to_plain()
            body = {**{k: current[k] for k in QUEUE_FIELDS if k not in body}, **body}
        cmd = p.parse_configure_queue(body, limits, idempotency_key(request))
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

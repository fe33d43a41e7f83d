"""Operator routes beyond SPEC §5's list, one per state-machine command that has no other route:
dead letters (requeue, purge), workflow status and cancel, the replicated scheduler settings,
and accepting a clock jump.

Same hops as every route (api_common.py): body -> parse -> propose -> answer; reads after the
read barrier. The answers are the state machine's (docs/scheduler.md "Answers").
"""

from __future__ import annotations

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
)
from .api_routes_jobs import limits_of
from .api_routes_leases import path_name


async def requeue_dead(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_requeue_dead(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def purge_dead(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_purge_dead(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def get_workflow(request: web.Request) -> web.Response:
    workflow_id = path_name(request, "id", "id")
    state = await read_point(request)
    status = state.workflow_status(workflow_id)
    if status is None:
        raise not_found("workflow", workflow_id)
    return json_response(status)


async def cancel_workflow(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request), "id", path_name(request, "id", "id"))
    cmd = p.parse_cancel_workflow(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def get_settings(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"settings": state.limits.to_plain()})


async def update_settings(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_update_settings(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def accept_clock_jump(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_accept_clock_jump(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))

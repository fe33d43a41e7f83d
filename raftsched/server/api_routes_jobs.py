"""Scheduler routes of SPEC §5: jobs, leases, queues, workers, schedules, workflows.

Each handler is the same few hops (api_common.py): body -> parse -> propose -> answer. Path
parameters are merged into the body before parsing so one parse function validates both
(a bad id in the path is a 400 naming `job_id`, `queue`, `worker_id` or `name`).
The lease long-poll proposes once; if nothing was leasable and `wait_ms` > 0 it waits on
`runtime.wait_for_work(queue, ...)` (woken by the apply of an entry that may have made a job
leasable: no polling) and proposes again, until work or the capped deadline. Only the first
proposal carries the Idempotency-Key: a keyed retry then gets the first answer, and later
rounds of the same poll are new leases (an empty keyed answer must not stick for the day).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from raftsched.sched import parse as p

from .api_common import (
    idempotency_key,
    json_response,
    merge_path,
    not_found,
    propose,
    query_int,
    read_json,
    read_point,
    runtime_of,
)
from .api_runtime import lease_wait_ms_max
from .http_errors import bad_request

MAX_LIST_LIMIT = 1_000
JOB_STATES = ("waiting", "scheduled", "pending", "leased", "succeeded", "dead", "cancelled")


def _limits(request: web.Request) -> Any:
    return runtime_of(request).state.limits


async def submit_job(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_job(body, _limits(request), idempotency_key(request))
    value = await propose(request, cmd)
    item = value["jobs"][0]
    doc = runtime_of(request).state.get_job(item["id"]) or item
    return json_response({"job": doc}, status=201 if item.get("created", True) else 200)


async def submit_batch(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_batch(body, _limits(request), idempotency_key(request))
    value = await propose(request, cmd)
    return json_response(value, status=201)


async def submit_workflow(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_workflow(body, _limits(request), idempotency_key(request))
    return json_response(await propose(request, cmd), status=201)


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    state = await read_point(request)
    doc = state.get_job(job_id)
    if doc is None:
        raise not_found("job", job_id)
    return json_response(doc)


async def list_jobs(request: web.Request) -> web.Response:
    queue = request.query.get("queue") or None
    state_name = request.query.get("state") or None
    if state_name is not None and state_name not in JOB_STATES:
        raise bad_request("state", f"must be one of {', '.join(JOB_STATES)}")
    limit = query_int(request, "limit", lo=1, hi=MAX_LIST_LIMIT, default=100)
    after = query_int(request, "after", lo=0, hi=2**63, default=None)
    assert limit is not None
    state = await read_point(request)
    page, nxt = state.list_jobs(queue, state_name, limit, after)
    return json_response({"jobs": page, "next_after": nxt})


def _job_command(kind: str) -> Any:
    parser = p.PARSERS[kind]

    async def handler(request: web.Request) -> web.Response:
        body = merge_path(await read_json(request), "job_id", request.match_info["id"])
        return json_response(
            await propose(request, parser(body, _limits(request), idempotency_key(request)))
        )

    handler.__name__ = kind
    return handler


cancel_job = _job_command("cancel")
heartbeat_lease = _job_command("heartbeat_lease")
complete_job = _job_command("complete")
fail_job = _job_command("fail")


async def lease(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    body = merge_path(await read_json(request), "queue", request.match_info["queue"])
    cmd = p.parse_lease(body, _limits(request), idempotency_key(request))
    wait_s = min(cmd.wait_ms, lease_wait_ms_max(runtime)) / 1000
    deadline = time.monotonic() + wait_s
    value = await propose(request, cmd)
    unkeyed = dataclasses.replace(cmd, idempotency_key=None)
    while not value.get("leases"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await runtime.wait_for_work(cmd.queue, remaining)
        value = await propose(request, unkeyed)
    return json_response(value)


async def list_queues(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"queues": state.queue_docs()})


async def configure_queue(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request), "queue", request.match_info["queue"])
    cmd = p.parse_configure_queue(body, _limits(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def worker_heartbeat(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request), "worker_id", request.match_info["id"])
    cmd = p.parse_worker_heartbeat(body, _limits(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def list_workers(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"workers": state.worker_docs()})


async def put_schedule(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request, empty_ok=False), "name", request.match_info["name"])
    cmd = p.parse_put_schedule(body, _limits(request), idempotency_key(request))
    value = await propose(request, cmd)
    return json_response(value, status=201 if value.get("created") else 200)


async def list_schedules(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"schedules": state.schedule_docs()})


async def delete_schedule(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request), "name", request.match_info["name"])
    cmd = p.parse_delete_schedule(body, _limits(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def backfill(request: web.Request) -> web.Response:
    body = merge_path(await read_json(request, empty_ok=False), "name", request.match_info["name"])
    cmd = p.parse_backfill(body, _limits(request), idempotency_key(request))
    return json_response(await propose(request, cmd))

"""Worker routes of SPEC §5: lease (with the long poll), lease heartbeat, complete, fail, the
batched report (many completes/fails in one entry), worker registration heartbeats and the
worker list.

Lease long poll. Mutating requests run on the leader, so the handler can look at the leader's
applied state for a hint: if the queue has no leasable job (or the worker no free capacity) it
does not propose an entry that would only answer "nothing"; it awaits
`runtime.wait_for_work(queue, remaining)`, which the apply of any entry that may have made a job
leasable wakes (no polling loop). The check and the wait are one synchronous step on the event
loop, so a wake-up cannot slip between them. When the hint says yes it proposes the Lease, and
answers what the state machine granted. After a proposal that granted nothing (another worker
was faster) it waits again before proposing, so it can never spin. An idle long poll therefore
writes nothing to the log; when the capped wait ends with nothing leasable it answers
`{"leases": []}` without an entry. Should `wait_for_work` return with no entry applied while
the hint still says no (a runtime whose wake-up is "the queue has pending jobs", when the
pending jobs are held back by max_in_flight or this worker's capacity), the handler backs
off for NO_PROGRESS_BACKOFF_S instead of spinning the event loop. `wait_ms` 0 always
proposes once (it also registers or refreshes the worker, like any lease).

Capacity freed elsewhere. When the queue has leasable jobs but the worker is full, what frees
its room is a complete, fail, cancel or expiry of one of ITS leases, on whatever queue that
lease is: the poll then also waits on the queues where the worker holds leases (their leased
count falls, which wakes their waiters). Those waits start as tasks, so before suspending the
handler checks that nothing was applied since it looked at the state; if something was, it
looks again instead of waiting.

At most `limits.max_long_polls` lease requests may wait at once on a node; past that a request
that would wait gets 429 + Retry-After (a bound, like every queue of the node).

Only the first proposal carries the Idempotency-Key: a keyed retry gets the first answer, and
later rounds of the same poll are new leases (an empty keyed answer must not stick for a day).

Each grant is the state machine's record (job_id, queue, payload, token, lease_expires_at,
attempt, max_attempts, timeout_ms, tags) plus `job`: the full job document (SPEC §5
`{leases: [{job, token, lease_expires_at}]}`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from raftsched.sched import Lease, SchedulerState
from raftsched.sched import parse as p

from .api_common import (
    idempotency_key,
    json_response,
    merge_path,
    propose,
    read_json,
    read_point,
    runtime_of,
)
from .api_routes_jobs import limits_of, path_job_id
from .api_runtime import lease_wait_ms_max, max_long_polls
from .errors import Overloaded
from .http_errors import bad_request

NO_PROGRESS_BACKOFF_S = 0.05
LONG_POLL_RETRY_AFTER_S = 1.0


@dataclass(slots=True)
class LongPolls:
    """Lease requests in this node's handler now; bounded by `limits.max_long_polls`."""

    waiting: int = 0


LONG_POLLS = web.AppKey("long_polls", LongPolls)


def path_name(request: web.Request, key: str, field: str) -> str:
    """A queue/worker/schedule name from the path; 400 naming `field` when malformed."""
    name = request.match_info[key]
    if len(name) > limits_of(request).max_id_chars or p.NAME_RE.fullmatch(name) is None:
        raise bad_request(field, f"must match {p.NAME_RE.pattern}")
    return name


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def leasable(state: SchedulerState, cmd: Lease) -> bool:
    """Would a Lease entry applied now grant something? (A hint: apply decides.)"""
    queue = state.queues.get(cmd.queue)
    if queue is None or queue.lease_room() <= 0:
        return False
    worker = state.workers.get(cmd.worker_id)
    return worker is None or worker.room() > 0


def capacity_queues(state: SchedulerState, cmd: Lease) -> list[str]:
    """The other queues whose completions could give this worker room, when room is what it
    lacks (the queue itself has leasable jobs); [] otherwise. Sorted: a stable order."""
    queue = state.queues.get(cmd.queue)
    worker = state.workers.get(cmd.worker_id)
    if queue is None or queue.lease_room() <= 0 or worker is None or worker.room() > 0:
        return []
    return sorted({job.queue for job in worker.leased.values()} - {cmd.queue})


async def _wait_for_work(request: web.Request, cmd: Lease, remaining_s: float) -> None:
    """Until an applied entry may have made a lease possible for this worker on `cmd.queue`,
    or `remaining_s` passed. Spurious wake-ups are fine: the caller checks again."""
    runtime = runtime_of(request)
    others = capacity_queues(runtime.state, cmd)
    if not others:
        # Registered before the first suspension (RuntimeLike.wait_for_work): no wake-up
        # can slip between the caller's check and this wait.
        await runtime.wait_for_work(cmd.queue, remaining_s)
        return
    looked_at = runtime.state.last_index
    waits = [
        asyncio.ensure_future(runtime.wait_for_work(q, remaining_s)) for q in [cmd.queue, *others]
    ]
    try:
        await asyncio.sleep(0)  # the waits' first steps (their registration) run first
        if runtime.state.last_index != looked_at:
            return  # applied meanwhile: the caller looks again
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _with_docs(state: SchedulerState, value: dict[str, Any]) -> dict[str, Any]:
    for grant in value["leases"]:
        grant["job"] = state.get_job(grant["job_id"])
    return value


async def lease(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    body = merge_path(await read_json(request), "queue", path_name(request, "queue", "queue"))
    cmd = p.parse_lease(body, limits_of(request), idempotency_key(request))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(cmd.wait_ms, lease_wait_ms_max(runtime)) / 1000
    must_wait = cmd.wait_ms > 0 and not leasable(runtime.state, cmd)
    polls = request.app[LONG_POLLS]
    if must_wait and polls.waiting >= max_long_polls(runtime):
        raise Overloaded(LONG_POLL_RETRY_AFTER_S, "lease long polls waiting")
    polls.waiting += 1
    try:
        return await _poll(request, cmd, deadline, must_wait=must_wait)
    finally:
        polls.waiting -= 1


async def _poll(
    request: web.Request, cmd: Lease, deadline: float, *, must_wait: bool
) -> web.Response:
    runtime = runtime_of(request)
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if must_wait:
            if remaining <= 0:
                return json_response({"leases": []})
            applied_before = runtime.state.last_index
            await _wait_for_work(request, cmd, remaining)
            if _client_gone(request):
                # Nobody would receive a lease granted now: it would sit leased until it
                # expires. (aiohttp does not cancel handlers when the client disconnects.)
                return json_response({"leases": []})
            must_wait = not leasable(runtime.state, cmd)
            if must_wait and runtime.state.last_index == applied_before:
                # Woken with nothing applied: a level-triggered wait (pending jobs, but no
                # room for this worker or under max_in_flight) would return at once forever.
                # Never spin the event loop: back off briefly before waiting again.
                await asyncio.sleep(min(NO_PROGRESS_BACKOFF_S, max(0.0, remaining)))
            continue
        value = await propose(request, cmd)
        if value["leases"] or deadline - loop.time() <= 0:
            return json_response(_with_docs(runtime.state, value))
        cmd = dataclasses.replace(cmd, idempotency_key=None)
        must_wait = True


def _lease_command(kind: str) -> Any:
    parser = p.PARSERS[kind]

    async def handler(request: web.Request) -> web.Response:
        limits = limits_of(request)
        body = merge_path(await read_json(request), "job_id", path_job_id(request, limits))
        return json_response(await propose(request, parser(body, limits, idempotency_key(request))))

    handler.__name__ = kind
    handler.__doc__ = f"POST /v1/jobs/{{id}}/...: the {kind} command; the state machine's answer."
    return handler


heartbeat_lease = _lease_command("heartbeat_lease")
complete_job = _lease_command("complete")
fail_job = _lease_command("fail")


async def report_batch(request: web.Request) -> web.Response:
    """POST /v1/jobs:complete: {"reports": [...]} -> 200 {"results": [...]}, one result per
    report (a refused report is a result, not an error of the request)."""
    cmd = p.parse_report_batch(
        await read_json(request, empty_ok=False), limits_of(request), idempotency_key(request)
    )
    return json_response(await propose(request, cmd))


async def worker_heartbeat(request: web.Request) -> web.Response:
    body = merge_path(
        await read_json(request, empty_ok=False), "worker_id", path_name(request, "id", "worker_id")
    )
    cmd = p.parse_worker_heartbeat(body, limits_of(request), idempotency_key(request))
    return json_response(await propose(request, cmd))


async def list_workers(request: web.Request) -> web.Response:
    state = await read_point(request)
    return json_response({"workers": state.worker_docs()})

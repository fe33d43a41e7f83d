"""The HTTP API of a node (SPEC §5): `build_app(runtime) -> aiohttp.web.Application`.

Theory of operation. One route table (`ROUTES`) names each route's method, path, handler,
required role, whether it mutates, its success status, body fields and errors; the router,
auth and GET /v1/openapi.json are all built from it, so they cannot drift apart.
A request passes one middleware, in this order:
1. Timing and headers: every response (errors too) carries X-Raft-Leader and X-Raft-Term from
   the runtime's status, and is counted in the HTTP metrics by route and status.
2. Auth (auth.py) when enabled in the config: 401 without/unknown token, 403 wrong role.
3. Forwarding (proxy.py): a mutating request on a node that is not the leader is proxied to
   the leader (307 with `X-Raft-No-Proxy: 1`; 503 + Retry-After when no leader is known). A
   NotLeader from `propose` (leadership moved mid-request) is forwarded the same way.
4. The handler's hops (api_common.py): body -> parse -> propose -> answer. A 2xx on a
   mutating route is only sent after the runtime says the entry is committed, fsynced, applied.
5. Errors (http_errors.py): every failure becomes the JSON error body; a bug is a 500 with a
   log line, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from . import api_routes_cluster as rc
from . import api_routes_jobs as rj
from . import auth, openapi
from .api_common import RUNTIME_KEY, json_response, runtime_of
from .api_runtime import RuntimeLike, auth_enabled, max_body_bytes, token_roles
from .errors import NotLeader
from .http_errors import render
from .metrics_http import CONTENT_TYPE, ApiMetrics
from .proxy import SESSION_KEY, forward

log = logging.getLogger("raftsched.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METRICS_KEY = web.AppKey("api_metrics", ApiMetrics)

COMMON_ERRORS = ("401", "403", "429", "503")
MUTATION_ERRORS = ("400", "401", "403", "409", "413", "429", "503")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: auth.Role
    summary: str
    ok: int = 200
    mutating: bool = False
    body: dict[str, str] = field(default_factory=dict)  # field -> description
    query: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = COMMON_ERRORS


_JOB_BODY = {
    "id": "string, optional (no '@', not 'auto-' prefixed)",
    "queue": "string, required",
    "payload": "any JSON value (bounded)",
    "priority": "int",
    "run_at": "int ms epoch",
    "delay_ms": "int",
    "max_attempts": "int",
    "backoff": "{initial_ms, multiplier, max_ms}",
    "lease_ms": "int",
    "timeout_ms": "int",
    "depends_on": "[job id]",
    "tags": "[string]",
}
_READ_Q = {"consistency": "linearizable (default) | stale"}


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi.document(ROUTES))


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs",
        rj.submit_job,
        "submit",
        "Submit one job",
        201,
        True,
        _JOB_BODY,
        errors=MUTATION_ERRORS,
    ),
    Route(
        "POST",
        "/v1/jobs:batch",
        rj.submit_batch,
        "submit",
        "Submit many jobs atomically",
        201,
        True,
        {"jobs": "[job] (1..max_batch_jobs)"},
        errors=MUTATION_ERRORS,
    ),
    Route(
        "GET",
        "/v1/jobs",
        rj.list_jobs,
        "read",
        "List jobs in submit order",
        query={
            **_READ_Q,
            "queue": "string",
            "state": "job state",
            "limit": "1..1000",
            "after": "next_after of the previous page",
        },
        errors=("400", *COMMON_ERRORS),
    ),
    Route(
        "GET",
        "/v1/jobs/{id}",
        rj.get_job,
        "read",
        "One job document",
        query=_READ_Q,
        errors=("400", "404", *COMMON_ERRORS),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/cancel",
        rj.cancel_job,
        "submit",
        "Cancel a job",
        mutating=True,
        body={"reason": "string, optional"},
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/heartbeat",
        rj.heartbeat_lease,
        "worker",
        "Extend a lease",
        mutating=True,
        body={"token": "int", "extend_ms": "int, optional"},
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/complete",
        rj.complete_job,
        "worker",
        "Complete a lease",
        mutating=True,
        body={"token": "int", "result": "any JSON value"},
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/fail",
        rj.fail_job,
        "worker",
        "Fail a lease",
        mutating=True,
        body={"token": "int", "error": "any JSON value", "retryable": "bool (default true)"},
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/lease",
        rj.lease,
        "worker",
        "Lease up to max_jobs jobs; long-polls up to wait_ms (capped)",
        mutating=True,
        body={
            "worker_id": "string",
            "max_jobs": "int (default 1)",
            "wait_ms": "int (0..60000, capped by lease_wait_ms_max)",
        },
        errors=MUTATION_ERRORS,
    ),
    Route(
        "GET",
        "/v1/queues",
        rj.list_queues,
        "read",
        "Queues with config and counts by state",
        query=_READ_Q,
    ),
    Route(
        "PUT",
        "/v1/queues/{queue}",
        rj.configure_queue,
        "admin",
        "Configure a queue",
        mutating=True,
        body={"max_in_flight": "int", "lease_ms": "int", "max_attempts": "int", "paused": "bool"},
        errors=MUTATION_ERRORS,
    ),
    Route(
        "POST",
        "/v1/workers/{id}/heartbeat",
        rj.worker_heartbeat,
        "worker",
        "Register a worker or refresh its liveness",
        mutating=True,
        body={"capacity": "int", "queues": "[string]", "ttl_ms": "int, optional"},
        errors=MUTATION_ERRORS,
    ),
    Route("GET", "/v1/workers", rj.list_workers, "read", "Registered workers", query=_READ_Q),
    Route(
        "PUT",
        "/v1/schedules/{name}",
        rj.put_schedule,
        "admin",
        "Create (201) or replace (200) a cron schedule",
        200,
        True,
        {
            "cron": "5/6-field cron",
            "timezone": "IANA name (default UTC)",
            "template": "job template",
            "misfire": "skip | fire_once | fire_all",
            "misfire_cap": "int",
            "misfire_grace_ms": "int",
            "paused": "bool",
        },
        errors=MUTATION_ERRORS,
    ),
    Route("GET", "/v1/schedules", rj.list_schedules, "read", "Cron schedules", query=_READ_Q),
    Route(
        "DELETE",
        "/v1/schedules/{name}",
        rj.delete_schedule,
        "admin",
        "Delete a schedule",
        mutating=True,
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/backfill",
        rj.backfill,
        "admin",
        "Create the fires of a past interval",
        mutating=True,
        body={"from": "int ms epoch", "to": "int ms epoch"},
        errors=(*MUTATION_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/workflows",
        rj.submit_workflow,
        "submit",
        "Submit a DAG of jobs atomically (cycle -> 400 naming it)",
        201,
        True,
        {"id": "workflow id", "jobs": "[job with id]"},
        errors=MUTATION_ERRORS,
    ),
    Route("GET", "/v1/cluster", rc.get_cluster, "read", "This node's view of the cluster"),
    Route(
        "POST",
        "/v1/cluster/members",
        rc.add_member,
        "admin",
        "Add a node (as learner, promoted when caught up)",
        202,
        True,
        {"node_id": "int", "peer_addr": "host:port", "http_url": "http(s)://host:port"},
        errors=MUTATION_ERRORS,
    ),
    Route(
        "DELETE",
        "/v1/cluster/members/{id}",
        rc.remove_member,
        "admin",
        "Remove a node",
        mutating=True,
        errors=MUTATION_ERRORS,
    ),
    Route(
        "POST",
        "/v1/cluster/leader",
        rc.transfer_leader,
        "admin",
        "Transfer leadership (to: node id, optional)",
        202,
        True,
        {"to": "int, optional"},
        errors=MUTATION_ERRORS,
    ),
    Route(
        "POST",
        "/v1/cluster/snapshot",
        rc.snapshot_now,
        "admin",
        "Take a snapshot now",
        mutating=True,
        errors=MUTATION_ERRORS,
    ),
    Route(
        "GET",
        "/v1/cluster/backup",
        rc.backup,
        "admin",
        "Download a consistent snapshot (sha256 in X-Backup-Sha256)",
    ),
    Route("GET", "/v1/openapi.json", _openapi, "read", "This API's OpenAPI document"),
    Route("GET", "/metrics", _metrics, "read", "Prometheus text format"),
    Route("GET", "/healthz", rc.healthz, "open", "Process is up", errors=()),
    Route(
        "GET",
        "/readyz",
        rc.readyz,
        "open",
        "A leader is known, applied caught up, disk healthy (else 503)",
        errors=("503",),
    ),
)
# Backup is streamed from the leader's snapshot: forward it like a mutating request.
_LEADER_ONLY_READS = frozenset({"/v1/cluster/backup"})


def _raft_headers(runtime: RuntimeLike) -> dict[str, str]:
    try:
        st = runtime.status()
        leader, term = getattr(st, "leader_id", None), getattr(st, "term", 0)
    except Exception:
        return {}
    return {"X-Raft-Leader": "" if leader is None else str(leader), "X-Raft-Term": str(term)}


def _is_leader(runtime: RuntimeLike) -> tuple[bool, str | None]:
    st = runtime.status()
    role = str(getattr(st, "role", "")).lower()
    return role.endswith("leader"), getattr(st, "leader_http_url", None)


def _make_middleware(routes: dict[tuple[str, str], Route], auth_on: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        runtime = runtime_of(request)
        info = request.match_info.route.resource
        template = info.canonical if info is not None else "unmatched"
        route = routes.get((request.method, template))
        try:
            if route is None:
                resp = await handler(request)  # aiohttp's 404/405 raise into the except below
            else:
                if auth_on:
                    auth.check(
                        request.headers.get("Authorization"), route.role, token_roles(runtime)
                    )
                resp = await _dispatch(request, handler, route, runtime)
        except web.HTTPRedirection as redirect:
            resp = web.Response(status=redirect.status, headers=redirect.headers)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            resp = render(exc, template)
        if not resp.prepared:
            for k, v in _raft_headers(runtime).items():
                resp.headers.setdefault(k, v)
        request.app[METRICS_KEY].observe(
            template, request.method, resp.status, time.perf_counter() - started
        )
        return resp

    return middleware


async def _dispatch(
    request: web.Request, handler: Handler, route: Route, runtime: RuntimeLike
) -> web.StreamResponse:
    if route.mutating or route.path in _LEADER_ONLY_READS:
        leader, url = _is_leader(runtime)
        if not leader:
            return await forward(request, url)
    try:
        return await handler(request)
    except NotLeader as exc:
        return await forward(request, exc.leader_http_url)


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SESSION_KEY] = aiohttp.ClientSession()
    yield
    await app[SESSION_KEY].close()


def build_app(runtime: RuntimeLike) -> web.Application:
    """The node's HTTP application; the runtime's node process serves it."""
    table = {(r.method, r.path): r for r in ROUTES}
    assert len(table) == len(ROUTES), "duplicate route"
    app = web.Application(
        client_max_size=max_body_bytes(runtime),
        middlewares=[_make_middleware(table, auth_enabled(runtime))],
    )
    app[RUNTIME_KEY] = runtime
    app[METRICS_KEY] = ApiMetrics(runtime)
    app.cleanup_ctx.append(_session_ctx)
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    return app

"""The HTTP API of a node (SPEC §5): `build_app(runtime) -> aiohttp.web.Application`.

Theory of operation. One route table (api_table.py) names each route's method, path, handler,
role, whether a follower forwards it, body, answer and errors; the router, auth and
GET /v1/openapi.json are all built from it, so they cannot drift apart. Every request passes
one middleware, in this order:
1. Size: a Content-Length above the node's `max_body_bytes` is a 413 before any byte of the
   body is read (a chunked body is cut off at the same bound while it is read).
2. Auth (auth.py), when the config turns it on: 401 without/unknown token, 403 wrong role.
   Then the query string: a parameter the route table does not name for the route is a 400.
3. Forwarding (proxy.py): on a follower a route marked `forward` (every mutating one but the
   local snapshot) is proxied to the leader, or answered 307 + Location when the client sends
   `X-Raft-No-Proxy: 1`; 503 + Retry-After when no leader is known. A NotLeader raised later
   (by propose when leadership moved mid-request, or by a read barrier this node cannot serve
   itself) is forwarded the same way.
4. The handler's hops (api_common.py): body -> parse -> propose -> commit -> apply -> answer.
   A 2xx on a mutating route is only sent after the runtime says the entry is committed on a
   majority, fsynced and applied.
5. Errors (http_errors.py): every failure becomes the JSON error body; a bug is a 500 and one
   log line, never a traceback to the client.
Every response, errors and redirects included, carries X-Raft-Leader and X-Raft-Term and is
counted in the HTTP metrics by route template and status.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import auth, openapi
from .api_common import RUNTIME_KEY, check_query, runtime_of
from .api_routes_leases import LONG_POLLS, LongPolls
from .api_routes_meta import METRICS_KEY, OPENAPI_KEY
from .api_runtime import (
    RuntimeLike,
    auth_enabled,
    max_body_bytes,
    token_roles,
)
from .api_table import ROUTES, Handler, Route
from .errors import NotLeader
from .http_errors import ApiError, render
from .metrics_http import ApiMetrics
from .proxy import SESSION_KEY, forward, new_session

UNMATCHED_ROUTE = "unmatched"  # one metrics label for every unknown path (bounded labels)


def _raft_headers(runtime: RuntimeLike) -> dict[str, str]:
    st = runtime.status()
    leader = st.leader_id
    return {"X-Raft-Leader": "" if leader is None else str(leader), "X-Raft-Term": str(st.term)}


def _leader_url(runtime: RuntimeLike) -> str | None:
    """The leader's HTTP URL if known (asked only on a node that does not lead)."""
    return getattr(runtime.status(), "leader_http_url", None)


def _body_too_large(limit: int, length: int | None = None) -> ApiError:
    size = "request body" if length is None else f"request body of {length} bytes"
    return ApiError(
        413, "body_too_large", f"{size} is over the limit of {limit} bytes", {"max_bytes": limit}
    )


def _too_large(request: web.Request, limit: int) -> ApiError | None:
    length = request.content_length
    return _body_too_large(limit, length) if length is not None and length > limit else None


def _make_middleware(
    routes: dict[tuple[str, str], Route], auth_on: bool, body_limit: int
) -> Middleware:
    query_names = {key: frozenset(f.name for f in r.query) for key, r in routes.items()}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        runtime = runtime_of(request)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else UNMATCHED_ROUTE
        # HEAD is a GET without the body (aiohttp drops it): the GET's role and rules apply.
        key = ("GET" if request.method == "HEAD" else request.method, template)
        route = routes.get(key)
        try:
            refusal = _too_large(request, body_limit)
            if refusal is not None:
                raise refusal
            if route is None:
                resp = await handler(request)  # aiohttp's 404/405: rendered below
            else:
                if auth_on:
                    auth.check(
                        request.headers.get("Authorization"), route.role, token_roles(runtime)
                    )
                if request.query_string:  # most requests have none: nothing to check
                    check_query(request, query_names[key])
                resp = await _dispatch(request, handler, route, runtime)
        except web.HTTPRedirection as redirect:
            resp = web.Response(status=redirect.status, headers=redirect.headers)
        except web.HTTPRequestEntityTooLarge:  # a body without Content-Length, cut off
            resp = render(_body_too_large(body_limit), template)
        except Exception as exc:  # CancelledError (client gone) is a BaseException: it passes
            resp = render(exc, f"{request.method} {template}")
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
    if route.forward and not runtime.is_leader():
        return await forward(request, _leader_url(runtime))
    try:
        return await handler(request)
    except NotLeader as exc:
        return await forward(request, exc.leader_http_url)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION_KEY] = new_session()
    yield
    await app[SESSION_KEY].close()


def build_app(runtime: RuntimeLike) -> web.Application:
    """The node's HTTP application; the runtime's node process serves it."""
    table = {(r.method, r.path): r for r in ROUTES}
    assert len(table) == len(ROUTES), "duplicate route"
    body_limit = max_body_bytes(runtime)
    app = web.Application(
        client_max_size=body_limit,
        middlewares=[_make_middleware(table, auth_enabled(runtime), body_limit)],
    )
    app[RUNTIME_KEY] = runtime
    app[METRICS_KEY] = ApiMetrics(runtime)
    app[OPENAPI_KEY] = openapi.document(ROUTES)
    app[LONG_POLLS] = LongPolls()
    app.cleanup_ctx.append(_client_session)
    for r in ROUTES:
        if r.method == "GET":
            app.router.add_get(r.path, r.handler, allow_head=True)
        else:
            app.router.add_route(r.method, r.path, r.handler)
    return app

"""Followers forward to the leader: proxy the request, or answer 307 when asked not to.

A follower that receives a mutating request (or learns from `propose` that it is not the
leader) sends the same method, path, query, body and headers (Authorization,
Idempotency-Key, Content-Type) to the leader's HTTP URL and relays the answer. The forwarded
request carries `X-Raft-Proxied: 1`; a node that receives a proxied request and is not the
leader answers 503 instead of forwarding again, so a stale view of the leader can never make
requests loop. A client that sends `X-Raft-No-Proxy: 1` gets `307 Temporary Redirect` with
`Location` set to the same path on the leader, and follows it itself.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .http_errors import RETRY_AFTER_NO_LEADER_S, ApiError

PROXIED_HEADER = "X-Raft-Proxied"
NO_PROXY_HEADER = "X-Raft-No-Proxy"
FORWARDED_HEADERS = ("Authorization", "Idempotency-Key", "Content-Type", "Accept")
RELAYED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Retry-After",
    "Location",
    "WWW-Authenticate",
    "X-Raft-Leader",
    "X-Raft-Term",
    "Content-Disposition",
    "X-Backup-Sha256",
)
PROXY_TIMEOUT_S = 60.0  # a forwarded request's budget, plus the lease long-poll cap
PROXY_MAX_CONNECTIONS = 1024  # to the leader, pooled; a bound like every other

SESSION_KEY = web.AppKey("proxy_session", aiohttp.ClientSession)


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=PROXY_MAX_CONNECTIONS),
        auto_decompress=False,  # relay the leader's bytes as they are
    )


def no_leader() -> ApiError:
    return ApiError(
        503,
        "no_leader",
        "no leader is known; retry shortly",
        {},
        {"Retry-After": str(RETRY_AFTER_NO_LEADER_S)},
    )


async def forward(
    request: web.Request, leader_url: str | None, *, extra_timeout_s: float = 0.0
) -> web.Response:
    """Relay `request` to the leader at `leader_url` (or redirect the client there)."""
    if not leader_url:
        raise no_leader()
    target = leader_url.rstrip("/") + request.path_qs
    if request.headers.get(NO_PROXY_HEADER) == "1":
        raise web.HTTPTemporaryRedirect(target)
    if request.headers.get(PROXIED_HEADER):
        raise no_leader()  # the leader we were sent to is not one: never forward twice
    body = await request.read()
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    headers[PROXIED_HEADER] = "1"
    session = request.app[SESSION_KEY]
    try:
        async with session.request(
            request.method,
            target,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S + extra_timeout_s),
        ) as resp:
            payload = await resp.read()
            out = {h: resp.headers[h] for h in RELAYED_HEADERS if h in resp.headers}
            return web.Response(status=resp.status, body=payload, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        retry = {"Retry-After": str(RETRY_AFTER_NO_LEADER_S)}
        failed = f"forwarding to the leader failed ({type(exc).__name__})"
        if request.method == "GET":  # a read changes nothing: just no leader to answer it
            raise ApiError(503, "no_leader", failed, {"leader_url": leader_url}, retry) from None
        # The leader may have applied the request: the outcome is unknown to us.
        raise ApiError(
            503,
            "outcome_unknown",
            f"{failed}; retry with the same Idempotency-Key",
            {"leader_url": leader_url},
            retry,
        ) from None

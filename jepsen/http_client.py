"""One HTTP request to one node, and what its outcome means for the history.

Theory of operation. A history needs, for every request, one of three verdicts
(interfaces.md): "ok" (it happened: a 2xx), "fail" (it certainly did not happen) or "info"
(it may have happened). `NodeApi.call` makes exactly one attempt (no retries: a retry would
hide an indeterminate outcome) and classifies:

- a 2xx is ok; a 4xx is fail (a refusal changes nothing: 409 stale token, 404, 429, ...);
- 503 `no_leader` / `not_ready` is fail: nothing was proposed. Any other 5xx of a mutating
  request is info (`outcome_unknown`: the entry may commit later; `shutting_down`: a
  pending proposal was abandoned);
- no connection (refused, unreachable) is fail: not one byte was sent. Every request uses a
  fresh connection (`force_close`), so a dead keep-alive connection can never turn a request
  that was never sent into a "reset after send";
- a timeout, a reset or a disconnect after the request left is info for a mutating request;
- a read changes nothing, so every non-answer of a GET is fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp

from .cluster import Tokens

Verdict = Literal["ok", "fail", "info"]
DEFINITE_503_CODES: Final = frozenset({"no_leader", "not_ready"})


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    status: int | None  # None: no HTTP answer
    body: Any  # the decoded JSON answer (None without one)
    error: str | None  # why it failed or is unknown (an error code or an exception name)

    @property
    def code(self) -> str | None:
        """The API error code of an error answer (`stale_token`, `not_found`, ...)."""
        if isinstance(self.body, dict):
            err = self.body.get("error")
            if isinstance(err, dict) and isinstance(err.get("code"), str):
                code: str = err["code"]
                return code
        return None


def classify(status: int, body: Any, *, mutating: bool) -> Outcome:
    """The verdict of an HTTP answer (see the module docstring)."""
    probe = Outcome("ok", status, body, None)
    if 200 <= status < 300:
        return probe
    code = probe.code or f"http_{status}"
    if 400 <= status < 500:
        return Outcome("fail", status, body, code)
    if not mutating or (status == 503 and code in DEFINITE_503_CODES):
        return Outcome("fail", status, body, code)
    return Outcome("info", status, body, code)


def new_session() -> aiohttp.ClientSession:
    # force_close: one connection per request, so "could not connect" always means "not sent".
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=256))


class NodeApi:
    """Requests to the cluster's nodes by id, with the token of the right role."""

    def __init__(
        self, session: aiohttp.ClientSession, urls: dict[int, str], tokens: Tokens
    ) -> None:
        self.session = session
        self.urls = urls
        self.tokens = tokens

    async def call(
        self,
        node_id: int,
        method: str,
        path: str,
        *,
        role: str,
        timeout_s: float,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        mutating = method != "GET"
        headers = {"Authorization": f"Bearer {self.tokens.of(role)}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                self.urls[node_id] + path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The connection never opened: not one byte of the request was sent.
            return Outcome("fail", None, None, f"connect: {type(exc).__name__}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            name = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return Outcome("info" if mutating else "fail", None, None, name)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return classify(status, parsed, mutating=mutating)

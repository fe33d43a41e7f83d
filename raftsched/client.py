"""Python client for the raftsched HTTP API (SPEC §5): `AsyncClient` (aiohttp) and `Client` (sync).

Theory of operation: every route is one method that builds a request and parses the answer
into a dataclass. `call` sends it to the node believed to be the leader with
`X-Raft-No-Proxy: 1`, so a follower answers 307 instead of relaying it; the 307 moves that
belief to the `Location` given (later calls go straight to the leader); a 503, a connection
error, a timeout or a redirect loop (stale leader views) moves it to the next node and retries
with backoff until the call's deadline. A request whose retry could apply twice carries an
`Idempotency-Key` (the caller's, or one generated per call) and every retry reuses it, so a
retry after an unknown outcome can never apply twice. The worker's per-job calls (lease
heartbeat, complete, fail, worker heartbeat) carry none: the cluster acknowledges a retry with
the same token again and changes nothing, and every stored key takes a place in the cluster's
bounded idempotency table (a 10-minute window) that busy workers would fill. Errors
become typed exceptions (`NotFound`, `Conflict`, `StaleToken`, `Overloaded`, `NoLeader`,
`Unauthorized`, `BadRequest` with its `field`). `Client` runs the same `AsyncClient` on a
private event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

T = TypeVar("T")
JSON = Any  # a decoded JSON value

DEFAULT_TIMEOUT_S = 30.0
NO_PROXY_HEADER = "X-Raft-No-Proxy"
MAX_REDIRECTS = 5  # consecutive 307s before backing off
RESETTABLE_QUEUE_FIELDS = ("max_in_flight", "lease_ms", "max_attempts")
# Answers that mean "the job's lease is gone": the worker must stop, not report.
LEASE_LOST_CODES = frozenset({"stale_token", "lease_expired", "not_leased"})


# -- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer from the cluster: HTTP status, the API's `error.code`, message, details."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details)


class BadRequest(ApiError):
    """400/413: the input is wrong; `field` names the offending field when the server says."""

    @property
    def field(self) -> str:
        return str(self.details.get("field", ""))


class Unauthorized(ApiError):
    """401/403: missing, unknown or insufficient bearer token."""


class NotFound(ApiError):
    """404: no such job, schedule, queue or member."""


class Conflict(ApiError):
    """409: conflicting state (duplicate id with another spec, job already terminal, ...)."""


class StaleToken(Conflict):
    """409 on a lease operation: the token is not the job's current lease (lease lost)."""


class Overloaded(ApiError):
    """429: queue full or node overloaded; `retry_after_s` from the Retry-After header."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any],
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    """The cluster could not be reached or answered 503 until the call's deadline."""


class NoLeader(Unavailable):
    """503: no leader (election in progress, or no quorum) until the call's deadline."""


def _error_for(status: int, body: JSON, retry_after_s: float | None) -> ApiError:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code", "error"))
        message = str(err.get("message", ""))
        raw_details = err.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    else:
        code, message, details = "http_error", str(body)[:500], {}
    if status in (400, 413):
        return BadRequest(status, code, message, details)
    if status in (401, 403):
        return Unauthorized(status, code, message, details)
    if status == 404:
        return NotFound(status, code, message, details)
    if status == 409:
        cls = StaleToken if code in LEASE_LOST_CODES else Conflict
        return cls(status, code, message, details)
    if status == 429:
        return Overloaded(status, code, message, details, retry_after_s)
    if status == 503:
        return NoLeader(status, code, message, details)
    return ApiError(status, code, message, details)


class _Retry(Exception):
    """Internal: leave the response context and go to the backoff step of `call`."""


# -- results -----------------------------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Job:
    """A job document (SPEC §4; times in ms since the epoch). `raw` keeps every field."""

    id: str
    queue: str
    state: str
    attempts: int
    token: int
    payload: JSON
    result: JSON
    error: JSON
    reason: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data.get("id", "")),
            queue=str(data.get("queue", "")),
            state=str(data.get("state", "")),
            attempts=int(data.get("attempts") or 0),
            token=int(data.get("token") or 0),
            payload=data.get("payload"),
            result=data.get("result"),
            error=data.get("error"),
            reason=data.get("reason"),
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "dead", "cancelled")


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_after: str | None


@dataclass(frozen=True)
class Lease:
    """A leased job: what a worker needs to run it and to report with the right token."""

    job_id: str
    queue: str
    token: int
    attempt: int
    max_attempts: int
    payload: JSON
    timeout_ms: int | None
    lease_expires_at: int | None
    leased_at: int | None  # when the cluster granted this lease (its `leased` event), ms
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        # Accept the grant flat ({job_id, payload, token, ...}) or nested ({job: {...}, token}).
        nested = data.get("job")
        job: dict[str, Any] = nested if isinstance(nested, dict) else {}
        merged: dict[str, Any] = {**job, **{k: v for k, v in data.items() if k != "job"}}
        return cls(
            job_id=str(merged.get("job_id") or merged.get("id") or ""),
            queue=str(merged.get("queue", "")),
            token=int(merged.get("token") or 0),
            attempt=int(merged.get("attempt") or merged.get("attempts") or 0),
            max_attempts=int(merged.get("max_attempts") or 0),
            payload=merged.get("payload"),
            timeout_ms=_int_or_none(merged.get("timeout_ms")),
            lease_expires_at=_int_or_none(merged.get("lease_expires_at")),
            leased_at=_leased_at(job, merged.get("token")),
            raw=dict(data),  # the grant as answered: flat fields plus `job`, the document
        )


@dataclass(frozen=True)
class Workflow:
    """A submitted workflow: its id and its jobs' documents (in the order given)."""

    id: str
    jobs: list[Job]


def _leased_at(job: Mapping[str, Any], token: Any) -> int | None:
    """The time of the job's `leased` event with this token (the lease's start)."""
    events = job.get("events")
    for event in reversed(events if isinstance(events, list) else []):
        if isinstance(event, dict) and (event.get("state"), event.get("token")) == (
            "leased",
            token,
        ):
            return _int_or_none(event.get("at"))
    return None


@dataclass(frozen=True)
class Call:
    """One request: method, path, JSON body, query. A `keyed` request carries an
    Idempotency-Key (the caller's, or one generated per call) reused by every retry."""

    method: str
    path: str
    body: JSON = None
    params: Mapping[str, str] | None = None
    keyed: bool = False
    idempotency_key: str | None = None
    timeout_s: float | None = None


def _jobs_of(body: JSON) -> list[Job]:
    items = body.get("jobs", []) if isinstance(body, dict) else body
    return [Job.from_json(j) for j in items if isinstance(j, dict)]


def _job_of(body: JSON) -> Job:
    if isinstance(body, dict) and isinstance(body.get("job"), dict):
        return Job.from_json(body["job"])
    if isinstance(body, dict) and isinstance(body.get("jobs"), list) and len(body["jobs"]) == 1:
        return Job.from_json(body["jobs"][0])
    return Job.from_json(body if isinstance(body, dict) else {})


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def split_cluster(spec: str | Sequence[str]) -> list[str]:
    """Node base URLs from "http://a:1,http://b:2" or a list; bare host:port gets http://."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    urls = [u.strip().rstrip("/") for u in items if u.strip()]
    if not urls:
        raise ValueError("no cluster URL given (use --cluster or RAFTSCHED_CLUSTER)")
    return [u if "://" in u else f"http://{u}" for u in urls]


# -- async client ------------------------------------------------------------------------------


class AsyncClient:
    """aiohttp client. Use `async with AsyncClient(urls) as c:` or call `close()`."""

    def __init__(
        self,
        cluster: str | Sequence[str],
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        request_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = split_cluster(cluster)
        self.token = token
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self._preferred = 0
        self._leader_url: str | None = None
        self.last_headers: dict[str, str] = {}  # of the last answer (e.g. a backup's digest)
        self._session: aiohttp.ClientSession | None = None
        self._rng = rng or random.Random()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _target(self) -> str:
        return self._leader_url or self.urls[self._preferred % len(self.urls)]

    def _rotate(self) -> None:
        self._leader_url = None
        self._preferred += 1

    async def call(self, c: Call) -> JSON:
        """Send `c`, following the leader and retrying until the call's deadline."""
        key = c.idempotency_key or (str(uuid.uuid4()) if c.keyed else None)
        # No-Proxy: a follower answers 307 + Location instead of relaying the request, so
        # the client learns the leader and talks to it directly (no second HTTP hop).
        headers = {"Accept": "application/json", NO_PROXY_HEADER: "1"}
        if key:
            headers["Idempotency-Key"] = key
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        per_request = max(self.request_timeout_s, c.timeout_s or 0.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s + (c.timeout_s or 0.0)
        delay = 0.05
        redirects = 0
        last: ApiError | None = None
        while True:
            base = self._target()
            retry_after: float | None = None
            try:
                async with self._session_().request(
                    c.method,
                    base + c.path,
                    headers=headers,
                    params=c.params,
                    data=None if c.body is None else json.dumps(c.body),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=per_request),
                ) as resp:
                    if resp.status in (307, 308) and "Location" in resp.headers:
                        self._leader_url = _origin(resp.headers["Location"])
                        redirects += 1
                        if redirects <= MAX_REDIRECTS:
                            continue
                        # Nodes disagree on the leader (an election is settling): back off.
                        redirects = 0
                        last = NoLeader(307, "redirect_loop", "leader views disagree", {})
                        self._rotate()
                        raise _Retry()
                    raw = await resp.read()
                    self.last_headers = dict(resp.headers)
                    ctype = resp.headers.get("Content-Type", "")
                    if "json" in ctype and raw:
                        body: JSON = json.loads(raw)
                    else:
                        body = raw
                    if resp.status < 400:
                        return body
                    ra = resp.headers.get("Retry-After")
                    retry_after = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
                    err = _error_for(
                        resp.status,
                        body if not isinstance(body, bytes) else body.decode("utf-8", "replace"),
                        retry_after,
                    )
                    if resp.status != 503:
                        raise err
                    last = err
                    self._rotate()
            except _Retry:
                pass
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                text = str(exc) or type(exc).__name__
                last = Unavailable(0, "unreachable", f"{base}: {text}", {"url": base})
                self._rotate()
            now = loop.time()
            wait = min(max(retry_after or 0.0, delay), 1.0)
            if now + wait >= deadline:
                assert last is not None
                raise last
            await asyncio.sleep(wait * (0.5 + self._rng.random()))
            delay = min(delay * 2, 1.0)

    # -- jobs --

    async def submit(
        self,
        queue: str,
        payload: JSON = None,
        *,
        id: str | None = None,
        priority: int | None = None,
        run_at: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Mapping[str, Any] | None = None,
        lease_ms: int | None = None,
        timeout_ms: int | None = None,
        depends_on: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        body = _drop_none(
            {
                "id": id,
                "queue": queue,
                "payload": payload,
                "priority": priority,
                "run_at": run_at,
                "delay_ms": delay_ms,
                "max_attempts": max_attempts,
                "backoff": dict(backoff) if backoff else None,
                "lease_ms": lease_ms,
                "timeout_ms": timeout_ms,
                "depends_on": list(depends_on) if depends_on else None,
                "tags": list(tags) if tags else None,
            }
        )
        return _job_of(
            await self.call(
                Call("POST", "/v1/jobs", body, keyed=True, idempotency_key=idempotency_key)
            )
        )

    async def submit_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        brief: bool = False,
    ) -> list[Job]:
        """Submit many jobs, all or none. `brief=True` asks for the brief answer
        (`?answer=brief`): each Job then carries only id and state (`raw` is the record
        {id, state, seq, created}); the cluster skips rendering the documents."""
        body = {"jobs": [dict(j) for j in jobs]}
        params = {"answer": "brief"} if brief else None
        call = Call(
            "POST",
            "/v1/jobs:batch",
            body,
            params=params,
            keyed=True,
            idempotency_key=idempotency_key,
        )
        return _jobs_of(await self.call(call))

    async def submit_workflow(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Submit a DAG of jobs atomically (every job needs an `id`). The API requires a
        workflow id: one is generated (`wf-<uuid4>`) when the caller gives none."""
        workflow_id = id or f"wf-{uuid.uuid4()}"
        body = {"id": workflow_id, "jobs": [dict(j) for j in jobs]}
        ans = await self.call(
            Call("POST", "/v1/workflows", body, keyed=True, idempotency_key=idempotency_key)
        )
        got = ans.get("workflow") if isinstance(ans, dict) else None
        return Workflow(str(got or workflow_id), _jobs_of(ans))

    async def get_job(self, job_id: str, *, consistency: str | None = None) -> Job:
        params = {"consistency": consistency} if consistency else None
        return _job_of(await self.call(Call("GET", f"/v1/jobs/{job_id}", params=params)))

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> JobPage:
        params = {
            k: str(v)
            for k, v in _drop_none(
                {"queue": queue, "state": state, "limit": limit, "after": after}
            ).items()
        }
        body = await self.call(Call("GET", "/v1/jobs", params=params))
        nxt = body.get("next_after") or body.get("next") if isinstance(body, dict) else None
        return JobPage(_jobs_of(body), str(nxt) if nxt else None)

    async def cancel(
        self, job_id: str, *, reason: str | None = None, idempotency_key: str | None = None
    ) -> Job:
        return _job_of(
            await self.call(
                Call(
                    "POST",
                    f"/v1/jobs/{job_id}/cancel",
                    _drop_none({"reason": reason}),
                    keyed=True,
                    idempotency_key=idempotency_key,
                )
            )
        )

    async def wait(self, job_id: str, *, timeout_s: float = 60.0, poll_s: float = 0.05) -> Job:
        """Poll the job until it is terminal or `timeout_s` passes (then TimeoutError)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = await self.get_job(job_id)
            if job.terminal:
                return job
            if loop.time() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s}s")
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 1.0)

    # -- leases (workers) --

    async def lease(
        self, queue: str, *, worker_id: str, max_jobs: int = 1, wait_ms: int = 0
    ) -> list[Lease]:
        body = {"worker_id": worker_id, "max_jobs": max_jobs, "wait_ms": wait_ms}
        ans = await self.call(
            Call(
                "POST",
                f"/v1/queues/{queue}/lease",
                body,
                keyed=True,
                timeout_s=wait_ms / 1000 + 10.0,
            )
        )
        items = ans.get("leases", []) if isinstance(ans, dict) else []
        return [Lease.from_json(x) for x in items if isinstance(x, dict)]

    async def heartbeat_lease(
        self, job_id: str, token: int, *, extend_ms: int | None = None
    ) -> int | None:
        body = _drop_none({"token": token, "extend_ms": extend_ms})
        ans = await self.call(Call("POST", f"/v1/jobs/{job_id}/heartbeat", body))
        return _int_or_none(ans.get("lease_expires_at")) if isinstance(ans, dict) else None

    async def complete(self, job_id: str, token: int, result: JSON = None) -> JSON:
        return await self.call(
            Call(
                "POST",
                f"/v1/jobs/{job_id}/complete",
                {"token": token, "result": result},
            )
        )

    async def fail(self, job_id: str, token: int, error: JSON, *, retryable: bool = True) -> JSON:
        return await self.call(
            Call(
                "POST",
                f"/v1/jobs/{job_id}/fail",
                {"token": token, "error": error, "retryable": retryable},
            )
        )

    async def report_batch(self, reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """POST /v1/jobs:complete: many completes (`{job_id, token, result}`) and fails
        (`{job_id, token, error, retryable}`) in one request and one log entry. Returns one
        result per report, in order: `{job_id, ok: True, state}` or `{job_id, error: {code,
        message, details}}` (a stale token refuses that report only). No Idempotency-Key:
        each report is idempotent by its token, so a retried batch is acknowledged again."""
        ans = await self.call(Call("POST", "/v1/jobs:complete", {"reports": list(reports)}))
        items = ans.get("results", []) if isinstance(ans, dict) else []
        return [dict(x) for x in items if isinstance(x, dict)]

    # -- queues, workers --

    async def queues(self) -> JSON:
        return await self.call(Call("GET", "/v1/queues"))

    async def get_queue(self, queue: str) -> JSON:
        """One queue's document `{name, config, counts}` (NotFound if it never existed)."""
        ans = await self.call(Call("GET", f"/v1/queues/{queue}"))
        return ans.get("queue", ans) if isinstance(ans, dict) else ans

    async def configure_queue(
        self,
        queue: str,
        *,
        max_in_flight: int | None = None,
        lease_ms: int | None = None,
        max_attempts: int | None = None,
        paused: bool | None = None,
        reset: Sequence[str] = (),
    ) -> JSON:
        """A partial update: only the fields given change. `reset` names fields to set back
        to null (max_in_flight: no limit; lease_ms / max_attempts: the cluster default)."""
        unknown = set(reset) - set(RESETTABLE_QUEUE_FIELDS)
        if unknown:
            raise ValueError(f"reset: {sorted(unknown)} not in {RESETTABLE_QUEUE_FIELDS}")
        body: dict[str, Any] = _drop_none(
            {
                "max_in_flight": max_in_flight,
                "lease_ms": lease_ms,
                "max_attempts": max_attempts,
                "paused": paused,
            }
        )
        for name in reset:
            if name in body:
                raise ValueError(f"reset: {name} is also given a value")
            body[name] = None
        return await self.call(Call("PUT", f"/v1/queues/{queue}", body, keyed=True))

    async def worker_heartbeat(
        self,
        worker_id: str,
        *,
        capacity: int,
        queues: Sequence[str],
        ttl_ms: int | None = None,
        incarnation: str | None = None,
    ) -> JSON:
        """`incarnation`: a string unique per worker process run; a new one releases the
        leases the worker's previous run still held at once."""
        body = _drop_none(
            {
                "capacity": capacity,
                "queues": list(queues),
                "ttl_ms": ttl_ms,
                "incarnation": incarnation,
            }
        )
        return await self.call(Call("POST", f"/v1/workers/{worker_id}/heartbeat", body))

    async def workers(self) -> JSON:
        return await self.call(Call("GET", "/v1/workers"))

    # -- schedules --

    async def put_schedule(
        self,
        name: str,
        *,
        cron: str,
        template: Mapping[str, Any],
        timezone: str | None = None,
        misfire: str | None = None,
        **extra: Any,
    ) -> JSON:
        body = _drop_none(
            {
                "cron": cron,
                "template": dict(template),
                "timezone": timezone,
                "misfire": misfire,
                **extra,
            }
        )
        return await self.call(Call("PUT", f"/v1/schedules/{name}", body, keyed=True))

    async def schedules(self) -> JSON:
        return await self.call(Call("GET", "/v1/schedules"))

    async def get_schedule(self, name: str) -> JSON:
        """One schedule's document (NotFound when absent)."""
        ans = await self.call(Call("GET", f"/v1/schedules/{name}"))
        return ans.get("schedule", ans) if isinstance(ans, dict) else ans

    async def delete_schedule(self, name: str) -> JSON:
        return await self.call(Call("DELETE", f"/v1/schedules/{name}", keyed=True))

    async def backfill(self, name: str, *, start_ms: int, end_ms: int) -> JSON:
        return await self.call(
            Call(
                "POST",
                f"/v1/schedules/{name}/backfill",
                {"from": start_ms, "to": end_ms},
                keyed=True,
            )
        )

    # -- cluster --

    async def cluster(self, *, leader: bool = False) -> JSON:
        """The answering node's view (GET /v1/cluster is not forwarded). `leader=True`: the
        leader's view, which alone knows each member's match index and lag."""
        view = await self.call(Call("GET", "/v1/cluster"))
        url = view.get("leader_http_url") if isinstance(view, dict) else None
        if leader and view.get("role") != "leader" and isinstance(url, str) and url:
            self._leader_url = url.rstrip("/")
            view = await self.call(Call("GET", "/v1/cluster"))
        return view

    async def add_member(self, node_id: int, *, peer_addr: str, http_url: str) -> JSON:
        body = {"node_id": node_id, "peer_addr": peer_addr, "http_url": http_url}
        return await self.call(Call("POST", "/v1/cluster/members", body, keyed=True))

    async def remove_member(self, node_id: int) -> JSON:
        return await self.call(Call("DELETE", f"/v1/cluster/members/{node_id}", keyed=True))

    async def transfer_leader(self, to: int | None = None) -> JSON:
        return await self.call(Call("POST", "/v1/cluster/leader", {"to": to}, keyed=True))

    async def snapshot(self) -> JSON:
        return await self.call(Call("POST", "/v1/cluster/snapshot", {}, keyed=True))

    async def backup(self) -> bytes:
        body = await self.call(Call("GET", "/v1/cluster/backup", timeout_s=120.0))
        if isinstance(body, bytes):
            return body
        return json.dumps(body).encode()

    async def health(self) -> JSON:
        return await self.call(Call("GET", "/healthz"))


# -- sync client -------------------------------------------------------------------------------


class Client:
    """The blocking client: the same methods as `AsyncClient`, run on a private event loop.
    Not for use inside a running event loop (use `AsyncClient` there)."""

    def __init__(
        self,
        cluster: str | Sequence[str],
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        request_timeout_s: float = 10.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._a = AsyncClient(
            cluster, token=token, timeout_s=timeout_s, request_timeout_s=request_timeout_s
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._a.close())
            self._loop.close()

    @property
    def urls(self) -> list[str]:
        return self._a.urls

    @property
    def last_headers(self) -> dict[str, str]:
        return self._a.last_headers

    def call(self, c: Call) -> JSON:
        return self._run(self._a.call(c))

    def submit(self, queue: str, payload: JSON = None, **kw: Any) -> Job:
        return self._run(self._a.submit(queue, payload, **kw))

    def submit_batch(self, jobs: Sequence[Mapping[str, Any]], **kw: Any) -> list[Job]:
        return self._run(self._a.submit_batch(jobs, **kw))

    def submit_workflow(self, jobs: Sequence[Mapping[str, Any]], **kw: Any) -> Workflow:
        return self._run(self._a.submit_workflow(jobs, **kw))

    def get_job(self, job_id: str, **kw: Any) -> Job:
        return self._run(self._a.get_job(job_id, **kw))

    def list_jobs(self, **kw: Any) -> JobPage:
        return self._run(self._a.list_jobs(**kw))

    def cancel(self, job_id: str, **kw: Any) -> Job:
        return self._run(self._a.cancel(job_id, **kw))

    def wait(self, job_id: str, **kw: Any) -> Job:
        return self._run(self._a.wait(job_id, **kw))

    def lease(self, queue: str, **kw: Any) -> list[Lease]:
        return self._run(self._a.lease(queue, **kw))

    def heartbeat_lease(self, job_id: str, token: int, **kw: Any) -> int | None:
        return self._run(self._a.heartbeat_lease(job_id, token, **kw))

    def complete(self, job_id: str, token: int, result: JSON = None) -> JSON:
        return self._run(self._a.complete(job_id, token, result))

    def fail(self, job_id: str, token: int, error: JSON, **kw: Any) -> JSON:
        return self._run(self._a.fail(job_id, token, error, **kw))

    def report_batch(self, reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._run(self._a.report_batch(reports))

    def queues(self) -> JSON:
        return self._run(self._a.queues())

    def get_queue(self, queue: str) -> JSON:
        return self._run(self._a.get_queue(queue))

    def configure_queue(self, queue: str, **kw: Any) -> JSON:
        return self._run(self._a.configure_queue(queue, **kw))

    def worker_heartbeat(self, worker_id: str, **kw: Any) -> JSON:
        return self._run(self._a.worker_heartbeat(worker_id, **kw))

    def workers(self) -> JSON:
        return self._run(self._a.workers())

    def put_schedule(self, name: str, **kw: Any) -> JSON:
        return self._run(self._a.put_schedule(name, **kw))

    def schedules(self) -> JSON:
        return self._run(self._a.schedules())

    def get_schedule(self, name: str) -> JSON:
        return self._run(self._a.get_schedule(name))

    def delete_schedule(self, name: str) -> JSON:
        return self._run(self._a.delete_schedule(name))

    def backfill(self, name: str, **kw: Any) -> JSON:
        return self._run(self._a.backfill(name, **kw))

    def cluster(self, *, leader: bool = False) -> JSON:
        return self._run(self._a.cluster(leader=leader))

    def add_member(self, node_id: int, **kw: Any) -> JSON:
        return self._run(self._a.add_member(node_id, **kw))

    def remove_member(self, node_id: int) -> JSON:
        return self._run(self._a.remove_member(node_id))

    def transfer_leader(self, to: int | None = None) -> JSON:
        return self._run(self._a.transfer_leader(to))

    def snapshot(self) -> JSON:
        return self._run(self._a.snapshot())

    def backup(self) -> bytes:
        return self._run(self._a.backup())

    def health(self) -> JSON:
        return self._run(self._a.health())

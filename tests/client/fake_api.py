"""A small in-process HTTP API for unit tests of the client, worker and CLI.

It speaks SPEC §5 over real HTTP (aiohttp, a free loopback port, its own thread) with the
answer shapes of the real API (raftsched/server/api_routes_*.py: full job documents with
`created`, `{job}` for cancel, `{workflow, jobs}`, lease grants carrying `job`, partial queue
PUT, 201/200 by creation) and keeps state in the real `SchedulerState`, applying each parsed
command at the next index with the wall clock as the stamp, so leases, tokens and refusals
behave like the cluster's. There is no Raft: it is one "leader". Test knobs: `fail_next`
(statuses to answer first, e.g. 503), `fail_on` (the same for one path), `redirect_to`
(answer 307 to another base URL), `requests` (method, path, Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from typing import Any

from aiohttp import web

from raftsched.sched import Command, Ok, SchedError, SchedulerState, parse_command
from raftsched.sched.parse import parse_submit_job

JSONDict = dict[str, Any]
QUEUE_FIELDS = ("max_in_flight", "lease_ms", "max_attempts", "paused")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeApi:
    def __init__(self, token: str | None = None) -> None:
        self.state = SchedulerState()
        self.index = 0
        self.token = token
        self.fail_next: list[int] = []
        self.fail_on: dict[str, list[int]] = {}  # path -> statuses to answer first
        self.redirect_to: str | None = None
        self.no_proxy_seen = False  # a request asked for 307 instead of proxying
        self.requests: list[tuple[str, str, str | None]] = []
        self.batched_reports: list[list[str]] = []  # job ids of each POST /v1/jobs:complete
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None

    # -- lifecycle --

    def __enter__(self) -> FakeApi:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "fake API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/v1/jobs", self._submit)
        r.add_post("/v1/jobs:batch", self._submit_batch)
        r.add_post("/v1/jobs:complete", self._report_batch)
        r.add_post("/v1/workflows", self._workflow)
        r.add_get("/v1/jobs", self._list)
        r.add_get("/v1/jobs/{id}", self._get)
        r.add_post("/v1/jobs/{id}/cancel", self._cancel)
        r.add_post("/v1/jobs/{id}/heartbeat", self._cmd("heartbeat_lease", "job_id"))
        r.add_post("/v1/jobs/{id}/complete", self._cmd("complete", "job_id"))
        r.add_post("/v1/jobs/{id}/fail", self._cmd("fail", "job_id"))
        r.add_post("/v1/queues/{id}/lease", self._lease)
        r.add_get("/v1/queues", self._queues)
        r.add_get("/v1/queues/{id}", self._get_queue)
        r.add_put("/v1/queues/{id}", self._configure_queue)
        r.add_post("/v1/workers/{id}/heartbeat", self._cmd("worker_heartbeat", "worker_id"))
        r.add_get("/v1/workers", self._workers)
        r.add_put("/v1/schedules/{id}", self._put_schedule)
        r.add_get("/v1/schedules", self._schedules)
        r.add_get("/v1/schedules/{id}", self._get_schedule)
        r.add_delete("/v1/schedules/{id}", self._cmd("delete_schedule", "name"))
        r.add_post("/v1/schedules/{id}/backfill", self._cmd("backfill", "name"))
        r.add_get("/v1/cluster", self._cluster)
        r.add_get("/v1/cluster/backup", self._backup)
        r.add_get("/healthz", self._health)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    # -- plumbing --

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Idempotency-Key")))
        self.no_proxy_seen = self.no_proxy_seen or request.headers.get("X-Raft-No-Proxy") == "1"
        by_path = self.fail_on.get(request.path)
        if self.fail_next or by_path:
            status = by_path.pop(0) if by_path else self.fail_next.pop(0)
            return web.json_response(
                {"error": {"code": "no_leader", "message": "injected", "details": {}}},
                status=status,
                headers={"Retry-After": "0"},
            )
        if self.redirect_to:
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path_qs)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "missing or unknown bearer token", {})
        try:
            resp: web.StreamResponse = await handler(request)
        except SchedError as exc:
            return _error(exc.http_status, exc.code, exc.message, exc.details)
        return resp

    async def _apply(self, kind: str, body: JSONDict, key: str | None) -> Any:
        if kind == "submit_one":
            cmd: Command = parse_submit_job(body, idempotency_key=key)
        else:
            cmd = parse_command(kind, body, idempotency_key=key)
        self.index += 1
        result = self.state.apply(cmd, self.index, int(time.time() * 1000))
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        if isinstance(result, Ok):
            return result.value
        raise result.error

    async def _body(self, request: web.Request) -> JSONDict:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        assert isinstance(body, dict)
        return body

    def _cmd(self, kind: str, path_field: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            body = await self._body(request)
            body[path_field] = request.match_info["id"]
            value = await self._apply(kind, body, request.headers.get("Idempotency-Key"))
            return web.json_response(value)

        return handler

    # -- routes --

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        value = await self._apply("submit_one", body, request.headers.get("Idempotency-Key"))
        doc = self.state.get_job(value["jobs"][0]["id"])
        return web.json_response({"job": doc}, status=201 if value["jobs"][0]["created"] else 200)

    def _docs(self, items: list[JSONDict]) -> list[JSONDict]:
        """Full documents with the record's `created` flag, like the real API."""
        docs = []
        for item in items:
            doc = self.state.get_job(item["id"])
            assert doc is not None
            docs.append({**doc, "created": item.get("created", True)})
        return docs

    async def _submit_batch(self, request: web.Request) -> web.Response:
        value = await self._apply(
            "submit_jobs", await self._body(request), request.headers.get("Idempotency-Key")
        )
        brief = request.query.get("answer") == "brief"  # the records, like the real API
        docs = [dict(item) for item in value["jobs"]] if brief else self._docs(value["jobs"])
        return web.json_response(
            {"jobs": docs}, status=201 if any(d["created"] for d in docs) else 200
        )

    async def _report_batch(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        reports = body.get("reports")
        if isinstance(reports, list):
            self.batched_reports.append(
                [str(r.get("job_id")) for r in reports if isinstance(r, dict)]
            )
        value = await self._apply("report_batch", body, request.headers.get("Idempotency-Key"))
        return web.json_response(value)

    async def _workflow(self, request: web.Request) -> web.Response:
        value = await self._apply(
            "submit_workflow", await self._body(request), request.headers.get("Idempotency-Key")
        )
        return web.json_response(
            {"workflow": value["workflow"], "jobs": self._docs(value["jobs"])}, status=201
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        body["job_id"] = request.match_info["id"]
        value = await self._apply("cancel", body, request.headers.get("Idempotency-Key"))
        return web.json_response({"job": self.state.get_job(value["id"])})

    async def _configure_queue(self, request: web.Request) -> web.Response:
        """A partial update, like the real API: fields left out keep their value."""
        body = await self._body(request)
        name = request.match_info["id"]
        body["queue"] = name
        queue = self.state.queues.get(name)
        if queue is not None:
            current = queue.config.to_plain()
            body = {**{k: current[k] for k in QUEUE_FIELDS if k not in body}, **body}
        value = await self._apply("configure_queue", body, request.headers.get("Idempotency-Key"))
        return web.json_response(value)

    async def _get_queue(self, request: web.Request) -> web.Response:
        queue = self.state.queues.get(request.match_info["id"])
        if queue is None:
            return _error(404, "not_found", f"queue {request.match_info['id']!r} not found", {})
        return web.json_response({"queue": queue.doc()})

    async def _put_schedule(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        body["name"] = request.match_info["id"]
        value = await self._apply("put_schedule", body, request.headers.get("Idempotency-Key"))
        return web.json_response(value, status=201 if value.get("created") else 200)

    async def _get_schedule(self, request: web.Request) -> web.Response:
        name = request.match_info["id"]
        schedule = self.state.schedules.get(name)
        if schedule is None:
            return _error(404, "not_found", f"schedule {name!r} not found", {})
        return web.json_response({"schedule": schedule.doc(self.state.fire_records[name])})

    async def _get(self, request: web.Request) -> web.Response:
        await self._apply("tick", {}, None)
        doc = self.state.get_job(request.match_info["id"])
        if doc is None:
            return _error(404, "not_found", f"no job {request.match_info['id']}", {})
        return web.json_response(doc)

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        after = q.get("after")
        page, nxt = self.state.list_jobs(
            q.get("queue"),
            q.get("state"),
            int(q.get("limit", "100")),
            int(after) if after else None,
        )
        return web.json_response({"jobs": page, "next_after": nxt})

    async def _lease(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        body["queue"] = request.match_info["id"]
        wait_ms = int(body.get("wait_ms", 0))
        body["wait_ms"] = 0
        key = request.headers.get("Idempotency-Key")
        deadline = time.monotonic() + wait_ms / 1000
        assert self._changed is not None
        while True:
            value = await self._apply("lease", body, key)
            key = None  # a retry within the long poll is a new command
            if value["leases"] or time.monotonic() >= deadline:
                for grant in value["leases"]:  # the real API adds the full job document
                    grant["job"] = self.state.get_job(grant["job_id"])
                return web.json_response(value)
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait(), max(0.0, min(0.05, deadline - time.monotonic()))
                    )

    async def _queues(self, request: web.Request) -> web.Response:
        return web.json_response({"queues": self.state.queue_docs()})

    async def _workers(self, request: web.Request) -> web.Response:
        await self._apply("tick", {}, None)
        return web.json_response({"workers": self.state.worker_docs()})

    async def _schedules(self, request: web.Request) -> web.Response:
        return web.json_response({"schedules": self.state.schedule_docs()})

    async def _cluster(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "node_id": 1,
                "role": "leader",
                "term": 1,
                "leader_id": 1,
                "commit_index": self.index,
                "applied_index": self.index,
                "members": [
                    {
                        "node_id": 1,
                        "voter": True,
                        "http_url": self.url,
                        "match_index": self.index,
                        "lag": 0,
                    }
                ],
            }
        )

    async def _backup(self, request: web.Request) -> web.Response:
        return web.Response(body=self.state.snapshot(), content_type="application/octet-stream")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


def _error(status: int, code: str, message: str, details: Any) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": dict(details)}}, status=status
    )

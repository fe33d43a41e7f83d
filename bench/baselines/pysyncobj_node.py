"""One node of the pysyncobj baseline: an aiohttp server in front of a `ReplicatedQueue`.

    python -m bench.baselines.pysyncobj_node --node-id 1 --raft 127.0.0.1:7001 \
        --http 127.0.0.1:8001 --peer 2=127.0.0.1:7002,http://127.0.0.1:8002 ... \
        --data-dir DIR [--journal] [--no-batch]

Theory of operation. Two threads: pysyncobj's own tick thread (its Raft, sockets and the
apply of committed entries) and this process's asyncio loop (HTTP; uvloop when importable, as
raftsched's nodes). A request on the leader becomes one replicated call; the callback runs in
pysyncobj's thread right after the apply, renders the answer there (so it reads the state as
that entry left it) and hands it to the loop with `call_soon_threadsafe`. A follower answers
every write with 307 to the leader's URL (raftsched's followers do the same when the client
asks, and its client always asks), so the benchmarks talk to the leader directly as they do
with raftsched.

The routes are the subset of raftsched's API (SPEC §5) that the benchmarks and the raftsched
worker use, with the same bodies and answers: POST /v1/jobs, /v1/jobs:batch,
/v1/queues/{q}/lease (with the long poll), /v1/jobs/{id}/complete|fail|heartbeat,
/v1/jobs:complete, /v1/workers/{id}/heartbeat; GET /v1/cluster and /v1/queues/{q}; and
GET /v1/debug/digest (applied index and a hash of the state, to compare the replicas). So the
same driver (bench/cluster.py, bench/jobs_e2e.py) and the same `raftsched worker` run against
both systems.

Durability: pysyncobj's journal (--journal) writes each entry into an mmap'd file and never
fsyncs it before answering, the equivalent of raftsched's `--fsync never`; without --journal
the log is in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pysyncobj import SyncObj, SyncObjConf

from bench.baselines.pysyncobj_queue import LEASE_MS_DEFAULT, Job, ReplicatedQueue

REPLICATION_TIMEOUT_S = 10.0
LEASE_WAIT_MS_MAX = 30_000
MAX_BATCH_JOBS = 10_000
FAIL_REASONS = {
    1: "queue_full",
    2: "missing_leader",
    3: "discarded",
    4: "not_leader",
    5: "leader_changed",
    6: "request_denied",
    7: "unknown_outcome",
}


class Unavailable(Exception):
    """The replicated call failed (no leader, lost leadership, timeout): answer 503."""


def now_ms() -> int:
    return int(time.time() * 1000)


def error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return web.json_response(body, status=status)


class Node:
    def __init__(self, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.node_id: int = args.node_id
        self.loop = loop
        self.http_urls: dict[str, str] = {args.raft: f"http://{args.http}"}
        self.node_ids: dict[str, int] = {args.raft: args.node_id}
        partners = []
        for spec in args.peer:
            node_id, rest = spec.split("=", 1)
            raft_addr, http_url = rest.split(",", 1)
            partners.append(raft_addr)
            self.http_urls[raft_addr] = http_url
            self.node_ids[raft_addr] = int(node_id)
        # Leases waiting for jobs: queue -> event. Read from pysyncobj's thread (a dict read
        # under the GIL), written only on the loop.
        self.waiting: dict[str, asyncio.Event] = {}
        self.queue = ReplicatedQueue(self._on_submitted)
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = SyncObjConf(
            # The journal needs the dump beside it: pysyncobj drops compacted entries from the
            # journal, so a node restarted without the dump has lost the state before them.
            journalFile=str(data_dir / "journal.bin") if args.journal else None,
            fullDumpFile=str(data_dir / "dump.bin") if args.journal else None,
            # Dumps in this process, not in a forked child: the child's CPU would escape the
            # bench's CPU-per-job figure (and a fork of a threaded process is fragile).
            useFork=False,
            # Batched appends (pysyncobj's default) wait for the next tick (autoTickPeriod) to
            # send; without batching a proposal wakes the tick thread at once.
            appendEntriesUseBatch=not args.no_batch,
            dynamicMembershipChange=False,
        )
        self.sync = SyncObj(args.raft, partners, conf=conf, consumers=[self.queue])

    # -- bridging pysyncobj's thread and the loop ---------------------------------------

    def _on_submitted(self, queue: str) -> None:
        event = self.waiting.get(queue)
        if event is not None:
            self.loop.call_soon_threadsafe(event.set)

    async def call(self, render: Callable[[Any], Any], method: Any, *args: Any) -> Any:
        """Propose one command; `render` runs in pysyncobj's thread on the apply's result."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def settle(value: Any, failure: str | None) -> None:
            if fut.done():
                return
            if failure is None:
                fut.set_result(value)
            else:
                fut.set_exception(Unavailable(failure))

        def callback(result: Any, err: int) -> None:
            # Runs in pysyncobj's thread: nothing may raise out of here into its tick loop.
            value, failure = None, FAIL_REASONS.get(err, str(err)) if err else None
            if err == 0:
                try:
                    value = render(result)
                except Exception as exc:  # reported to the request instead
                    failure = f"rendering the answer failed: {exc!r}"
            self.loop.call_soon_threadsafe(settle, value, failure)

        method(*args, callback=callback)
        return await asyncio.wait_for(fut, REPLICATION_TIMEOUT_S)

    # -- leadership ---------------------------------------------------------------------

    def leader_addr(self) -> str | None:
        leader = self.sync._getLeader()
        return None if leader is None else str(leader.address)

    def is_leader(self) -> bool:
        return bool(self.sync._isLeader())

    def not_leader(self, request: web.Request) -> web.Response | None:
        """None on the leader; else a 307 to the leader (503 while there is none)."""
        if self.is_leader():
            return None
        addr = self.leader_addr()
        if addr is None or addr not in self.http_urls:
            return error(503, "no_leader", "no leader known")
        location = self.http_urls[addr] + request.path_qs
        return web.Response(status=307, headers={"Location": location})

    # -- routes -------------------------------------------------------------------------

    async def get_cluster(self, request: web.Request) -> web.Response:
        addr = self.leader_addr()
        return web.json_response(
            {
                "node_id": self.node_id,
                "role": "leader" if self.is_leader() else "follower",
                "leader_id": self.node_ids.get(addr) if addr else None,
                "leader_url": self.http_urls.get(addr) if addr else None,
                "commit_index": int(self.sync.raftCommitIndex),
                "applied_index": int(self.sync.raftLastApplied),
            }
        )

    async def get_queue(self, request: web.Request) -> web.Response:
        name = request.match_info["queue"]
        counts = self.queue.machine.counts.get(name)
        if counts is None:
            return error(404, "not_found", f"no queue {name}")
        return web.json_response({"queue": {"name": name, "counts": dict(counts)}})

    async def get_digest(self, request: web.Request) -> web.Response:
        """This replica's applied index and state hash (bench/baselines/http_systems.py
        compares them across nodes after a run). Read while pysyncobj's thread may apply:
        a concurrent change answers 503 and the caller asks again."""
        applied = int(self.sync.raftLastApplied)
        try:
            digest = self.queue.machine.digest()
        except RuntimeError:  # a dict changed size under the iteration
            return error(503, "busy", "the state changed while hashing")
        if int(self.sync.raftLastApplied) != applied:
            return error(503, "busy", "an entry was applied while hashing")
        return web.json_response({"applied_index": applied, "digest": digest})

    async def submit(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("queue"), str):
            return error(400, "bad_request", "a job needs a queue (string)")
        try:
            created, doc = await self.call(
                lambda out: (out[0][0], out[0][1].doc()), self.queue.submit, [body], now_ms()
            )
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))
        return web.json_response({"job": doc}, status=201 if created else 200)

    async def submit_batch(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list) or not 1 <= len(jobs) <= MAX_BATCH_JOBS:
            return error(400, "bad_request", f"jobs: a list of 1..{MAX_BATCH_JOBS} jobs")
        if not all(isinstance(j, dict) and isinstance(j.get("queue"), str) for j in jobs):
            return error(400, "bad_request", "every job needs a queue (string)")

        def render(out: list[tuple[bool, Job]]) -> tuple[bool, list[dict[str, Any]]]:
            return any(c for c, _ in out), [job.doc() for _, job in out]

        try:
            created, docs = await self.call(render, self.queue.submit, jobs, now_ms())
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))
        return web.json_response({"jobs": docs}, status=201 if created else 200)

    async def lease(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        queue = request.match_info["queue"]
        body = await request.json()
        worker_id = str(body.get("worker_id", ""))
        max_jobs = max(1, int(body.get("max_jobs", 1)))
        wait_ms = min(int(body.get("wait_ms", 0)), LEASE_WAIT_MS_MAX)
        deadline = self.loop.time() + wait_ms / 1000

        def render(jobs: list[Job]) -> list[dict[str, Any]]:
            return [
                {"job": j.doc(), "token": j.token, "lease_expires_at": j.lease_expires_at}
                for j in jobs
            ]

        while True:
            # The leader's applied state is the hint, as in raftsched: propose only when a
            # job may be leasable, otherwise wait for a submit's apply to wake us.
            if self.queue.machine.pending.get(queue):
                try:
                    leases = await self.call(
                        render,
                        self.queue.lease,
                        queue,
                        worker_id,
                        max_jobs,
                        now_ms(),
                        LEASE_MS_DEFAULT,
                    )
                except (Unavailable, TimeoutError) as exc:
                    return error(503, "unavailable", str(exc))
                if leases:
                    return web.json_response({"leases": leases})
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return web.json_response({"leases": []})
            event = self.waiting.setdefault(queue, asyncio.Event())
            event.clear()
            if self.queue.machine.pending.get(queue):
                continue  # a submit applied between the check and the clear
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return web.json_response({"leases": []})

    async def _report(self, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(
            lambda out: out, self.queue.report, reports, now_ms()
        )
        return result

    async def complete_batch(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        reports = body.get("reports") if isinstance(body, dict) else None
        if not isinstance(reports, list) or not 1 <= len(reports) <= MAX_BATCH_JOBS:
            return error(400, "bad_request", f"reports: a list of 1..{MAX_BATCH_JOBS}")
        try:
            return web.json_response({"results": await self._report(reports)})
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))

    async def complete_one(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        report = {"job_id": request.match_info["id"], "token": body.get("token")}
        if request.match_info["op"] == "fail":
            report["error"] = body.get("error")
            report["retryable"] = body.get("retryable", True)
        else:
            report["result"] = body.get("result")
        try:
            (result,) = await self._report([report])
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))
        if "error" in result:
            return web.json_response({"error": result["error"]}, status=409)
        return web.json_response({"id": result["job_id"], "state": result["state"]})

    async def heartbeat_lease(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        extend_ms = int(body.get("extend_ms") or LEASE_MS_DEFAULT)
        try:
            result = await self.call(
                lambda out: out,
                self.queue.heartbeat,
                request.match_info["id"],
                body.get("token"),
                extend_ms,
                now_ms(),
            )
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))
        if "error" in result:
            return web.json_response({"error": result["error"]}, status=409)
        return web.json_response(result)

    async def worker_heartbeat(self, request: web.Request) -> web.Response:
        if (redirect := self.not_leader(request)) is not None:
            return redirect
        body = await request.json()
        try:
            await self.call(
                lambda out: out,
                self.queue.register_worker,
                request.match_info["id"],
                int(body.get("capacity", 1)),
            )
        except (Unavailable, TimeoutError) as exc:
            return error(503, "unavailable", str(exc))
        return web.json_response({"worker_id": request.match_info["id"]})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/cluster", self.get_cluster)
        app.router.add_get("/v1/queues/{queue}", self.get_queue)
        app.router.add_get("/v1/debug/digest", self.get_digest)
        app.router.add_post("/v1/jobs", self.submit)
        app.router.add_post("/v1/jobs:batch", self.submit_batch)
        app.router.add_post("/v1/jobs:complete", self.complete_batch)
        app.router.add_post("/v1/queues/{queue}/lease", self.lease)
        app.router.add_post("/v1/jobs/{id}/heartbeat", self.heartbeat_lease)
        app.router.add_post("/v1/jobs/{id}/{op:complete|fail}", self.complete_one)
        app.router.add_post("/v1/workers/{id}/heartbeat", self.worker_heartbeat)
        return app


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    node = Node(args, loop)
    runner = web.AppRunner(node.app(), access_log=None)
    await runner.setup()
    host, port = args.http.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"node": args.node_id, "serving": args.http}), flush=True)
    await stop.wait()
    await runner.cleanup()
    node.sync.destroy()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baselines.pysyncobj_node")
    p.add_argument("--node-id", type=int, required=True)
    p.add_argument("--raft", required=True, help="host:port of this node's pysyncobj")
    p.add_argument("--http", required=True, help="host:port of this node's HTTP API")
    p.add_argument("--peer", action="append", default=[], help="id=raft_host:port,http_url")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--journal", action="store_true", help="pysyncobj's file journal (no fsync)")
    p.add_argument("--no-batch", action="store_true", help="appendEntriesUseBatch=False")
    args = p.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, as in raftsched's nodes
    except ImportError:
        return asyncio.run(serve(args))
    return int(uvloop.run(serve(args)))


if __name__ == "__main__":
    sys.exit(main())

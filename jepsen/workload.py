"""The "queue" workload: concurrent clients submit, lease, heartbeat, complete, fail and read
jobs on random nodes; then, after the faults heal, a drain and the final observations.

Theory of operation. `clients` slots run concurrently on one event loop; each slot is one
client process at a time and runs one operation at a time: record the invoke, make ONE
request to a random node (jepsen/http_client.py decides ok / fail / info), record the
completion. A process whose operation ended "info" is retired and the slot continues under a
new process number. Operations are paced to `rate` per second over all clients, with
exponential gaps, so a run's history size is predictable (the linearizability checker's
cost grows with it).

What each client does is drawn from a fixed mix, steered by what the clients collectively
know (`JobBook`): jobs submitted, leases believed held (job -> token), and old tokens.
Heartbeats, completes and fails mostly use a held lease and sometimes an old token (a
409 is the expected answer: exercised on purpose). Jobs are submitted with a short
`lease_ms`, so leases expire during the run and fencing matters. Reads are linearizable
GETs, biased towards the newest jobs (where a stale read shows).

Values recorded (interfaces.md): submit {"job_id", "queue", ...} -> {"job_id"}; lease
{"queue", "worker_id"} -> {"job_id", "token", "attempt"} or {"job_id": null}; heartbeat /
complete / fail {"job_id", "token"} -> {}; read {"job_id"} -> {"state", "token",
"attempts"}, where a 404 is an ok read of a job that does not exist (all three null).

After the run (`finish`): wait until the healed cluster converges; drain (one worker per
queue leases and completes until no job is unfinished, recorded as ordinary client ops);
a "final-read" of every job ever submitted (process "final"); a "state-hash" of every node.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .http_client import NodeApi, Outcome, Verdict
from .observe import wait_converged
from .recorder import Recorder

UNFINISHED_STATES: Final = ("waiting", "scheduled", "pending", "leased")
LEASE_GONE_CODES: Final = frozenset(
    {"stale_token", "lease_expired", "not_leased", "already_terminal", "not_found"}
)
RECENT_JOBS: Final = 20  # reads prefer the newest jobs this often...
RECENT_READ_P: Final = 0.5  # ...with this probability
FINAL_READ_ATTEMPTS: Final = 5
OLD_TOKENS_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class QueueWorkloadOptions:
    clients: int = 5
    queues: int = 3
    rate: float = 40.0  # operations per second, all clients together
    lease_ms: int = 1500  # short: leases expire during the run
    max_attempts: int = 100  # expiries and fails count attempts; jobs should end succeeded
    op_timeout_s: float = 4.0
    stale_token_p: float = 0.1
    # The operation mix (relative weights).
    mix: tuple[tuple[str, float], ...] = (
        ("submit", 0.25),
        ("lease", 0.2),
        ("heartbeat", 0.1),
        ("complete", 0.15),
        ("fail", 0.05),
        ("read", 0.25),
    )

    def __post_init__(self) -> None:
        assert self.clients >= 1 and self.queues >= 1 and self.rate > 0
        assert self.lease_ms >= 1 and self.op_timeout_s > 0


@dataclass(slots=True)
class JobBook:
    """What the clients know, shared by all of them."""

    submitted: dict[str, str] = field(default_factory=dict)  # job id -> queue (ok or info)
    order: list[str] = field(default_factory=list)  # job ids in submit order
    held: dict[str, int] = field(default_factory=dict)  # job id -> token we believe we hold
    # Tokens seen, newest last (bounded): reports with them should be refused with a 409.
    old_tokens: deque[tuple[str, int]] = field(default_factory=lambda: deque(maxlen=OLD_TOKENS_MAX))

    def remember_submit(self, job_id: str, queue: str) -> None:
        if job_id not in self.submitted:
            self.submitted[job_id] = queue
            self.order.append(job_id)

    def remember_lease(self, job_id: str, token: int) -> None:
        self.held[job_id] = token
        self.old_tokens.append((job_id, token))

    def forget_lease(self, job_id: str, token: int) -> None:
        if self.held.get(job_id) == token:
            del self.held[job_id]


@dataclass(frozen=True, slots=True)
class Request:
    """One operation: its history f and value, and the HTTP call that performs it."""

    f: str
    value: dict[str, Any]
    method: str
    path: str
    role: str
    body: Any = None
    idempotency_key: str | None = None


class QueueWorkload:
    def __init__(
        self,
        *,
        api: NodeApi,
        nodes: Callable[[], Sequence[int]],
        recorder: Recorder,
        rng: random.Random,
        options: QueueWorkloadOptions,
    ) -> None:
        self.api = api
        self.nodes = nodes  # the current members (a membership nemesis changes them)
        self.recorder = recorder
        self.rng = rng
        self.options = options
        self.book = JobBook()
        self.queues = [f"q{i}" for i in range(options.queues)]
        self._job_seq = 0
        self.completed_ops = 0

    # -- one operation ----------------------------------------------------------------------

    async def perform(self, process: int, node: int, req: Request) -> tuple[Verdict, Any]:
        """Invoke, call, complete: the verdict ("ok", "fail", "info") and recorded value."""
        self.recorder.event(type="invoke", process=process, f=req.f, value=req.value, node=node)
        outcome = await self.api.call(
            node,
            req.method,
            req.path,
            role=req.role,
            timeout_s=self.options.op_timeout_s,
            body=req.body,
            idempotency_key=req.idempotency_key,
        )
        verdict, value = self._interpret(req, outcome)
        self.recorder.event(
            type=verdict,
            process=process,
            f=req.f,
            value=value,
            node=node,
            error=outcome.error if verdict != "ok" else None,
        )
        self.completed_ops += 1
        return verdict, value

    def _interpret(self, req: Request, outcome: Outcome) -> tuple[Verdict, Any]:
        body = outcome.body if isinstance(outcome.body, dict) else {}
        job_id = req.value.get("job_id")
        if req.f == "read" and outcome.code == "not_found":
            return "ok", {"state": None, "token": None, "attempts": None}
        if outcome.verdict != "ok":
            if req.f in ("heartbeat", "complete", "fail") and outcome.code in LEASE_GONE_CODES:
                assert isinstance(job_id, str)
                self.book.forget_lease(job_id, int(req.value["token"]))
            if req.f == "submit" and outcome.verdict == "info":
                self.book.remember_submit(str(job_id), str(req.value["queue"]))
            return outcome.verdict, req.value if outcome.verdict == "info" else None
        if req.f == "submit":
            self.book.remember_submit(str(job_id), str(req.value["queue"]))
            return "ok", {"job_id": job_id}
        if req.f == "lease":
            leases = body.get("leases") or []
            if not leases:
                return "ok", {"job_id": None}
            grant = leases[0]
            self.book.remember_lease(str(grant["job_id"]), int(grant["token"]))
            return "ok", {
                "job_id": grant["job_id"],
                "token": grant["token"],
                "attempt": grant.get("attempt"),
            }
        if req.f in ("complete", "fail"):
            assert isinstance(job_id, str)
            self.book.forget_lease(job_id, int(req.value["token"]))
            return "ok", {}
        if req.f == "heartbeat":
            return "ok", {}
        if req.f == "read":
            return "ok", {
                "state": body.get("state"),
                "token": body.get("token"),
                "attempts": body.get("attempts"),
            }
        raise AssertionError(f"unknown op {req.f}")

    # -- choosing operations ----------------------------------------------------------------

    def _new_job_id(self) -> str:
        self._job_seq += 1
        return f"j{self._job_seq}"

    def submit_request(self, queue: str | None = None) -> Request:
        opts = self.options
        job_id = self._new_job_id()
        queue = queue or self.rng.choice(self.queues)
        spec = {
            "id": job_id,
            "queue": queue,
            "payload": {"n": self._job_seq},
            "lease_ms": opts.lease_ms,
            "max_attempts": opts.max_attempts,
            "backoff": {"initial_ms": 50, "multiplier": 1, "max_ms": 50},
        }
        value = {
            "job_id": job_id,
            "queue": queue,
            "lease_ms": opts.lease_ms,
            "max_attempts": opts.max_attempts,
        }
        return Request(
            f="submit",
            value=value,
            method="POST",
            path="/v1/jobs",
            role="submit",
            body=spec,
            idempotency_key=f"submit-{job_id}",
        )

    def lease_request(self, queue: str, worker_id: str) -> Request:
        return Request(
            f="lease",
            value={"queue": queue, "worker_id": worker_id},
            method="POST",
            path=f"/v1/queues/{queue}/lease",
            role="worker",
            body={"worker_id": worker_id, "max_jobs": 1, "wait_ms": 0},
        )

    def report_request(self, f: str, job_id: str, token: int) -> Request:
        value: dict[str, Any] = {"job_id": job_id, "token": token}
        body: dict[str, Any] = {"token": token}
        if f == "fail":
            value["retryable"] = True
            body.update(error="jepsen: a deliberate failure", retryable=True)
        elif f == "complete":
            body["result"] = {"by": "jepsen"}
        return Request(
            f=f, value=value, method="POST", path=f"/v1/jobs/{job_id}/{f}", role="worker", body=body
        )

    def read_request(self, job_id: str) -> Request:
        return Request(
            f="read", value={"job_id": job_id}, method="GET", path=f"/v1/jobs/{job_id}", role="read"
        )

    def choose(self, slot: int) -> Request:
        names = [name for name, _ in self.options.mix]
        weights = [w for _, w in self.options.mix]
        f = self.rng.choices(names, weights)[0]
        book = self.book
        if f in ("heartbeat", "complete", "fail"):
            use_old = book.old_tokens and (
                not book.held or self.rng.random() < self.options.stale_token_p
            )
            if use_old:
                job_id, token = self.rng.choice(book.old_tokens)
                return self.report_request(f, job_id, token)
            if book.held:
                job_id = self.rng.choice(sorted(book.held))
                return self.report_request(f, job_id, book.held[job_id])
            f = "lease"
        if f == "read" and book.order:
            recent = self.rng.random() < RECENT_READ_P
            pool = book.order[-RECENT_JOBS:] if recent else book.order
            return self.read_request(self.rng.choice(pool))
        if f == "lease" and book.order:
            return self.lease_request(self.rng.choice(self.queues), f"w{slot}")
        return self.submit_request()

    # -- the run ----------------------------------------------------------------------------

    async def run(self, until: float) -> None:
        """Every client slot until the monotonic time `until` (in-flight ops finish)."""
        await asyncio.gather(*(self._client(slot, until) for slot in range(self.options.clients)))

    async def _client(self, slot: int, until: float) -> None:
        process = self.recorder.new_process()
        mean_gap_s = self.options.clients / self.options.rate
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / mean_gap_s))
            if time.monotonic() >= until:
                return
            req = self.choose(slot)
            verdict, _ = await self.perform(process, self.rng.choice(self.nodes()), req)
            if verdict == "info":
                process = self.recorder.new_process()

    # -- after the faults -------------------------------------------------------------------

    async def converge(self, timeout_s: float) -> bool:
        return await wait_converged(self.api, self.nodes(), timeout_s) is not None

    async def _unfinished(self, node: int, queue: str) -> int | None:
        outcome = await self.api.call(
            node, "GET", f"/v1/queues/{queue}", role="read", timeout_s=self.options.op_timeout_s
        )
        if outcome.code == "not_found":
            return 0  # no job was ever accepted on this queue
        if outcome.verdict != "ok" or not isinstance(outcome.body, dict):
            return None
        counts = outcome.body.get("queue", {}).get("counts", {})
        return sum(int(counts.get(state, 0)) for state in UNFINISHED_STATES)

    async def drain(self, timeout_s: float) -> dict[str, int | None]:
        """Lease and complete until no queue has an unfinished job (or the deadline):
        the unfinished count per queue at the end (None: could not be read)."""
        deadline = time.monotonic() + timeout_s
        left = await asyncio.gather(*(self._drain_queue(q, deadline) for q in self.queues))
        return dict(zip(self.queues, left, strict=True))

    async def _drain_queue(self, queue: str, deadline: float) -> int | None:
        process = self.recorder.new_process()
        worker = f"drain-{queue}"
        unfinished: int | None = None
        while time.monotonic() < deadline:
            node = self.rng.choice(self.nodes())
            unfinished = await self._unfinished(node, queue)
            if unfinished == 0:
                return 0
            verdict, value = await self.perform(process, node, self.lease_request(queue, worker))
            if verdict == "info":
                process = self.recorder.new_process()
                continue
            if verdict != "ok" or value.get("job_id") is None:
                # Nothing leasable now: backoff delays and other leases must expire first.
                await asyncio.sleep(0.1)
                continue
            complete = self.report_request("complete", value["job_id"], value["token"])
            verdict, _ = await self.perform(process, node, complete)
            if verdict == "info":
                process = self.recorder.new_process()
        return unfinished

    async def final_reads(self, timeout_s: float) -> int:
        """One "final-read" per job ever submitted (linearizable, rotating over the nodes);
        returns how many could not be read."""
        deadline = time.monotonic() + timeout_s
        missing = 0
        for k, job_id in enumerate(self.book.order):
            value = {"job_id": job_id}
            done = False
            for attempt in range(FINAL_READ_ATTEMPTS):
                if time.monotonic() >= deadline:
                    break
                nodes = self.nodes()
                node = nodes[(k + attempt) % len(nodes)]
                self.recorder.final("invoke", "final-read", value, node=node)
                outcome = await self.api.call(
                    node,
                    "GET",
                    f"/v1/jobs/{job_id}",
                    role="read",
                    timeout_s=self.options.op_timeout_s,
                )
                verdict, result = self._interpret(self.read_request(job_id), outcome)
                self.recorder.final(
                    verdict,
                    "final-read",
                    result,
                    node=node,
                    error=outcome.error if verdict != "ok" else None,
                )
                if verdict == "ok":
                    done = True
                    break
            missing += not done
        return missing

    async def state_hashes(self, timeout_s: float) -> dict[int, str | None]:
        """Rounds of one "state-hash" event per node until every node reported at the same
        applied index (an idle cluster still commits the odd Tick) or the deadline; the
        hashes of the last round per node (None: not obtained)."""
        deadline = time.monotonic() + timeout_s
        hashes: dict[int, str | None] = {}
        while True:
            indexes: set[int] = set()
            for node in self.nodes():
                self.recorder.final("invoke", "state-hash", {"node": node}, node=node)
                result = await self._state_hash(node, deadline)
                if result is None:
                    hashes[node] = None
                    self.recorder.final(
                        "fail", "state-hash", None, node=node, error="no state hash in time"
                    )
                    continue
                hashes[node] = result["state_hash"]
                indexes.add(result["applied_index"])
                self.recorder.final("ok", "state-hash", result, node=node)
            if len(indexes) <= 1 or time.monotonic() >= deadline:
                return hashes
            await asyncio.sleep(0.2)

    async def _state_hash(self, node: int, deadline: float) -> dict[str, Any] | None:
        """The node's own hash of its whole scheduler state and the applied index it was
        taken at (GET /v1/cluster?state_hash=true), plus the chain hash of the applied log
        prefix when the document is at that same index."""
        while time.monotonic() < deadline:
            outcome = await self.api.call(
                node,
                "GET",
                "/v1/cluster?state_hash=true",
                role="read",
                timeout_s=self.options.op_timeout_s,
            )
            doc = outcome.body if outcome.verdict == "ok" else None
            state = doc.get("state_hash") if isinstance(doc, dict) else None
            if isinstance(doc, dict) and isinstance(state, dict):
                result = {
                    "node": node,
                    "applied_index": state.get("applied_index"),
                    "state_hash": state.get("hash"),
                    "source": "server",
                }
                if doc.get("applied_index") == state.get("applied_index"):
                    result["chain_hash"] = doc.get("chain_hash")
                return result
            await asyncio.sleep(0.2)
        return None

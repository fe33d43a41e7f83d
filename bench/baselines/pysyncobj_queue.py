"""The job queue of the pysyncobj baseline: submit, lease with a fencing token, complete.

Theory of operation. `QueueMachine` is the whole replicated state and its transitions, plain
Python with no I/O and no clock reads: the leader's HTTP handler passes `now_ms` in each
command, so every replica applies the same command to the same state and reaches the same
result (the rule raftsched's own state machine follows). `ReplicatedQueue` hands each command
to pysyncobj (`@replicated`): pysyncobj pickles the call into its Raft log, and once the entry
is committed every node runs the method on its own machine; on the node that proposed it the
method's return value comes back through the callback.

Kept the same as raftsched where it matters to the figures: a job document per job (id, seq,
queue, state, payload, attempts, token, times), one token per lease command that only grows
(raftsched uses the entry's log index), a stale token refused per report, expired leases
re-queued. Left out (and said so in docs/benchmarks.md): priorities, delays, retries with
backoff, cron, idempotency keys, payload-size checks, per-job event history.

pysyncobj state rule: a SyncObjConsumer serializes (for log compaction) every attribute set
after its `__init__`, so the asyncio wake-up hook is set before it and the machine after.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pysyncobj import SyncObjConsumer, replicated

MAX_ATTEMPTS_DEFAULT = 3
LEASE_MS_DEFAULT = 30_000
COUNTED_STATES = ("pending", "leased", "succeeded", "failed", "dead")


@dataclass(slots=True)
class Job:
    id: str
    seq: int
    queue: str
    payload: Any
    created_ms: int
    max_attempts: int
    state: str = "pending"
    attempts: int = 0
    token: int = 0
    lease_expires_at: int = 0
    result: Any = None
    error: Any = None

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "queue": self.queue,
            "state": self.state,
            "payload": self.payload,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "token": self.token,
            "lease_expires_at": self.lease_expires_at or None,
            "result": self.result,
            "error": self.error,
            "created": self.created_ms,
        }


def refusal(job_id: str, code: str, message: str) -> dict[str, Any]:
    return {"job_id": job_id, "error": {"code": code, "message": message, "details": {}}}


class QueueMachine:
    """Queues of jobs; every method is a deterministic transition (inputs -> same state)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.pending: dict[str, deque[str]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.expiries: list[tuple[int, int, str]] = []  # heap of (expires_ms, token, job id)
        self.workers: dict[str, int] = {}  # worker id -> capacity
        self.seq = 0
        self.token = 0

    def _count(self, queue: str, state: str, delta: int) -> None:
        per_queue = self.counts.setdefault(queue, dict.fromkeys(COUNTED_STATES, 0))
        per_queue[state] += delta

    def _move(self, job: Job, state: str) -> None:
        self._count(job.queue, job.state, -1)
        self._count(job.queue, state, +1)
        job.state = state

    def submit(self, specs: Sequence[Mapping[str, Any]], now_ms: int) -> list[tuple[bool, Job]]:
        """(created, job) per spec; an existing id answers its job unchanged (created False)."""
        out = []
        for spec in specs:
            job_id = spec.get("id") or f"auto-{self.seq + 1}"
            existing = self.jobs.get(job_id)
            if existing is not None:
                out.append((False, existing))
                continue
            self.seq += 1
            queue = str(spec["queue"])
            job = Job(
                id=job_id,
                seq=self.seq,
                queue=queue,
                payload=spec.get("payload"),
                created_ms=now_ms,
                max_attempts=int(spec.get("max_attempts") or MAX_ATTEMPTS_DEFAULT),
            )
            self.jobs[job_id] = job
            self.pending.setdefault(queue, deque()).append(job_id)
            self._count(queue, "pending", +1)
            out.append((True, job))
        return out

    def expire(self, now_ms: int) -> None:
        """Leases past their expiry: the job runs again (or is dead after max_attempts)."""
        while self.expiries and self.expiries[0][0] <= now_ms:
            _, token, job_id = heapq.heappop(self.expiries)
            job = self.jobs[job_id]
            if job.state != "leased" or job.token != token or job.lease_expires_at > now_ms:
                continue  # completed, re-leased or extended since: this heap entry is stale
            if job.attempts >= job.max_attempts:
                self._move(job, "dead")
            else:
                self._move(job, "pending")
                self.pending.setdefault(job.queue, deque()).appendleft(job_id)

    def lease(
        self, queue: str, worker_id: str, max_jobs: int, now_ms: int, lease_ms: int
    ) -> list[Job]:
        assert max_jobs >= 0, max_jobs
        self.expire(now_ms)
        waiting = self.pending.get(queue)
        if not waiting or max_jobs == 0:
            return []
        self.token += 1  # one token per lease command, like raftsched's log index
        expires = now_ms + lease_ms
        granted: list[Job] = []
        while waiting and len(granted) < max_jobs:
            job = self.jobs[waiting.popleft()]
            self._move(job, "leased")
            job.attempts += 1
            job.token = self.token
            job.lease_expires_at = expires
            heapq.heappush(self.expiries, (expires, self.token, job.id))
            granted.append(job)
        self.workers.setdefault(worker_id, 0)
        return granted

    def report(self, reports: Sequence[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """Completes (`result`) and fails (`error`, `retryable`); each stands on its own."""
        self.expire(now_ms)
        results = []
        for r in reports:
            job_id = str(r.get("job_id"))
            job = self.jobs.get(job_id)
            if job is None:
                results.append(refusal(job_id, "not_found", "no such job"))
            elif job.state != "leased":
                results.append(refusal(job_id, "not_leased", f"job is {job.state}"))
            elif job.token != r.get("token"):
                results.append(refusal(job_id, "stale_token", f"the lease's token is {job.token}"))
            else:
                if "error" in r:
                    job.error = r["error"]
                    again = r.get("retryable", True) and job.attempts < job.max_attempts
                    self._move(job, "pending" if again else "dead")
                    if again:
                        self.pending.setdefault(job.queue, deque()).append(job_id)
                else:
                    job.result = r.get("result")
                    self._move(job, "succeeded")
                job.lease_expires_at = 0
                results.append({"job_id": job_id, "ok": True, "state": job.state})
        return results

    def heartbeat(self, job_id: str, token: int, extend_ms: int, now_ms: int) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None or job.state != "leased" or job.token != token:
            return refusal(job_id, "stale_token", "this lease is not held")
        job.lease_expires_at = now_ms + extend_ms
        heapq.heappush(self.expiries, (job.lease_expires_at, token, job_id))
        return {"job_id": job_id, "token": token, "lease_expires_at": job.lease_expires_at}

    def register_worker(self, worker_id: str, capacity: int) -> None:
        self.workers[worker_id] = capacity

    def digest(self) -> str:
        """A hash of the whole state, to compare replicas once writes have stopped."""
        h = hashlib.sha256()
        h.update(repr((self.seq, self.token, sorted(self.workers.items()))).encode())
        h.update(repr(sorted((q, sorted(c.items())) for q, c in self.counts.items())).encode())
        for job_id in sorted(self.jobs):
            j = self.jobs[job_id]
            h.update(repr((job_id, j.state, j.attempts, j.token, j.result, j.error)).encode())
        return h.hexdigest()


class ReplicatedQueue(SyncObjConsumer):  # type: ignore[misc]  # pysyncobj has no type hints
    """The machine behind pysyncobj's log: each `@replicated` method is one log entry."""

    def __init__(self, on_submitted: Callable[[str], None]) -> None:
        # Set before the consumer's __init__: not state, never pickled into a snapshot.
        self.on_submitted = on_submitted
        super().__init__()
        self.machine = QueueMachine()

    @replicated  # type: ignore[untyped-decorator]  # (pysyncobj)
    def submit(self, specs: list[dict[str, Any]], now_ms: int) -> list[tuple[bool, Job]]:
        out = self.machine.submit(specs, now_ms)
        for queue in {job.queue for created, job in out if created}:
            self.on_submitted(queue)
        return out

    @replicated  # type: ignore[untyped-decorator]  # (pysyncobj)
    def lease(
        self, queue: str, worker_id: str, max_jobs: int, now_ms: int, lease_ms: int
    ) -> list[Job]:
        return self.machine.lease(queue, worker_id, max_jobs, now_ms, lease_ms)

    @replicated  # type: ignore[untyped-decorator]  # (pysyncobj)
    def report(self, reports: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        return self.machine.report(reports, now_ms)

    @replicated  # type: ignore[untyped-decorator]  # (pysyncobj)
    def heartbeat(self, job_id: str, token: int, extend_ms: int, now_ms: int) -> dict[str, Any]:
        return self.machine.heartbeat(job_id, token, extend_ms, now_ms)

    @replicated  # type: ignore[untyped-decorator]  # (pysyncobj)
    def register_worker(self, worker_id: str, capacity: int) -> None:
        self.machine.register_worker(worker_id, capacity)

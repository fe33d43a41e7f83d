"""Build hand-made histories for tests: `HistoryBuilder` writes the Ops a runner would.

    h = HistoryBuilder()
    h.invoke(1, "submit", {"job_id": "a", "queue": "q"})
    h.ok(1, {"job_id": "a"})
    h.call(2, "lease", {"queue": "q", "worker_id": "w2"}, {"job_id": "a", "token": 5})
    h.nemesis("kill", {"nodes": [1]})
    ops = h.ops

Time advances 1 ms per event (plus `advance(ms)`), so the line order is the real-time
order.
"""

from __future__ import annotations

from typing import Any

from jepsen.history import NEMESIS_PROCESS, Op, OpType, Process

__all__ = ["HistoryBuilder"]

STEP_NS = 1_000_000
WALL_START_MS = 1_764_000_000_000


class HistoryBuilder:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._open: dict[Process, str] = {}
        self._offset_ns = 0  # time added by `advance`

    def _add(
        self, *, type: OpType, process: Process, f: str, value: Any, error: str | None = None
    ) -> Op:
        time_ns = len(self.ops) * STEP_NS + self._offset_ns
        op = Op(
            index=len(self.ops),
            type=type,
            process=process,
            f=f,
            value=value,
            time_ns=time_ns,
            wall_ms=WALL_START_MS + time_ns // 1_000_000,
            node=1,
            error=error,
        )
        self.ops.append(op)
        return op

    def advance(self, ms: int) -> None:
        """Let `ms` milliseconds pass before the next event."""
        self._offset_ns += ms * 1_000_000

    def invoke(self, process: Process, f: str, value: Any) -> Op:
        assert process not in self._open, f"process {process} already has an op in flight"
        self._open[process] = f
        return self._add(type="invoke", process=process, f=f, value=value)

    def _finish(self, process: Process, type: OpType, value: Any, error: str | None) -> Op:
        f = self._open.pop(process)
        return self._add(type=type, process=process, f=f, value=value, error=error)

    def ok(self, process: Process, value: Any = None) -> Op:
        return self._finish(process, "ok", {} if value is None else value, None)

    def fail(self, process: Process, error: str = "refused") -> Op:
        return self._finish(process, "fail", None, error)

    def info(self, process: Process, error: str = "timeout") -> Op:
        return self._finish(process, "info", None, error)

    def call(self, process: Process, f: str, value: Any, result: Any = None) -> Op:
        """A whole sequential operation: invoke then ok."""
        self.invoke(process, f, value)
        return self.ok(process, result)

    def nemesis(self, f: str, value: Any) -> Op:
        return self._add(type="info", process=NEMESIS_PROCESS, f=f, value=value)

    # -- the queue workload's operations, sequential (invoke then ok) ---------------------------

    def submit(
        self, process: Process, job: str, *, queue: str = "q", lease_ms: int | None = None
    ) -> Op:
        value: dict[str, Any] = {"job_id": job, "queue": queue}
        if lease_ms is not None:
            value["lease_ms"] = lease_ms
        return self.call(process, "submit", value, {"job_id": job})

    def lease(
        self,
        process: Process,
        job: str | None,
        token: int | None = None,
        *,
        queue: str = "q",
        attempt: int | None = None,
    ) -> Op:
        result: dict[str, Any] = {"job_id": job}
        if job is not None:
            result["token"] = token
        if attempt is not None:
            result["attempt"] = attempt
        return self.call(process, "lease", {"queue": queue, "worker_id": f"w{process}"}, result)

    def complete(self, process: Process, job: str, token: int) -> Op:
        return self.call(process, "complete", {"job_id": job, "token": token}, {})

    def heartbeat(self, process: Process, job: str, token: int) -> Op:
        return self.call(process, "heartbeat", {"job_id": job, "token": token}, {})

    def fail_job(self, process: Process, job: str, token: int, *, retryable: bool = True) -> Op:
        value = {"job_id": job, "token": token, "retryable": retryable}
        return self.call(process, "fail", value, {})

    def read(
        self,
        process: Process,
        job: str,
        state: str | None,
        token: int = 0,
        attempts: int = 0,
        *,
        f: str = "read",
    ) -> Op:
        result = {"state": state, "token": token, "attempts": attempts}
        return self.call(process, f, {"job_id": job}, result)

    def final_read(self, job: str, state: str | None, token: int = 0, attempts: int = 0) -> Op:
        return self.read("final", job, state, token, attempts, f="final-read")

    def state_hash(self, node: int, applied_index: int, state_hash: str) -> Op:
        value = {"node": node, "applied_index": applied_index, "state_hash": state_hash}
        return self.call("final", "state-hash", {"node": node}, value)

"""Run one leased job in a child process and turn its end into an `Outcome`.

A job is either a shell command (payload `{"cmd": [...] | "...", "env": {...}, "cwd": "...",
"shell": false}`) or a Python callable (`{"call": "pkg.mod:func", "args": [...], "kwargs":
{...}}`, run by `python -m raftsched.worker.child`). Either way the job runs in its own child
process, in its own session (so its own process group): a crash or a hang cannot take the
worker down, and a timeout or a lost lease kills the whole group (SIGTERM, a grace period,
then SIGKILL), grandchildren included. The child sees its lease in the environment
(RAFTSCHED_JOB_ID, RAFTSCHED_ATTEMPT, RAFTSCHED_QUEUE, RAFTSCHED_FENCING_TOKEN).
stdout/stderr are kept as bounded tails: only the last `tail_bytes` of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftsched.client import Lease
from raftsched.worker.pool import PoolAnswer, PyPool, StopSignal
from raftsched.worker.tail import Tail

SUCCEEDED, FAILED, TIMED_OUT, STOPPED = "succeeded", "failed", "timeout", "stopped"
# End a timed-out run this much early (at most a tenth of the budget), so that the worker's
# report, with the output tails, usually commits before the cluster's own expiry.
TIMEOUT_MARGIN_S = 0.25


@dataclass(frozen=True)
class Outcome:
    """How a run ended. `kind` is SUCCEEDED (report `result`), FAILED or TIMED_OUT (report
    `error` with `retryable`), or STOPPED (killed on request: report nothing)."""

    kind: str
    result: Any = None
    error: Any = None
    retryable: bool = True


class BadPayload(ValueError):
    """The payload names no runnable job (no `cmd`, no `call`, wrong types)."""


def lease_env(lease: Lease) -> dict[str, str]:
    """The RAFTSCHED_* variables a job sees (its lease, its fencing token)."""
    return {
        "RAFTSCHED_JOB_ID": lease.job_id,
        "RAFTSCHED_ATTEMPT": str(lease.attempt),
        "RAFTSCHED_QUEUE": lease.queue,
        "RAFTSCHED_FENCING_TOKEN": str(lease.token),
    }


def job_env(lease: Lease, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A child's whole environment: the worker's, the payload's `env`, then the lease's."""
    return {**os.environ, **(extra or {}), **lease_env(lease)}


def _shell_argv(payload: dict[str, Any]) -> list[str]:
    cmd = payload["cmd"]
    if payload.get("shell") is True:
        if not isinstance(cmd, str):
            raise BadPayload("payload.cmd must be a string when payload.shell is true")
        return ["/bin/sh", "-c", cmd]
    if isinstance(cmd, str):
        argv = shlex.split(cmd)
    elif isinstance(cmd, list) and all(isinstance(a, str) for a in cmd):
        argv = list(cmd)
    else:
        raise BadPayload("payload.cmd must be a list of strings or a string")
    if not argv:
        raise BadPayload("payload.cmd is empty")
    return argv


class JobRun:
    """One child process for one lease; `run()` once, `stop()` from elsewhere to kill it."""

    def __init__(
        self,
        lease: Lease,
        *,
        tail_bytes: int = 4096,
        kill_grace_s: float = 2.0,
        imports: list[str] | None = None,
        pool: PyPool | None = None,
    ) -> None:
        self.lease = lease
        self.pool = pool
        self.tail_bytes = tail_bytes
        self.kill_grace_s = kill_grace_s
        self.imports = imports or []
        self.proc: asyncio.subprocess.Process | None = None
        self._stop_requested = False
        self._stopped = asyncio.Event()  # the shell path awaits it
        self._stop_signal = StopSignal()  # the pool's hand-off registers a callback

    async def run(self) -> Outcome:
        payload = self.lease.payload
        try:
            if not isinstance(payload, dict):
                raise BadPayload("payload must be an object with `cmd` or `call`")
            if "cmd" in payload:
                return await self._run_shell(payload)
            if "call" in payload:
                return await self._run_call(payload)
            raise BadPayload("payload has neither `cmd` (shell job) nor `call` (Python job)")
        except BadPayload as exc:
            return Outcome(
                FAILED, error={"kind": "bad_payload", "message": str(exc)}, retryable=False
            )

    async def _run_shell(self, payload: dict[str, Any]) -> Outcome:
        argv = _shell_argv(payload)
        extra = payload.get("env") or {}
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise BadPayload("payload.env must map strings to strings")
        cwd = payload.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise BadPayload("payload.cwd must be a string")
        try:
            code, out, err, timed_out = await self._spawn(argv, job_env(self.lease, extra), cwd)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            return Outcome(FAILED, error={"kind": "spawn", "message": str(exc)}, retryable=False)
        if self._stop_requested:
            return Outcome(STOPPED)
        tails = {
            "stdout": out.text(),
            "stderr": err.text(),
            "truncated": out.truncated or err.truncated,
        }
        if timed_out:
            return Outcome(
                TIMED_OUT,
                error={"kind": "timeout", "timeout_ms": self.lease.timeout_ms, **tails},
                retryable=payload.get("retry_on_timeout", True) is not False,
            )
        if code == 0:
            return Outcome(SUCCEEDED, result={"exit_code": 0, **tails})
        return Outcome(
            FAILED,
            error={"kind": "exit", "exit_code": code, **tails},
            retryable=payload.get("retryable", True) is not False,
        )

    async def _run_call(self, payload: dict[str, Any]) -> Outcome:
        call = payload["call"]
        if not isinstance(call, str) or ":" not in call:
            raise BadPayload("payload.call must be 'pkg.module:function'")
        spec = {
            "call": call,
            "args": payload.get("args") or [],
            "kwargs": payload.get("kwargs") or {},
            "imports": self.imports,
            "context": {
                "job_id": self.lease.job_id,
                "attempt": self.lease.attempt,
                "queue": self.lease.queue,
                "token": self.lease.token,
                "max_attempts": self.lease.max_attempts,
            },
        }
        if self.pool is not None:
            env = lease_env(self.lease)  # the pool child has the worker's environment
            ended = await self.pool.run(
                {**spec, "env": env}, timeout_s=self._timeout_s(), stopped=self._stop_signal
            )
            return self._pooled_outcome(payload, ended)
        with tempfile.TemporaryDirectory(prefix="raftsched-job-") as tmp:
            spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
            spec_path.write_text(json.dumps(spec))
            argv = [
                sys.executable,
                "-m",
                "raftsched.worker.child",
                str(spec_path),
                str(result_path),
            ]
            code, out, err, timed_out = await self._spawn(argv, job_env(self.lease), None)
            if self._stop_requested:
                return Outcome(STOPPED)
            tails = {"stdout": out.text(), "stderr": err.text()}
            if timed_out:
                return Outcome(
                    TIMED_OUT,
                    error={"kind": "timeout", "timeout_ms": self.lease.timeout_ms, **tails},
                    retryable=payload.get("retry_on_timeout", True) is not False,
                )
            try:
                answer = json.loads(result_path.read_text())
            except (OSError, ValueError):
                return Outcome(FAILED, error={"kind": "crash", "exit_code": code, **tails})
        if answer.get("ok"):
            return Outcome(SUCCEEDED, result=answer.get("result"))
        return Outcome(
            FAILED,
            error={**answer.get("error", {}), "stderr": tails["stderr"]},
            retryable=bool(answer.get("retryable", True)),
        )

    def _timeout_s(self) -> float | None:
        """The run's budget: timeout_ms counts from the lease's start (the cluster ends the
        attempt then, SPEC §4), so take off the time since the grant, and a margin so the
        worker's own report (with the output tails) lands before the cluster's expiry."""
        lease = self.lease
        if not lease.timeout_ms:
            return None
        budget_s = lease.timeout_ms / 1000
        if lease.leased_at is not None:
            left_s = (lease.leased_at + lease.timeout_ms - time.time() * 1000) / 1000
            budget_s = min(budget_s, left_s - min(TIMEOUT_MARGIN_S, budget_s / 10))
        return max(budget_s, 0.0)

    def _pooled_outcome(self, payload: dict[str, Any], ended: PoolAnswer) -> Outcome:
        if self._stop_requested or ended.kind == "stopped":
            return Outcome(STOPPED)
        if ended.kind == "timeout":
            return Outcome(
                TIMED_OUT,
                error={
                    "kind": "timeout",
                    "timeout_ms": self.lease.timeout_ms,
                    "stderr": ended.stderr,
                },
                retryable=payload.get("retry_on_timeout", True) is not False,
            )
        if ended.kind == "crash" or ended.answer is None:
            return Outcome(
                FAILED,
                error={"kind": "crash", "exit_code": ended.exit_code, "stderr": ended.stderr},
            )
        answer = ended.answer
        if answer.get("ok"):
            return Outcome(SUCCEEDED, result=answer.get("result"))
        return Outcome(
            FAILED,
            error={**answer.get("error", {}), "stderr": answer.get("stderr", "")},
            retryable=bool(answer.get("retryable", True)),
        )

    async def _spawn(
        self, argv: list[str], env: dict[str, str], cwd: str | None
    ) -> tuple[int, Tail, Tail, bool]:
        out, err = Tail(self.tail_bytes), Tail(self.tail_bytes)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(_pump(proc.stdout, out)),
            asyncio.create_task(_pump(proc.stderr, err)),
        ]
        timeout_s = self._timeout_s()
        timed_out = False
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(self._stopped.wait())
        done, _ = await asyncio.wait(
            {waiter, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            timed_out = not self._stop_requested
            await self._kill_group(proc)
        stopper.cancel()
        code = await waiter
        # Grandchildren may hold the pipes open; the tails so far are enough.
        _, pending = await asyncio.wait(readers, timeout=1.0)
        for task in pending:
            task.cancel()
        return code, out, err, timed_out

    async def _kill_group(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), self.kill_grace_s)
        # SIGKILL the group even when the leader exited: its children may linger.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill the child's group (lease lost, or stop-now); `run()` then returns STOPPED."""
        self._stop_requested = True
        self._stopped.set()
        self._stop_signal.set()


async def _pump(stream: asyncio.StreamReader, tail: Tail) -> None:
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        tail.add(chunk)

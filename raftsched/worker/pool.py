"""The worker's pool of long-lived Python children (pool_child.py), one job at a time each.

Why: starting an interpreter per Python job costs tens of milliseconds of CPU, which caps a
worker at a few dozen trivial jobs per second. A pool child is started once (lazily, up to
`size`, in its own session so its whole process group can be killed) and then runs job after
job. Each job still runs outside the worker process, so a crash or a hang cannot take the worker
down: on a timeout or a stop request the child's process group gets SIGTERM, a grace period,
then SIGKILL, and the child is discarded (the next job starts a fresh one); a child that dies
mid-job (segfault, os._exit) is discarded the same way and the job is reported as a crash.

The hand-off is on every job's path, so it creates no task: the job's own task writes the spec
and awaits the answer line; the timeout (a timer) and a stop request (a `StopSignal`
callback) interrupt that wait by cancelling the task, which then un-cancels itself and kills
the child. (A task and an `asyncio.wait` per job for the answer and another for the stop
cost ~33 us per job on this machine, a third of the worker process's share of a trivial job.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftsched.worker.tail import Tail

# A pool child answers with one line; a task's result is bounded by the API's payload limit,
# so a generous line limit only guards against a runaway child.
ANSWER_LINE_LIMIT_BYTES = 64 << 20


class StopSignal:
    """A one-shot request to stop a job: `set()` runs the callbacks registered with `on_set`
    (at once when it is already set). A callback, not an event to await: waiting for it must
    not cost a task per job."""

    __slots__ = ("_callbacks", "_set")

    def __init__(self) -> None:
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when set; returns the function that unregisters it."""
        if self._set:
            callback()
            return _nothing
        self._callbacks.append(callback)

        def unregister() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unregister


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class PoolAnswer:
    """How one pooled run ended: `kind` is "answer" (see `answer`), "timeout", "stopped" or
    "crash" (the child died; `exit_code` and the `stderr` tail of the process say why)."""

    kind: str
    answer: dict[str, Any] | None = None
    exit_code: int | None = None
    stderr: str = ""


class PoolProcess:
    """One pool child and the pump that drains its stderr (task output below Python level)."""

    def __init__(self, proc: asyncio.subprocess.Process, tail_bytes: int) -> None:
        self.proc = proc
        self.err = Tail(tail_bytes)
        assert proc.stderr is not None
        self._pump = asyncio.create_task(_drain(proc.stderr, self.err))

    async def kill(self, grace_s: float) -> int:
        """SIGTERM the child's process group, SIGKILL it after `grace_s`; its exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), grace_s)
        with contextlib.suppress(ProcessLookupError):  # its own children may linger
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pump, 1.0)
        return code


class PyPool:
    def __init__(
        self, *, size: int, imports: list[str], kill_grace_s: float, tail_bytes: int
    ) -> None:
        assert size >= 1
        self.size = size
        self.imports = imports
        self.kill_grace_s = kill_grace_s
        self.tail_bytes = tail_bytes
        self.started = 0  # children started over the pool's life (a metric for tests/logs)
        self._idle: list[PoolProcess] = []
        self._all: set[PoolProcess] = set()
        self._slots = asyncio.Semaphore(size)

    async def _spawn(self) -> PoolProcess:
        env = dict(os.environ, RAFTSCHED_TAIL_BYTES=str(self.tail_bytes))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "raftsched.worker.pool_child",
            *self.imports,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
            limit=ANSWER_LINE_LIMIT_BYTES,
        )
        self.started += 1
        child = PoolProcess(proc, self.tail_bytes)
        self._all.add(child)
        return child

    async def run(
        self, spec: dict[str, Any], *, timeout_s: float | None, stopped: StopSignal
    ) -> PoolAnswer:
        """Run one job spec in an idle child (started if none is idle)."""
        async with self._slots:
            if stopped.is_set():
                return PoolAnswer("stopped")  # never handed to a child
            child = self._idle.pop() if self._idle else await self._spawn()
            ended = await self._run_in(child, spec, timeout_s, stopped)
            if ended.kind == "answer":
                self._idle.append(child)
            else:
                self._all.discard(child)
            return ended

    async def _run_in(
        self,
        child: PoolProcess,
        spec: dict[str, Any],
        timeout_s: float | None,
        stopped: StopSignal,
    ) -> PoolAnswer:
        assert child.proc.stdin is not None and child.proc.stdout is not None
        child.err.clear()
        try:
            child.proc.stdin.write(json.dumps(spec).encode() + b"\n")
            await child.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            code = await child.kill(self.kill_grace_s)
            return PoolAnswer("crash", exit_code=code, stderr=child.err.text())
        why = await _interruptible(child.proc.stdout.readline(), timeout_s, stopped)
        if isinstance(why, bytes) and why:
            return PoolAnswer("answer", answer=json.loads(why))
        code = await child.kill(self.kill_grace_s)
        if isinstance(why, bytes):  # EOF: the child died mid-job
            return PoolAnswer("crash", exit_code=code, stderr=child.err.text())
        return PoolAnswer(why, stderr=child.err.text())

    async def close(self) -> None:
        """Stop every child: close its stdin (it exits), then kill its group."""
        children, self._all, self._idle = list(self._all), set(), []
        for child in children:
            if child.proc.stdin is not None:
                child.proc.stdin.close()
        await asyncio.gather(*(c.kill(self.kill_grace_s) for c in children))


async def _interruptible(line: Any, timeout_s: float | None, stopped: StopSignal) -> bytes | str:
    """Await `line` (a readline coroutine) in the calling task: its bytes, or "timeout" /
    "stopped" when the timer or the stop signal came first (they cancel the task, which
    un-cancels itself here: a cancellation from anyone else propagates)."""
    task = asyncio.current_task()
    assert task is not None
    why: list[str] = []

    def interrupt(reason: str) -> None:
        if not why:
            why.append(reason)
            task.cancel()

    timer = (
        None
        if timeout_s is None
        else asyncio.get_running_loop().call_later(timeout_s, interrupt, "timeout")
    )
    unregister = stopped.on_set(lambda: interrupt("stopped"))
    try:
        result: bytes = await line
        return result
    except asyncio.CancelledError:
        if not why:
            raise
        task.uncancel()
        return why[0]
    finally:
        if timer is not None:
            timer.cancel()
        unregister()


async def _drain(stream: asyncio.StreamReader, tail: Tail) -> None:
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        tail.add(chunk)

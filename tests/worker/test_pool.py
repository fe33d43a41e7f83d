"""The pool of long-lived Python children, driven directly (no API): reuse, output capture,
the job's environment, timeouts and crashes that replace the child, close."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from raftsched.worker.pool import PyPool, StopSignal
from tests.worker.helpers import pid_alive


def spec(call: str, *args: Any, token: int = 7) -> dict[str, Any]:
    return {
        "call": f"tests.worker.tasks:{call}",
        "args": list(args),
        "kwargs": {},
        "imports": [],
        "context": {"job_id": "j", "attempt": 1, "queue": "q", "token": token},
        "env": {"RAFTSCHED_FENCING_TOKEN": str(token)},
    }


@pytest.mark.asyncio
async def test_pool_reuses_children_and_isolates_failures(tmp_path: Path) -> None:
    pool = PyPool(size=2, imports=["tests.worker.tasks"], kill_grace_s=0.5, tail_bytes=64)
    never = StopSignal()
    try:
        first = await pool.run(spec("pid"), timeout_s=10, stopped=never)
        second = await pool.run(spec("pid"), timeout_s=10, stopped=never)
        assert first.kind == second.kind == "answer"
        assert first.answer and second.answer and first.answer["result"] == second.answer["result"]
        assert pool.started == 1  # one child served both jobs

        env = await pool.run(spec("token_from_env", token=42), timeout_s=10, stopped=never)
        assert env.answer is not None and env.answer["result"] == "42"

        out = await pool.run(spec("noisy", "x" * 100), timeout_s=10, stopped=never)
        assert out.answer is not None and out.answer["ok"]
        assert (
            out.answer["stdout"] == ("x" * 100 + "\n")[-64:] and "to stderr" in out.answer["stderr"]
        )

        old_pid = first.answer["result"]
        slow = await pool.run(spec("sleep", 30), timeout_s=0.3, stopped=never)
        assert slow.kind == "timeout" and not pid_alive(old_pid)

        crashed = await pool.run(spec("crash", 3), timeout_s=10, stopped=never)
        assert crashed.kind == "crash" and crashed.exit_code == 3

        failed = await pool.run(spec("permanent"), timeout_s=10, stopped=never)
        assert failed.answer is not None and failed.answer["retryable"] is False
        assert failed.answer["error"]["type"] == "Permanent"

        stop = StopSignal()
        marker = tmp_path / "started"
        running = asyncio.create_task(
            pool.run(spec("touch_and_sleep", str(marker), 30), timeout_s=None, stopped=stop)
        )
        deadline = asyncio.get_running_loop().time() + 10
        while not marker.exists() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # until the job runs (poll with a deadline)
        stop.set()
        assert (await asyncio.wait_for(running, 5)).kind == "stopped"
        last = await pool.run(spec("pid"), timeout_s=10, stopped=never)
        assert last.answer is not None and pool.started == 4  # three children were replaced
        last_pid = last.answer["result"]
    finally:
        await pool.close()
    assert not pid_alive(last_pid)


def test_stop_signal_runs_callbacks_once_and_at_once_when_already_set() -> None:
    signal, calls = StopSignal(), []
    unregister = signal.on_set(lambda: calls.append("a"))
    signal.on_set(lambda: calls.append("b"))()  # unregistered before the set: never runs
    signal.set()
    signal.set()
    assert calls == ["a"] and signal.is_set()
    unregister()  # after the set: harmless
    signal.on_set(lambda: calls.append("late"))
    assert calls == ["a", "late"]


@pytest.mark.asyncio
async def test_a_stopped_job_is_not_handed_over_and_outside_cancels_propagate() -> None:
    pool = PyPool(size=1, imports=["tests.worker.tasks"], kill_grace_s=0.5, tail_bytes=64)
    stopped = StopSignal()
    stopped.set()
    try:
        early = await pool.run(spec("pid"), timeout_s=10, stopped=stopped)
        assert early.kind == "stopped" and pool.started == 0  # no child was even started
        running = asyncio.create_task(
            pool.run(spec("sleep", 30), timeout_s=None, stopped=StopSignal())
        )
        await asyncio.sleep(0.5)  # into the answer wait (the outcome is the same if not yet)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        await pool.close()

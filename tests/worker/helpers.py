"""Start a real `raftsched worker` process and wait on conditions with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    cluster: str,
    queues: list[str],
    *,
    concurrency: int = 4,
    extra: list[str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "raftsched.cli",
        "worker",
        "--cluster",
        cluster,
        "--concurrency",
        str(concurrency),
        "--ttl-ms",
        "2000",
        "--long-poll-ms",
        "1000",
        "--kill-grace",
        "0.5",
        "--drain-grace",
        "10",
    ]
    for q in queues:
        argv += ["--queue", q]
    argv += extra or []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed by the OS)
    return subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def timed_out(error: object) -> bool:
    """The worker's timeout report, or the cluster's own expiry of the attempt at lease start
    + timeout_ms (whichever committed first: the worker aims to be first, with its tails)."""
    if isinstance(error, dict):
        return error.get("kind") == "timeout"
    return error == "timed out"

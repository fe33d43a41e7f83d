"""`raftsched dev` end to end: it starts 3 nodes and a worker, prints its `ready:` line, runs a
shell and a Python job submitted through the client, and stops every child on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsched.client import Client
from tests.server.procs import free_port_base
from tests.worker.helpers import ROOT, pid_alive, wait_for

NODES = 3


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[str]]]:
    http_base, peer_base = free_port_base(range(1, NODES + 1)), free_port_base(range(1, NODES + 1))
    argv = [sys.executable, "-m", "raftsched.cli", "dev", "--http-port", str(http_base),
            "--peer-port", str(peer_base), "--data-dir", str(tmp_path / "dev")]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(raw.decode(errors="replace") for raw in proc.stdout or []),
        daemon=True,
    )
    reader.start()
    try:
        ready = wait_for(
            "the ready line",
            lambda: next((ln for ln in lines if ln.startswith("ready:")), None),
            timeout=60,
        )
        urls = [w for w in ready.split() if w.startswith("http://")]
        yield proc, urls
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_dev_runs_jobs_with_its_worker_and_stops_cleanly(
    dev: tuple[subprocess.Popen[bytes], list[str]],
) -> None:
    proc, urls = dev
    assert len(urls) == NODES
    kids = children_of(proc.pid)
    assert len(kids) == NODES + 1  # the nodes and the worker
    with Client(urls, timeout_s=20.0) as c:
        c.submit("default", {"cmd": ["echo", "from dev"]}, id="dev-sh")
        c.submit("default", {"call": "operator:mul", "args": [6, 7]}, id="dev-py")
        assert c.wait("dev-sh", timeout_s=30).result["stdout"] == "from dev\n"
        assert c.wait("dev-py", timeout_s=30).result == 42
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    wait_for("every child gone", lambda: not any(pid_alive(k) for k in kids), timeout=10)

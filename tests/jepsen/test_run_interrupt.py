"""`python -m jepsen run` stopped by Ctrl-C (SIGINT) or SIGTERM while a node is paused:
it exits 130 and no node process survives it.

The harness runs as a child process; the test waits (with deadlines) until the history shows
the pause, signals the harness only (its nodes live in their own sessions), and then checks
every pid the harness recorded in cluster/pids.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.jepsen.pids import pid_gone

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


def wait_for_pause(history: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the harness ended before the fault"
        if history.exists() and '"f":"pause"' in history.read_text():
            return
        time.sleep(0.1)
    raise AssertionError("no pause in the history in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_every_node(tmp_path: Path, sig: signal.Signals) -> None:
    argv = [
        sys.executable,
        "-m",
        "jepsen",
        "run",
        "--time",
        "120",
        "--nemesis",
        "pause:leader",
        "--heal-s",
        "1",
        "--fault-s",
        "60",
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_pause(tmp_path / "history.jsonl", proc)
        pids = [
            int(p) for p in json.loads((tmp_path / "cluster" / "pids.json").read_text()).values()
        ]
        assert len(pids) == 3
        proc.send_signal(sig)
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert code == 130, f"exit {code}: {stderr[-2000:]}"
    survivors = [pid for pid in pids if not pid_gone(pid)]
    assert not survivors, f"node pids {survivors} survived the harness"

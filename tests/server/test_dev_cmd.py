"""`raftsched dev`: prints `ready:` with the URLs and the admin token once a leader is elected,
serves submits, reports a child that dies (which one and why), and stops every child on
SIGTERM with exit 0."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from raftsched.server import dev_cmd
from tests.server.procs import free_port_base


def _free_base() -> int:
    """A base port P with P+1..P+3 (HTTP) and P+11..P+13 (peers) all free right now."""
    return free_port_base((1, 2, 3, 11, 12, 13))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _read_until(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    """Lines of stdout+stderr until one contains `needle` (fails at the deadline)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.2):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout_s}s:\n{''.join(seen)}")


def test_dev_cluster_lifecycle(tmp_path: Path) -> None:
    http_base = _free_base()  # node i: HTTP on base + i, peers on base + 10 + i
    peer_base = http_base + 10
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raftsched.cli",
            "dev",
            "--no-worker",
            "--http-port",
            str(http_base),
            "--peer-port",
            str(peer_base),
            "--data-dir",
            str(tmp_path / "dev"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        ready = _read_until(proc, "ready:", 60)
        urls = [w for w in ready.split() if w.startswith("http://")]
        assert urls == [f"http://127.0.0.1:{http_base + i}" for i in (1, 2, 3)]
        assert "admin-token=" in ready
        req = urllib.request.Request(
            urls[1] + "/v1/jobs",
            method="POST",
            data=json.dumps({"id": "dev-job", "queue": "q"}).encode(),
        )
        with urllib.request.urlopen(req, timeout=15) as resp:
            assert resp.status == 201
        nodes = _children(proc.pid)
        assert len(nodes) == 3
        os.kill(nodes[0], signal.SIGKILL)
        report = _read_until(proc, "killed by SIGKILL", 30)
        assert "node" in report
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not [
            p
            for p in nodes[1:]
            if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dev_refuses_ports_in_use_instead_of_adopting_another_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Something listens on node 2's HTTP port: dev must refuse before starting any node (a
    # cluster already there would answer the readiness probe and pass for this one).
    base = _free_base()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 2))
        squatter.listen()
        code = dev_cmd.main(
            ["--http-port", str(base), "--peer-port", str(base + 10), "--no-worker"]
        )
    assert code == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{base + 2} (node 2 HTTP" in err
    assert "ready:" not in err

"""SIGKILL the writer at random points, 50 times, with and without the power-loss
failpoint: every index it reported as synced is present after reopening.

The writers are forked from the test process (a fresh interpreter per kill would spend
most of the test importing); one test also runs the writer as a real `python -m` child
with the failpoint named in its environment."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftsched.storage import DiskStorage
from raftsched.storage.files import POWER_LOSS_ENV

from . import writer
from .helpers import check_entries

KILLS = 50
WAIT_S = 30.0  # deadline for a writer to report anything at all


def _read_reports(fd: int, count: int, deadline: float) -> list[int]:
    """Indexes reported on `fd`: read until at least `count` arrived, or until end of
    file (a dead writer) when count is 0. Lines are short, so each arrives whole."""
    buf = b""
    while count == 0 or buf.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the writer reported too little before the deadline"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                assert count == 0, "the writer exited"
                break
            buf += chunk
    assert not buf or buf.endswith(b"\n"), "a partial report line"
    return [int(line) for line in buf.split()]


def _fork_writer(data_dir: Path, seed: int, power_loss: bool) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            os.close(read_fd)
            if power_loss:
                os.environ[POWER_LOSS_ENV] = "1"
            writer.run(data_dir, seed, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    return pid, read_fd


def _check(data_dir: Path, reported: int) -> None:
    storage = DiskStorage.open(data_dir, identity=writer.IDENTITY)
    assert storage.last_index() >= reported
    check_entries(storage, storage.last_index())
    storage.close()


@pytest.mark.parametrize("power_loss", [False, True], ids=["plain", "power_loss"])
def test_every_reported_index_survives_sigkill(tmp_path: Path, power_loss: bool) -> None:
    rng = random.Random(1234 + power_loss)
    reported = 0
    for _ in range(KILLS):
        pid, fd = _fork_writer(tmp_path, rng.randrange(1 << 30), power_loss)
        try:
            got = _read_reports(fd, rng.randint(1, 8), time.monotonic() + WAIT_S)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        # Reports still in the pipe were acknowledged before the kill too.
        got += _read_reports(fd, 0, time.monotonic() + WAIT_S)
        os.close(fd)
        assert got == sorted(got)
        reported = max(reported, got[-1])
        _check(tmp_path, reported)


def test_real_writer_process_with_power_loss_failpoint(tmp_path: Path) -> None:
    env = {**os.environ, POWER_LOSS_ENV: "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.writer", str(tmp_path), "7"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    try:
        assert proc.stdout is not None
        got = _read_reports(proc.stdout.fileno(), 5, time.monotonic() + WAIT_S)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    _check(tmp_path, got[-1])

"""SIGKILL the writer at random points, 50 times, with and without the power-loss
failpoint: after reopening, the log is exactly what the writer acknowledged, or that plus
a prefix of the one write it had announced but not acknowledged (never anything else: no
acknowledged entry lost, no torn or mixed write, a conflicting overwrite all or nothing).

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

KILLS = 50
WAIT_S = 30.0  # deadline for a writer to acknowledge anything at all

Log = dict[int, int]  # index -> term


def _read_lines(fd: int, acks: int, deadline: float) -> list[str]:
    """Report lines from `fd`: until at least `acks` "S" lines arrived, or until end of file
    (a dead writer) when acks is 0. Lines are short, so each arrives whole."""
    buf = b""
    while acks == 0 or buf.count(b"S ") < acks:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the writer acknowledged too little before the deadline"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                assert acks == 0, "the writer exited"
                break
            buf += chunk
    assert not buf or buf.endswith(b"\n"), "a partial report line"
    return buf.decode().splitlines()


def _apply(log: Log, first: int, count: int, term: int) -> Log:
    out = {i: t for i, t in log.items() if i < first}
    out.update(dict.fromkeys(range(first, first + count), term))
    return out


def _acknowledged(log: Log, lines: list[str]) -> tuple[Log, tuple[int, int, int] | None]:
    """The log after every acknowledged write, and the announced unacknowledged one."""
    intent: tuple[int, int, int] | None = None
    for line in lines:
        kind, *fields = line.split()
        if kind == "W":
            first, count, term = map(int, fields)
            intent = (first, count, term)
        else:
            assert kind == "S" and intent is not None
            log = _apply(log, *intent)
            assert int(fields[0]) == max(log)
            intent = None
    return log, intent


def _check(data_dir: Path, acked: Log, intent: tuple[int, int, int] | None) -> Log:
    """The reopened log must be `acked`, or `acked` plus a prefix of `intent`; returns it."""
    storage = DiskStorage.open(data_dir, identity=writer.IDENTITY)
    first, last = storage.first_index(), storage.last_index()
    stored = storage.entries(first, last + 1, 1 << 62)
    storage.close()
    assert all(e.data == writer.entry_data(e.index, e.term) for e in stored)
    found = {e.index: e.term for e in stored}
    allowed = [acked]
    if intent is not None:
        w_first, w_count, w_term = intent
        allowed += [_apply(acked, w_first, k, w_term) for k in range(1, w_count + 1)]
    tails = [{i: t for i, t in log.items() if i >= first} for log in allowed]
    assert found in tails, (
        f"stored {first}..{last} matches neither the acknowledged log (up to"
        f" {max(acked, default=0)}) nor it plus a prefix of the announced write {intent}"
    )
    return {**{i: t for i, t in acked.items() if i < first}, **found}


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


@pytest.mark.parametrize("power_loss", [False, True], ids=["plain", "power_loss"])
def test_every_acknowledged_write_survives_sigkill(tmp_path: Path, power_loss: bool) -> None:
    rng = random.Random(1234 + power_loss)
    log: Log = {}
    overwrites = 0
    for _ in range(KILLS):
        pid, fd = _fork_writer(tmp_path, rng.randrange(1 << 30), power_loss)
        try:
            lines = _read_lines(fd, rng.randint(1, 8), time.monotonic() + WAIT_S)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        lines += _read_lines(fd, 0, time.monotonic() + WAIT_S)  # sent before the kill
        os.close(fd)
        acked, intent = _acknowledged(log, lines)
        overwrites += sum(
            1
            for line in lines
            if line.startswith("W") and int(line.split()[1]) <= max(log, default=0)
        )
        log = _check(tmp_path, acked, intent)
    assert overwrites > 0  # the runs did overwrite tails, across kills


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
        lines = _read_lines(proc.stdout.fileno(), 5, time.monotonic() + WAIT_S)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.stdout is not None
    lines += _read_lines(proc.stdout.fileno(), 0, time.monotonic() + WAIT_S)
    _check(tmp_path, *_acknowledged({}, lines))

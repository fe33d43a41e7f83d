"""The disk layer's failpoints are read from the environment (the jepsen harness and the crash
tests set them on real node processes) and do what they say."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from raftsched.storage.files import ENOSPC_ENV, FSYNC_DELAY_ENV, POWER_LOSS_ENV, DiskIO

LOG = logging.getLogger("test.failpoints")


def test_failpoints_are_off_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (POWER_LOSS_ENV, ENOSPC_ENV, FSYNC_DELAY_ENV):
        monkeypatch.delenv(name, raising=False)
    io = DiskIO.from_env(fsync=True, log=LOG)
    assert not io.power_loss and io.fsync_delay_s == 0.0


def test_fsync_delay_sleeps_before_the_held_data_reaches_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FSYNC_DELAY_ENV, "60")
    monkeypatch.setenv(POWER_LOSS_ENV, "1")
    io = DiskIO.from_env(fsync=True, log=LOG)
    assert io.fsync_delay_s == pytest.approx(0.06)
    path = tmp_path / "seg"
    fd = io.open_append(path, create=True)
    try:
        io.write(fd, b"abc", "seg")
        assert path.read_bytes() == b""  # held until the fsync (power-loss failpoint)
        started = time.monotonic()
        io.fsync(fd, "seg")
        assert time.monotonic() - started >= 0.06
        assert path.read_bytes() == b"abc" and io.fsync_count == 1
    finally:
        os.close(fd)

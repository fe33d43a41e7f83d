"""The clock-offset failpoint: a node process started with it reads its wall clock off by the
offset (the jepsen harness's clock nemesis), and without it reads the real clock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raftsched.server.wall_clock import CLOCK_OFFSET_ENV

PROBE = (
    "import time; from raftsched.server.wall_clock import wall_ms; "
    "print(round((wall_ms() - time.time() * 1000) / 1000))"
)


def _offset_s(value: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != CLOCK_OFFSET_ENV}
    if value is not None:
        env[CLOCK_OFFSET_ENV] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout), out.stderr


@pytest.mark.parametrize(("value", "seconds"), [(None, 0), ("-90000", -90), ("3600000", 3600)])
def test_offset_moves_the_wall_clock(value: str | None, seconds: int) -> None:
    offset, stderr = _offset_s(value)
    assert offset == seconds
    assert ("UNSAFE" in stderr) == (value is not None)


def test_a_malformed_offset_is_ignored_with_a_warning() -> None:
    offset, stderr = _offset_s("ten minutes")
    assert offset == 0 and "not an integer" in stderr

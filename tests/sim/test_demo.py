"""The narrated demo runs, tells its story, and ends with equal replica hashes."""

from __future__ import annotations

import io

from rich.console import Console

from raftsched.sim.demo import run_demo


def test_demo_narrates_and_converges() -> None:
    out = io.StringIO()
    assert run_demo(Console(file=out, width=200, highlight=False)) == 0
    text = out.getvalue()
    for step in (
        "won the election",
        "crashed",
        "elected leader",
        "partition",
        "partition healed",
        "all replica state hashes equal: yes",
        "linearizable: True",
    ):
        assert step in text

"""The simulator's command line: help, bug list, replay, exit statuses."""

from __future__ import annotations

import pytest

from raftsched.sim.bugs import BUGS
from raftsched.sim.cli import build_parser, main


def test_help_explains_every_flag() -> None:
    text = build_parser().format_help()
    for flag in (
        "--seeds",
        "--nodes",
        "--seed-start",
        "--seed",
        "--ticks",
        "--bug",
        "--list-bugs",
        "--verbose",
        "--demo",
        "--keep-going",
        "--unordered-links",
    ):
        assert flag in text


def test_list_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-bugs"]) == 0
    out = capsys.readouterr().out
    for name in BUGS:
        assert name in out


def test_clean_seeds_exit_zero_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "seeds 3" in out and "violations 0" in out


def test_a_caught_bug_exits_nonzero_and_prints_the_replay_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--bug", "vote-without-log-check", "--seeds", "50"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION" in out
    assert "python -m raftsched.sim --seed" in out and "--bug vote-without-log-check" in out


def test_verbose_replay_prints_a_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "5", "--nodes", "5", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "is leader of term" in out
    assert "trace hash" in out


def test_unknown_bug_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bug", "no-such-bug"]) == 2
    assert "unknown bug" in capsys.readouterr().out

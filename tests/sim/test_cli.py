"""The simulator's command line: help, bug list, replay, exit statuses."""

from __future__ import annotations

import dataclasses

import pytest

from raftsched.sim import cli
from raftsched.sim.bugs import BUGS
from raftsched.sim.cli import build_parser, main
from raftsched.sim.run import RunResult, SimConfig, run_seed


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
        "--serial-host",
        "--topology",
        "--allow-unknown",
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
    assert "scripts/sim --seed" in out and "--bug vote-without-log-check" in out
    # Each failing seed is reported once, in one section.
    assert out.count("VIOLATION") == 1 and out.count("replay:") == 1


def test_verbose_replay_prints_a_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "5", "--nodes", "5", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "is leader of term" in out
    assert "trace hash" in out


def test_unknown_bug_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bug", "no-such-bug"]) == 2
    assert "unknown bug" in capsys.readouterr().out


def test_an_unknown_history_fails_unless_allowed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checker that gave up is never "valid": the run fails unless --allow-unknown."""

    def gave_up(config: SimConfig, trace_sink: object = None) -> RunResult:
        del trace_sink
        result = run_seed(dataclasses.replace(config, check_linearizability=False))
        return dataclasses.replace(result, linearizable=None, unknown=True)

    monkeypatch.setattr(cli, "run_seed", gave_up)
    assert main(["--seeds", "2"]) == 1
    out = capsys.readouterr().out
    assert "unknown 2" in out and "UNKNOWN" in out and "--allow-unknown" in out
    assert main(["--seeds", "2", "--allow-unknown"]) == 0
    assert "unknown 2" in capsys.readouterr().out


def test_serial_host_and_topologies_run(capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--serial-host"], ["--topology", "1-voter"], ["--topology", "2-voters"]):
        assert main(["--seeds", "2", *flags]) == 0, flags
        assert "violations 0" in capsys.readouterr().out

"""`python -m jepsen` arguments: bad ones exit 2 before any process starts; --help explains."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepsen import cli


def problem(*argv: str) -> str | None:
    return cli.argument_problem(cli.build_parser().parse_args(["run", *argv]))


def test_defaults_are_fine() -> None:
    assert problem() is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--rate", "0"), "--rate must be positive"),
        (("--time", "-1"), "--time must be positive"),
        (("--clients", "0"), "--clients must be positive"),
        (("--nemesis", "explode"), "unknown nemesis"),
        (("--nemesis", "partition:ring"), "needs 5 nodes"),
        (("--fsync-delay-ms", "-1"), "--fsync-delay-ms must be >= 0"),
    ],
)
def test_bad_arguments_are_named(argv: tuple[str, ...], says: str) -> None:
    found = problem(*argv)
    assert found is not None and says in found


def test_out_with_a_previous_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("")
    found = problem("--out", str(tmp_path))
    assert found is not None and "already holds a run" in found
    assert problem("--out", str(tmp_path / "new")) is None


def test_main_exits_2_on_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--rate", "0"]) == 2
    assert "--rate must be positive" in capsys.readouterr().out


def test_help_lists_every_nemesis_and_unsafe_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("partition", "isolate-leader", "kill", "pause", "member", "delay", "transfer"):
        assert word in text
    assert "stale_reads" in text and "ack_before_fsync" in text
    assert "jepsen/store" in text


def test_default_out_is_unique(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "STORE", tmp_path)
    first = cli.default_out(7)
    first.mkdir()
    second = cli.default_out(7)
    assert second != first and second.name.startswith(first.name)

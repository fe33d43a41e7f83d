"""The hand-made histories in tests/jepsen/histories/ give the verdicts in expected.json.

Each file is a small story written as a runner would record it (nemesis events included):
valid-with-faults (concurrency, indeterminate ops, a retried complete), and the classic
anomalies -- a stale read after a complete, one job leased to two workers that both complete,
a submit lost in a crash, diverged replicas with a stuck job.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from jepsen.checkers import check_all
from jepsen.history import read_history

HISTORIES = Path(__file__).parent / "histories"
EXPECTED: dict[str, dict[str, str]] = json.loads(
    (HISTORIES / "expected.json").read_text(encoding="utf-8")
)


def test_every_fixture_has_an_expectation() -> None:
    files = {path.stem for path in HISTORIES.glob("*.jsonl")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verdicts(name: str) -> None:
    ops = read_history(HISTORIES / f"{name}.jsonl")
    report = check_all(ops)
    verdicts = {check: result["verdict"] for check, result in report["checks"].items()}
    assert verdicts == EXPECTED[name]
    invalid = [check for check, verdict in verdicts.items() if verdict == "invalid"]
    assert report["valid"] is (not invalid and "unknown" not in verdicts.values())
    for check in invalid:
        details = report["checks"][check]["details"]
        # every failing check names the operations that show it (history indexes)
        assert "ops" in json.dumps(details), (name, check, details)


# Histories recorded by `python -m jepsen run` against a real 3-node cluster (2026-12-02):
#   partition-kill-pause-seed7: --time 25 --nemesis partition,kill,pause --seed 7 (valid)
#   unsafe-stale-reads-seed3:   --time 30 --nemesis partition:isolate-leader
#                               --unsafe stale_reads --seed 3 (reads served by an isolated
#                               old leader: must be caught)
RECORDED = HISTORIES / "recorded"


def _recorded(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(gzip.decompress((RECORDED / f"{name}.jsonl.gz").read_bytes()))
    return path


def test_recorded_valid_run(tmp_path: Path) -> None:
    ops = read_history(_recorded("partition-kill-pause-seed7", tmp_path))
    report = check_all(ops)
    verdicts = {check: result["verdict"] for check, result in report["checks"].items()}
    assert set(verdicts.values()) == {"valid"}, verdicts


def test_recorded_stale_reads_are_caught(tmp_path: Path) -> None:
    ops = read_history(_recorded("unsafe-stale-reads-seed3", tmp_path))
    report = check_all(ops)
    checks = report["checks"]
    assert report["verdict"] == "invalid"
    assert checks["linearizable"]["valid"] is False
    assert [f["job_id"] for f in checks["linearizable"]["details"]["failures"]] == ["j40", "j47"]
    assert checks["no-lost-jobs"]["valid"] is False
    assert {item["kind"] for item in checks["no-lost-jobs"]["details"]["lost"]} == {
        "read: not found"
    }
    for name in ("no-double-completion", "tokens-increase", "replicas-converge"):
        assert checks[name]["valid"] is True, name


def test_recheck_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jepsen.checkers.__main__ import main

    assert main([str(HISTORIES / "valid-with-faults.jsonl")]) == 0
    out = tmp_path / "report"
    assert main([str(HISTORIES / "lost-submit.jsonl"), "--out", str(out)]) == 1
    assert (out / "results.json").exists() and (out / "index.html").exists()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n", encoding="utf-8")
    assert main([str(broken)]) == 3
    printed = capsys.readouterr()
    assert "INVALID" in printed.out and "line 1: not JSON" in printed.err

"""The hand-made histories in tests/jepsen/histories/ give the verdicts in expected.json.

Each file is a small story written as a runner would record it (nemesis events included):
valid-with-faults (concurrency, indeterminate ops, a retried complete), and the classic
anomalies -- a stale read after a complete, one job leased to two workers that both complete,
a submit lost in a crash, diverged replicas with a stuck job.
"""

from __future__ import annotations

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

"""jepsen/report.py writes a valid results.json and a self-contained index.html."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from jepsen.checkers import check_all
from jepsen.checkers.testing import HistoryBuilder
from jepsen.history import Op
from jepsen.report import (
    fault_windows,
    flagged_ops,
    latency_stats,
    op_counts,
    timeline_svg,
    write_report,
)


def _history() -> list[Op]:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.submit(1, "b")
    h.nemesis("partition", {"kind": "isolate-leader", "nodes": [1]})
    h.lease(2, "a", 10)
    h.invoke(3, "lease", {"queue": "q", "worker_id": "w3"})
    h.info(3, "timeout")
    h.nemesis("kill", {"nodes": [2]})
    h.nemesis("heal", {})
    h.invoke(2, "complete", {"job_id": "a", "token": 10})
    h.fail(2, "409 stale_token <script>")
    h.nemesis("start", {"nodes": [2]})
    h.nemesis("transfer-leader", {"to": 3})
    h.nemesis("pause", {"nodes": [3]})  # never resumed: open to the end
    h.final_read("a", "pending", 10, 1)
    h.final_read("b", "pending")
    h.state_hash(1, 9, "x")
    h.state_hash(2, 9, "x")
    h.invoke(4, "read", {"job_id": "a"})  # never completed
    return h.ops


def test_fault_windows_pair_start_and_stop_events() -> None:
    windows = fault_windows(_history())
    kinds = [(w.kind, w.end_s is None, w.closed) for w in windows]
    assert kinds == [
        ("partition", False, True),
        ("kill", False, True),
        ("transfer-leader", True, True),
        ("pause", False, False),
    ]
    partition = windows[0]
    assert partition.end_s is not None and partition.end_s > partition.start_s


def test_heal_all_ends_every_window() -> None:
    h = HistoryBuilder()
    h.nemesis("kill", {"nodes": [1]})
    h.nemesis("pause", {"nodes": [2]})
    h.nemesis("heal", {"kind": "all", "resumed": [2], "started": [1]})
    h.read(1, "a", None)
    windows = fault_windows(h.ops)
    assert [(w.kind, w.end_s, w.closed) for w in windows] == [
        ("kill", 0.002, True),
        ("pause", 0.002, True),
    ]


def test_member_replacement_is_a_window() -> None:
    h = HistoryBuilder()
    h.nemesis("remove-member", {"kind": "replace", "node": 2, "removed": True})
    h.nemesis("add-member", {"node": 4, "added": True})
    windows = fault_windows(h.ops)
    assert [(w.kind, w.end_s) for w in windows] == [("remove-member", 0.001)]


def test_counts_and_latencies() -> None:
    ops = _history()
    counts = op_counts(ops)
    assert counts["lease"] == {"invoke": 2, "ok": 1, "fail": 0, "info": 1, "open": 0}
    assert counts["complete"]["fail"] == 1
    assert counts["read"]["open"] == 1
    stats = latency_stats(ops)
    assert stats["submit"]["count"] == 2
    assert stats["submit"]["p50_ms"] == 1.0  # the builder's clock: 1 ms per line
    assert "complete" not in stats  # only ok operations


@pytest.mark.parametrize("use_matplotlib", [True, False])
def test_write_report_files(tmp_path: Path, use_matplotlib: bool) -> None:
    ops = _history()
    report = check_all(ops)
    written = write_report(
        tmp_path / "run", ops, report, {"name": "unit", "nodes": 3}, use_matplotlib=use_matplotlib
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert results["meta"] == {"name": "unit", "nodes": 3}
    assert results["verdict"] == report["verdict"]
    assert set(results["checks"]) == set(report["checks"])
    assert results["op_counts"]["submit"]["ok"] == 2
    assert results["latency_ms"]["lease"]["count"] == 1
    assert results["faults"][0]["kind"] == "partition"
    page = (tmp_path / "run" / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    for name in report["checks"]:
        assert name in page
    assert "<script>" not in page  # values are escaped
    assert 'class="fault"' in page
    svgs = [part.split("</svg>")[0] + "</svg>" for part in page.split("<svg")[1:]]
    for svg in svgs:
        ElementTree.fromstring("<svg" + svg)  # well-formed
    if use_matplotlib and "latency.png" in written:
        assert (tmp_path / "run" / "latency.png").read_bytes().startswith(b"\x89PNG")
        assert "data:image/png;base64," in page
    else:
        assert "latency.png" not in written
        assert "ok ops/s" in page


def test_timeline_samples_ok_ops_but_keeps_every_failure() -> None:
    h = HistoryBuilder()
    for n in range(3000):
        h.read(n % 5, f"j{n}", None)
    for n in range(1500):
        h.invoke(100 + n, "read", {"job_id": "x"})
        h.info(100 + n)
    svg, drawn, total = timeline_svg(h.ops, [])
    assert total == 4500
    assert drawn <= 4000
    assert svg.count('class="op info"') == 1500


def test_ops_named_by_failing_checks_are_outlined(tmp_path: Path) -> None:
    h = HistoryBuilder()
    h.submit(1, "a")
    h.lease(2, "a", 10)
    h.complete(2, "a", 10)
    stale = h.read(3, "a", "leased", 10, 1)
    report = check_all(h.ops)
    flagged = flagged_ops(report)
    assert stale.index - 1 in flagged  # the stale read's invoke
    written = write_report(tmp_path, h.ops, report, {}, use_matplotlib=False)
    page = written["index.html"].read_text(encoding="utf-8")
    assert page.count('stroke="#000000" stroke-width="2"') >= 2
    assert "FLAGGED by a check: #6 p3 read" in page
    assert "<pre>not linearizable: key &#x27;a&#x27;" in page  # the explanation as text


def test_title_from_the_runner_options(tmp_path: Path) -> None:
    meta = {"options": {"workload": "queue", "nodes": 5, "nemesis": "kill", "unsafe": []}}
    written = write_report(tmp_path, _history(), check_all(_history()), meta, use_matplotlib=False)
    assert "<title>jepsen queue, nodes 5, nemesis kill:" in written["index.html"].read_text(
        encoding="utf-8"
    )


def test_empty_history_report(tmp_path: Path) -> None:
    written = write_report(tmp_path, [], check_all([]), {}, use_matplotlib=False)
    assert json.loads(written["results.json"].read_text(encoding="utf-8"))["history"] == {
        "lines": 0,
        "duration_s": 0.0,
    }

"""Smoke run of the benchmarks in CI: tiny sizes, real measurements, the report renders.

The figures themselves are not asserted (CI machines vary); what is asserted is that each
benchmark really did the work it reports and that the summary carries every figure."""

from __future__ import annotations

import pytest

from bench.__main__ import render_summary
from bench.raft_core import run as run_raft_core
from bench.sched_apply import measure


def test_sched_bench_measures_every_figure() -> None:
    figures = measure(total=20_000, batch=50, gc_mode="runtime")
    for key in (
        "submits_per_s",
        "batched_jobs_per_s",
        "leases_per_s",
        "completes_per_s",
        "lease_us_at_10k",
        "lease_us_at_depth",
        "rss_mib_per_million_jobs",
    ):
        assert figures[key] > 0, key
    assert figures["lease_cost_ratio"] == pytest.approx(
        figures["lease_us_at_depth"] / figures["lease_us_at_10k"]
    )


def test_summary_reports_each_batch_and_target() -> None:
    raft = [run_raft_core(entries=2048, batch=b, window=512) for b in (16, 256)]
    sched = {
        "jobs_pending": 20_000,
        "batch_size": 50,
        "gc_thresholds": {"runtime": [50_000, 2, 100]},
        "results": {"runtime": measure(total=20_000, batch=50, gc_mode="runtime")},
    }
    text = render_summary(raft, sched, "test machine", "python -m bench --quick")
    assert "test machine" in text and "python -m bench --quick" in text
    for r in raft:
        assert f"| {r['batch']} | {r['entries_per_cpu_s']:,} |" in text
    assert "lease cost ratio" in text and "MiB per million pending jobs" in text

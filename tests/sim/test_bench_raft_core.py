"""bench/raft_core.py measures real commits through a 3-node cluster (a small run)."""

from __future__ import annotations

from bench.raft_core import run


def test_bench_commits_every_entry_on_all_nodes() -> None:
    result = run(entries=4096, batch=256, window=1024)
    assert result["committed_entries"] >= 4096
    assert result["entries_per_cpu_s"] > 0
    assert result["batch"] == 256

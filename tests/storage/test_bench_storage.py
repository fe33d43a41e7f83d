"""Smoke run of `python -m bench.storage` with tiny sizes: real measurements, every figure
present and positive, the report renders each Ready size with its goal. The figures
themselves are not asserted (CI disks vary)."""

from __future__ import annotations

from pathlib import Path

from bench.storage import READY_SIZES, render, run


def test_storage_bench_measures_every_figure(tmp_path: Path) -> None:
    result = run(tmp_path, syncs=dict.fromkeys(READY_SIZES, 5), open_entries=3000)
    assert [r["ready_size"] for r in result["ready"]] == list(READY_SIZES)
    for r in result["ready"]:
        assert r["entries_per_s"] > 0 and r["fsyncs_per_s"] > 0
        assert r["bytes_per_entry"] > 100  # the payload plus framing
        assert r["floor_fsync_per_s"] > 0 and r["floor_fdatasync_per_s"] > 0
    assert result["open"]["entries"] == 3000 and result["open"]["open_s"] > 0
    text = render(result, "test machine", "python -m bench.storage --quick", "/tmp (ext4)")
    assert "test machine" in text and "python -m bench.storage --quick" in text
    for size in READY_SIZES:
        assert f"\n| {size} | " in text
    assert "Open of 3,000 entries" in text and "fdatasync" in text

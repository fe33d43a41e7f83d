"""`python -m raftsched.storage.inspect` reports without changing anything."""

from __future__ import annotations

import os
from pathlib import Path

from raftsched.storage.inspect import inspect, main

from .helpers import build


def test_inspect_reports_repairs_and_corruption_without_changing_files(tmp_path: Path) -> None:
    build(tmp_path, 200, batch=10, segment_bytes=4096)
    lines: list[str] = []
    assert inspect(tmp_path, lines) == 0
    assert "log: entries 1..200 (base term 0)" in lines
    assert any("sealed" in line for line in lines) and any("open" in line for line in lines)

    last = sorted(tmp_path.glob("*.wal"))[-1]
    size = last.stat().st_size
    os.truncate(last, size - 3)
    lines = []
    assert inspect(tmp_path, lines) == 0
    assert any(line.startswith(f"would truncate {last}") for line in lines)
    assert last.stat().st_size == size - 3  # untouched

    first = sorted(tmp_path.glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    data[100] ^= 1
    first.write_bytes(bytes(data))
    lines = []
    assert inspect(tmp_path, lines) == 1
    assert lines[0].startswith(f"CORRUPT: corrupt storage: {first} at byte offset")
    assert main([str(tmp_path / "missing")]) == 2

"""Durable storage throughput: DiskStorage against the disk's raw fsync floor, same run.

Theory of operation: every figure is wall-clock time on a real directory (default: a fresh
temp dir under --dir, so the same disk for all of them) with fsync policy "always".

- ready sizes 1, 16, 256: each iteration persists one Ready of R 100-byte entries plus a
  hard state (commit moves), then `sync()`: one write and one fdatasync (group commit).
  Reported: entries/s, fsyncs/s, bytes written per entry (record framing overhead included,
  segment headers and seals amortized).
- floor, measured in rounds alternating with each ready size (a shared disk's speed varies
  a lot within a minute, so both see the same load): a plain loop of os.write(128 bytes) +
  os.fsync on one file, and the same with os.fdatasync: the most syncs per second this disk
  gives a single writer. The ratio uses the faster of the two.
- open: a data dir of --open-entries 100-byte entries (written with the unsafe policy
  "never", that part is not timed), closed, then `DiskStorage.open` timed: sealed segments
  are checked with one CRC32C call each and indexed from their SEAL summaries.

Goals (issue 8): at R=1 within 1.3x of the floor's fsync rate; at R=256 at least 100,000
entries/s; opening 1,000,000 entries under 2 s.

    python -m bench.storage [--quick] [--dir DIR] [--out FILE]

Writes bench/results/storage.json and bench/results/storage.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from raftsched.raft.types import Entry, EntryKind, HardState
from raftsched.storage import DiskStorage

RESULTS_DIR = Path(__file__).resolve().parent / "results"
READY_SIZES = (1, 16, 256)
ENTRY_BYTES = 100
FLOOR_RECORD_BYTES = 128  # one 100-byte entry plus its framing, roughly
GOAL_FLOOR_RATIO = 1.3
GOAL_ENTRIES_PER_S_AT_256 = 100_000
GOAL_OPEN_S = 2.0
ROUND_SYNCS = 25  # syncs per alternating round: short rounds track load changes closely


class FloorLoop:
    """The raw floor: os.write of one small record + os.fsync (or os.fdatasync, what
    DiskStorage calls) on one file of the same directory."""

    def __init__(self, path: Path, *, data_only: bool) -> None:
        self._path = path
        self._flush = os.fdatasync if data_only else os.fsync
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def run(self, iterations: int) -> float:
        """Seconds for `iterations` write + flush pairs."""
        record = b"x" * FLOOR_RECORD_BYTES
        start = time.perf_counter()
        for _ in range(iterations):
            os.write(self._fd, record)
            self._flush(self._fd)
        return time.perf_counter() - start

    def close(self) -> None:
        os.close(self._fd)
        self._path.unlink()


def measure_ready_size(data_dir: Path, ready_size: int, syncs: int) -> dict[str, float]:
    """Storage and both floors measured in alternating rounds, so a change in the machine's
    load during the run hits all three alike (a shared disk varies 10x within a minute)."""
    payload = b"p" * ENTRY_BYTES
    rounds = max(1, syncs // ROUND_SYNCS)
    per_round = max(1, syncs // rounds)
    batches = [
        [Entry(1, i, EntryKind.NORMAL, payload) for i in range(first, first + ready_size)]
        for first in range(1, per_round * rounds * ready_size + 1, ready_size)
    ]
    storage = DiskStorage.open(data_dir / f"ready{ready_size}")
    floors = {
        "fsync": FloorLoop(data_dir / "floor_fsync.bin", data_only=False),
        "fdatasync": FloorLoop(data_dir / "floor_fdatasync.bin", data_only=True),
    }
    seconds = dict.fromkeys([*floors, "storage"], 0.0)
    fsyncs, written = storage.fsync_count, storage.bytes_written

    def storage_round(r: int) -> float:
        start = time.perf_counter()
        for batch in batches[r * per_round : (r + 1) * per_round]:
            storage.append(batch)
            storage.set_hard_state(HardState(1, 1, batch[0].index))
            storage.sync()
        return time.perf_counter() - start

    steps: list[tuple[str, Callable[[int], float]]] = [
        *((name, lambda _r, loop=loop: loop.run(per_round)) for name, loop in floors.items()),
        ("storage", storage_round),
    ]
    try:
        for r in range(rounds):  # rotate the order too: no side always goes first
            for name, step in steps[r % 3 :] + steps[: r % 3]:
                seconds[name] += step(r)
    finally:
        for loop in floors.values():
            loop.close()
    fsyncs, written = storage.fsync_count - fsyncs, storage.bytes_written - written
    storage.close()
    entries = len(batches) * ready_size
    return {
        "ready_size": ready_size,
        "syncs": len(batches),
        "seconds": seconds["storage"],
        "entries_per_s": entries / seconds["storage"],
        "fsyncs_per_s": fsyncs / seconds["storage"],
        "bytes_per_entry": written / entries,
        "floor_fsync_per_s": per_round * rounds / seconds["fsync"],
        "floor_fdatasync_per_s": per_round * rounds / seconds["fdatasync"],
    }


def measure_open(data_dir: Path, entries: int, batch: int = 4096) -> dict[str, float]:
    path = data_dir / "open"
    payload = b"o" * ENTRY_BYTES
    storage = DiskStorage.open(path, fsync="never")
    for first in range(1, entries + 1, batch):
        count = min(batch, entries + 1 - first)
        storage.append(
            [Entry(1, i, EntryKind.NORMAL, payload) for i in range(first, first + count)]
        )
        storage.sync()
    storage.close()
    start = time.perf_counter()
    reopened = DiskStorage.open(path)
    elapsed = time.perf_counter() - start
    assert reopened.last_index() == entries
    assert reopened.entries(entries // 2, entries // 2 + 1, 1 << 20)[0].data == payload
    segments = len(reopened.segment_paths())
    reopened.close()
    return {"entries": entries, "segments": segments, "open_s": elapsed}


def run(data_dir: Path, *, syncs: dict[int, int], open_entries: int) -> dict[str, Any]:
    ready = [measure_ready_size(data_dir, r, syncs[r]) for r in READY_SIZES]
    opened = measure_open(data_dir, open_entries)
    return {
        "ready": ready,
        "open": opened,
        "entry_bytes": ENTRY_BYTES,
    }


def render(result: dict[str, Any], machine: str, command: str, where: str) -> str:
    lines = [
        "# raftsched storage benchmark (DiskStorage, fsync always)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}  ",
        f"Disk: {where}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Raw floor: a loop of os.write({FLOOR_RECORD_BYTES} B) + os.fsync, and the same with"
        " os.fdatasync, on the same disk, measured in rounds alternating with the storage's"
        " (so load changes hit both). floor / fsyncs compares with the faster of the two.",
        "",
        f"| Ready size ({result['entry_bytes']}-byte entries) | entries/s | fsyncs/s |"
        " floor fsync/s (fsync, fdatasync) | floor / fsyncs | bytes per entry | goal |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["ready"]:
        floor = max(r["floor_fsync_per_s"], r["floor_fdatasync_per_s"])
        ratio = floor / r["fsyncs_per_s"] if r["fsyncs_per_s"] else float("inf")
        if r["ready_size"] == 1:
            goal = f"floor/fsyncs <= {GOAL_FLOOR_RATIO} ({_met(ratio <= GOAL_FLOOR_RATIO)})"
        elif r["ready_size"] == 256:
            ok = r["entries_per_s"] >= GOAL_ENTRIES_PER_S_AT_256
            goal = f">= {GOAL_ENTRIES_PER_S_AT_256:,} entries/s ({_met(ok)})"
        else:
            goal = ""
        lines.append(
            f"| {r['ready_size']} | {r['entries_per_s']:,.0f} | {r['fsyncs_per_s']:,.0f} |"
            f" {r['floor_fsync_per_s']:,.0f}, {r['floor_fdatasync_per_s']:,.0f} |"
            f" {ratio:.2f} | {r['bytes_per_entry']:.1f} | {goal} |"
        )
    opened = result["open"]
    open_ok = _met(opened["open_s"] < GOAL_OPEN_S)
    lines += [
        "",
        f"Open of {opened['entries']:,} entries ({opened['segments']} segments):"
        f" {opened['open_s']:.3f} s (goal < {GOAL_OPEN_S} s: {open_ok})",
    ]
    return "\n".join(lines) + "\n"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, same outputs")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="parent of the scratch directory (default: the system temp dir)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where storage.json and storage.md go (default: bench/results)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        syncs, open_entries = {1: 50, 16: 20, 256: 10}, 20_000
    else:
        syncs, open_entries = {1: 1000, 16: 500, 256: 400}, 1_000_000
    scratch = Path(tempfile.mkdtemp(prefix="raftsched-bench-storage-", dir=args.dir))
    try:
        result = run(scratch, syncs=syncs, open_entries=open_entries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = "python -m bench.storage" + (" --quick" if args.quick else "")
    where = f"{scratch.parent} ({_filesystem(scratch.parent)})"
    result.update(machine=machine_line(), command=command, disk=where)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "storage.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = render(result, result["machine"], command, where)
    (out / "storage.md").write_text(summary)
    print(summary)
    return 0


def _filesystem(path: Path) -> str:
    """The file system type holding `path`, from /proc/mounts (best effort)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    sys.exit(main())

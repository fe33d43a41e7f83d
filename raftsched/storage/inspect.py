"""`python -m raftsched.storage.inspect DATA_DIR`: check a data directory without changing it.

Runs the same recovery as opening (docs/storage.md), with a disk layer that refuses every
change: a torn tail that opening would truncate is reported instead ("would truncate"), and
corruption is reported with the file, offset and what was expected. Prints the segments, the
log range, the hard state and the snapshot. Exit status: 0 readable (possibly with a torn
tail to repair), 1 corrupt, 2 usage error. Safe on the directory of a stopped node; on a
running node's directory it may report the tail being written as torn.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .disk import IDENTITY_FILE, LOGGER_NAME
from .errors import CorruptStorageError
from .files import DiskIO
from .recovery import recover
from .snapshots import read_snapshot, snapshot_name


class ReadOnlyIO(DiskIO):
    """A disk layer that records the repairs recovery asks for instead of doing them."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__(fsync=False, log=log)
        self.repairs: list[str] = []

    def truncate(self, path: Path, size: int) -> None:
        self.repairs.append(f"would truncate {path} to {size} bytes (torn tail)")

    def unlink(self, path: Path) -> None:
        self.repairs.append(f"would remove {path}")

    def fsync_dir(self, path: Path) -> None:
        pass


def inspect(data_dir: Path, out: list[str]) -> int:
    """Append the report's lines to `out`; returns the exit status."""
    log = logging.getLogger(LOGGER_NAME)
    io = ReadOnlyIO(log)
    try:
        recovered = recover(data_dir, io, log)
        if recovered is not None and recovered.snap.number:
            snap = recovered.snap
            read_snapshot(data_dir / snapshot_name(snap.index, snap.number), snap.index, snap.term)
    except CorruptStorageError as exc:
        out.append(f"CORRUPT: {exc}")
        return 1
    identity = data_dir / IDENTITY_FILE
    out.append(
        f"data dir: {data_dir} (identity file {'present' if identity.exists() else 'absent'})"
    )
    if recovered is None:
        out.append("no log segments (a new node)")
    else:
        index = recovered.index
        for seg in recovered.segments:
            run = f"entries {seg.lo}..{seg.hi - 1}" if len(seg.offsets) else "no live entries"
            state = "sealed" if seg.sealed else "open"
            out.append(f"segment {seg.path.name}: {seg.end} bytes, {state}, {run}")
        out.append(
            f"log: entries {index.base_index + 1}..{index.last} (base term {index.base_term})"
        )
        out.append(f"hard state: {recovered.hard_state}")
        snap = recovered.snap
        out.append(f"snapshot: index {snap.index} term {snap.term} file number {snap.number}")
    out.extend(io.repairs)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raftsched.storage.inspect", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"not a directory: {args.data_dir}", file=sys.stderr)
        return 2
    lines: list[str] = []
    status = inspect(args.data_dir, lines)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())

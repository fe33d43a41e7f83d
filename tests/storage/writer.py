"""A writer process for the kill tests: appends, syncs, and reports each synced index.

    python -m tests.storage.writer DATA_DIR SEED

It reopens DATA_DIR (recovering whatever the previous, killed, writer left), then loops:
append a random batch of entries with `helpers.payload` data, set the hard state, now and
then take a snapshot and compact behind it, sync, and only then print the last index on
stdout. Every printed index was acknowledged, so it must survive a SIGKILL at any point.
Segments are tiny so that kills land during seals, segment creation and deletion too.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from raftsched.raft.types import HardState, Membership
from raftsched.storage import DiskStorage

from .helpers import entries

SEGMENT_BYTES = 8192
IDENTITY = (3, 1)


def run(data_dir: Path, seed: int, out_fd: int) -> None:
    """Write and report until killed."""
    rng = random.Random(seed)
    storage = DiskStorage.open(data_dir, identity=IDENTITY, segment_bytes=SEGMENT_BYTES)
    term = storage.hard_state().term + 1
    while True:
        last = storage.last_index()
        storage.append(entries(last + 1, rng.randint(1, 40), term))
        last = storage.last_index()
        storage.set_hard_state(HardState(term, 1, last))
        if rng.random() < 0.1 and last > storage.snapshot().meta.index + 50:
            storage.create_snapshot(last - 20, Membership(frozenset({1})), b"app" * 50)
            storage.compact(last - 40)
        storage.sync()
        os.write(out_fd, f"{last}\n".encode())


def main(argv: list[str]) -> int:
    run(Path(argv[0]), int(argv[1]), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

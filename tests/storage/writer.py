"""A writer process for the kill tests: appends (sometimes overwriting its tail with a new
term, as a follower does for a new leader), syncs, and reports on stdout.

    python -m tests.storage.writer DATA_DIR SEED

It reopens DATA_DIR (recovering whatever the previous, killed, writer left), then loops:

    print "W first count term"     the write it is about to make (an intent, not an ack)
    append entries first..first+count-1 of `term` (replacing any >= first), set the hard
    state, now and then take a snapshot and compact behind it, sync
    print "S last"                 acknowledged: everything above is durable

Entry data is `entry_data(index, term)`, so a checker can tell every entry apart. Segments
are tiny so that kills land during seals, segment creation and deletion too.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from raftsched.raft.types import Entry, EntryKind, HardState, Membership
from raftsched.storage import DiskStorage

from .helpers import payload

SEGMENT_BYTES = 8192
IDENTITY = (3, 1)


def entry_data(index: int, term: int) -> bytes:
    return payload(index) + b"@%d" % term


def run(data_dir: Path, seed: int, out_fd: int) -> None:
    """Write and report until killed."""
    rng = random.Random(seed)
    storage = DiskStorage.open(data_dir, identity=IDENTITY, segment_bytes=SEGMENT_BYTES)
    term = storage.hard_state().term + 1
    while True:
        last = storage.last_index()
        back = rng.randint(1, 8) if rng.random() < 0.3 else 0
        first = max(storage.snapshot().meta.index + 1, last + 1 - back)
        if first <= last:
            term += 1  # only a newer term overwrites entries
        count = rng.randint(1, 40)
        os.write(out_fd, b"W %d %d %d\n" % (first, count, term))
        storage.append(
            [
                Entry(term, i, EntryKind.NORMAL, entry_data(i, term))
                for i in range(first, first + count)
            ]
        )
        last = first + count - 1
        storage.set_hard_state(HardState(term, 1, last))
        if rng.random() < 0.1 and last > storage.snapshot().meta.index + 50:
            storage.create_snapshot(last - 20, Membership(frozenset({1})), b"app" * 50)
            storage.compact(last - 40)
        storage.sync()
        os.write(out_fd, b"S %d\n" % last)


def main(argv: list[str]) -> int:
    run(Path(argv[0]), int(argv[1]), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

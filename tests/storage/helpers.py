"""Shared helpers of the storage tests: deterministic payloads, an I/O layer that counts
its system calls, and building a data directory with known content."""

from __future__ import annotations

import logging
from pathlib import Path

from raftsched.raft.types import Entry, EntryKind, HardState
from raftsched.storage import DiskStorage
from raftsched.storage.files import DiskIO

LOG = logging.getLogger("raftsched.storage")


def payload(index: int) -> bytes:
    """The data of entry `index` in every test log: checkable after any crash."""
    return index.to_bytes(8, "little") * (1 + index % 7)


def entries(first: int, count: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, payload(i)) for i in range(first, first + count)]


class CountingIO(DiskIO):
    """The real disk layer, counting writes, fsyncs and directory fsyncs."""

    def __init__(self, *, enospc_after_bytes: int | None = None) -> None:
        super().__init__(fsync=True, log=LOG, enospc_after_bytes=enospc_after_bytes)
        self.writes = 0
        self.file_fsyncs = 0
        self.dir_fsyncs = 0

    def write(self, fd: int, data: bytes, what: str) -> None:
        self.writes += 1
        super().write(fd, data, what)

    def fsync(self, fd: int, what: str) -> None:
        self.file_fsyncs += 1
        super().fsync(fd, what)

    def fsync_dir(self, path: Path) -> None:
        self.dir_fsyncs += 1
        super().fsync_dir(path)


def build(data_dir: Path, count: int, *, batch: int = 1, segment_bytes: int = 4096) -> None:
    """A closed data dir holding entries 1..count (term 1), synced every `batch` entries."""
    storage = DiskStorage.open(data_dir, segment_bytes=segment_bytes)
    for first in range(1, count + 1, batch):
        storage.append(entries(first, min(batch, count + 1 - first)))
        storage.set_hard_state(HardState(1, 1, first))
        storage.sync()
    storage.close()


def check_entries(storage: DiskStorage, last: int) -> None:
    """Entries first..last hold the expected payloads."""
    first = storage.first_index()
    got = storage.entries(first, last + 1, 1 << 62)
    assert [e.index for e in got] == list(range(first, last + 1))
    assert all(e.data == payload(e.index) for e in got)

"""One segment file of the write-ahead log as the storage sees it in memory.

A segment is named `{seq:016x}-{first:016x}.wal`: `seq` orders the segments (a conflicting
append may rewrite indexes an older segment holds, so indexes alone cannot order them) and
`first` is the index the segment's first entry was expected to have when it was created.

The segment's *run* is the contiguous range of live log entries whose newest copy it holds:
`lo` and, per entry, the byte offset of its record and its term (arrays of machine words: 16
bytes per entry in memory, nothing decoded). Records not yet written sit in `pending` and
go out in one write call at the next sync.
"""

from __future__ import annotations

import os
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SEGMENT_NAME: Final = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


def segment_name(seq: int, first: int) -> str:
    return f"{seq:016x}-{first:016x}.wal"


@dataclass(eq=False, slots=True)
class Segment:
    seq: int
    first: int
    path: Path
    durable_bytes: int = 0  # bytes written and synced (or being synced)
    end: int = 0  # offset where the next record goes: durable_bytes + pending bytes
    records: int = 0  # records in the file and pending (bounds the replay of an open one)
    pending: list[bytes] = field(default_factory=list)
    crc: int = 0  # CRC32C of bytes [0, durable_bytes): the SEAL record's file_crc
    on_disk: bool = False  # the file exists (it is created at the first sync that writes it)
    sealed: bool = False  # a SEAL record ends it; nothing more is written to it
    lo: int = 0  # index of the first live entry of the run (meaningful when offsets)
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    terms: array[int] = field(default_factory=lambda: array("Q"))
    read_fd: int | None = None
    write_fd: int | None = None

    @property
    def hi(self) -> int:
        """One past the last live index of the run."""
        return self.lo + len(self.offsets)

    def add(self, record: bytes) -> int:
        """Queue `record` for the next sync; returns its offset in the file."""
        offset = self.end
        self.pending.append(record)
        self.end += len(record)
        self.records += 1
        return offset

    def pread(self, size: int, offset: int) -> bytes:
        if self.read_fd is None:
            self.read_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(self.read_fd, size, offset)

    def close_fds(self) -> None:
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None

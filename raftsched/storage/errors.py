"""Errors of the disk layer. Each names who is at fault and what the operator can do.

- `CorruptStorageError`: the data directory holds something no crash of ours can leave
  behind (a bad record followed by good ones, a missing segment, a snapshot failing its
  checksum). The node refuses to start; a human restores from a peer or a backup.
- `StorageFatalError`: the disk failed a write or an fsync (ENOSPC, EIO). After a failed
  fsync the kernel may have dropped the dirty pages, so retrying could report success for
  data that is gone (PostgreSQL's "fsyncgate"): the storage refuses every later call and
  the node must exit non-zero. What was acknowledged before stays on disk.
- `StorageIdentityError`: the directory belongs to another cluster or node.
- `StorageInUseError`: another process has the directory open.
"""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base of every error the disk layer raises on purpose."""


class CorruptStorageError(StorageError):
    """The data directory is damaged beyond what a crash explains; the node refuses it."""

    def __init__(self, path: Path | str, offset: int, expected: str) -> None:
        super().__init__(f"corrupt storage: {path} at byte offset {offset}: expected {expected}")
        self.path = Path(path)
        self.offset = offset
        self.expected = expected


class StorageFatalError(StorageError):
    """A write or fsync failed; this storage accepts no more calls (never retry an fsync)."""


class StorageIdentityError(StorageError):
    """The data directory was created for another (cluster_id, node_id)."""


class StorageInUseError(StorageError):
    """Another process holds this data directory open (an flock on its LOCK file)."""

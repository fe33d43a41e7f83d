"""State-machine snapshots (log compaction) and backup files.

Theory of operation. After applying, the runtime asks `Snapshotter.maybe_take` whether
`raft.snapshot_entries` entries were applied since the last snapshot. Taking one has two
parts: serializing the app's state at the applied index (`SchedApp.snapshot`, CPU-bound, on
the loop because the state is only consistent there) and writing it (storage thread, in
order with the log writes; `create_snapshot` then `compact`, keeping
`raft.snapshot_keep_entries` entries so slightly slow followers are served from the log).
Only one snapshot is in flight at a time. When the write is done the core is told
(`snapshot_taken`) so it may send it to a follower too far behind.

A backup is the same consistent state written as one self-describing file:

    msgpack [BACKUP_MAGIC, BACKUP_VERSION, cluster_id, index, term,
             voters, learners, removed, app_snapshot_bytes]

with its sha256 hex beside it. `raftsched restore` (restore_cmd.py) seeds a new node's data
dir from it after checking the checksum and the structure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack

from raftsched.raft.storage import MemoryStorage
from raftsched.raft.types import Membership, Snapshot, SnapshotMeta

from .storage_thread import StorageThread, SyncableStorage

BACKUP_MAGIC: Final = "raftsched-backup"
BACKUP_VERSION: Final = 1
BACKUP_MAX_BYTES: Final = 8 << 30


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    index: int
    term: int
    bytes: int
    seconds: float  # serialization + write


class BackupFormatError(ValueError):
    """The file is not a raftsched backup, or it is damaged."""


def encode_backup(*, cluster_id: int, snapshot: Snapshot) -> bytes:
    m = snapshot.meta.membership
    blob: bytes = msgpack.packb(
        [BACKUP_MAGIC, BACKUP_VERSION, cluster_id, snapshot.meta.index, snapshot.meta.term,
         sorted(m.voters), sorted(m.learners), sorted(m.removed), snapshot.data],
        use_bin_type=True)
    return blob


def decode_backup(data: bytes) -> tuple[int, Snapshot]:
    """(cluster_id, snapshot) from a backup file's bytes; BackupFormatError if malformed."""
    try:
        obj: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.exceptions.ExtraData, TypeError) as exc:
        raise BackupFormatError(f"not a msgpack document: {exc}") from None
    if type(obj) is not list or len(obj) != 9 or obj[0] != BACKUP_MAGIC:
        raise BackupFormatError("not a raftsched backup file")
    _, version, cluster_id, index, term, voters, learners, removed, app = obj
    if version != BACKUP_VERSION:
        raise BackupFormatError(f"unsupported backup version {version!r}")
    for name, value in (("cluster_id", cluster_id), ("index", index), ("term", term)):
        if type(value) is not int or value < 0:
            raise BackupFormatError(f"bad {name} {value!r}")
    ids = []
    for name, value in (("voters", voters), ("learners", learners), ("removed", removed)):
        if type(value) is not list or any(type(v) is not int or v <= 0 for v in value):
            raise BackupFormatError(f"bad {name} list")
        ids.append(frozenset(value))
    if not ids[0]:
        raise BackupFormatError("the backup names no voters")
    if type(app) is not bytes:
        raise BackupFormatError("bad application snapshot")
    try:
        membership = Membership(voters=ids[0], learners=ids[1], removed=ids[2])
    except AssertionError as exc:
        raise BackupFormatError(f"inconsistent membership: {exc}") from None
    return cluster_id, Snapshot(SnapshotMeta(index=index, term=term, membership=membership), app)


def write_file_durably(path: Path, data: bytes) -> None:
    """temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Snapshotter:
    def __init__(self, *, storage: SyncableStorage, mirror: MemoryStorage, thread: StorageThread,
                 every_entries: int, keep_entries: int, log: logging.Logger) -> None:
        assert every_entries > 0 and keep_entries >= 0
        self._storage = storage
        self._mirror = mirror
        self._thread = thread
        self.every_entries = every_entries
        self.keep_entries = keep_entries
        self._log = log
        self.index = mirror.snapshot().meta.index
        self.in_flight: asyncio.Future[SnapshotInfo] | None = None
        self.taken = 0

    def due(self, applied_index: int) -> bool:
        return self.in_flight is None and applied_index - self.index >= self.every_entries

    def take(self, *, index: int, membership: Membership, serialize: Callable[[], bytes],
             on_written: Callable[[int], None]) -> asyncio.Future[SnapshotInfo]:
        """Snapshot the state at `index` (the app's applied index, durable locally)."""
        if self.in_flight is not None:
            return self.in_flight
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SnapshotInfo] = loop.create_future()
        if index <= self.index:
            meta = self._mirror.snapshot().meta
            future.set_result(SnapshotInfo(meta.index, meta.term, 0, 0.0))
            return future
        self.in_flight = future
        started = time.perf_counter()
        data = serialize()
        compact_to = index - self.keep_entries
        # The mirror first (the core reads it), the disk after, in order with the log.
        snap = self._mirror.create_snapshot(index, membership, data)
        if compact_to >= self._mirror.first_index():
            self._mirror.compact(compact_to)
        storage = self._storage

        def write() -> Snapshot:
            disk_snap = storage.create_snapshot(index, membership, data)
            assert disk_snap.meta == snap.meta, (disk_snap.meta, snap.meta)
            if compact_to >= storage.first_index():
                storage.compact(compact_to)
            return disk_snap

        def written(result: object, _fsync_s: float) -> None:
            assert isinstance(result, Snapshot)
            self.in_flight = None
            self.index = index
            self.taken += 1
            info = SnapshotInfo(index, result.meta.term, len(data),
                                time.perf_counter() - started)
            self._log.info("snapshot at index %d: %d bytes in %.3fs", index, len(data),
                           info.seconds)
            on_written(index)
            future.set_result(info)

        self._thread.submit_call(write, written)
        return future

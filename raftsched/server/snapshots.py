"""State-machine snapshots (log compaction) and backup files.

Theory of operation. After each drain the runtime asks `Snapshotter.due` whether
`raft.snapshot_entries` entries were applied since the last snapshot, and then calls
`Snapshotter.take` (also POST /v1/cluster/snapshot). Taking one has two parts:
1. serializing the app's state at the applied index (`SchedApp.snapshot`, CPU-bound). It
   must capture the state AT that index, so it starts synchronously inside `take`, before
   the loop can apply anything more: a small state is serialized right there on the loop; a
   big one (`raft.snapshot_fork_min_jobs`) in a child forked right there (copy-on-write: it
   sees the state frozen at the fork, and the loop goes on stepping while it encodes);
2. writing it (storage thread, in order with the log writes; `create_snapshot` then
   `compact`, keeping `raft.snapshot_keep_entries` entries so slightly slow followers are
   served from the log), then the in-memory mirror the core reads follows.
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
import gc
import logging
import os
import signal
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
CHILD_MAX_FD: Final = 1 << 16
SNAPSHOT_RETRY_S: Final = 10.0  # after a failed snapshot, before `due` says yes again


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
        [
            BACKUP_MAGIC,
            BACKUP_VERSION,
            cluster_id,
            snapshot.meta.index,
            snapshot.meta.term,
            sorted(m.voters),
            sorted(m.learners),
            sorted(m.removed),
            snapshot.data,
        ],
        use_bin_type=True,
    )
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


async def serialize_off_loop(serialize: Callable[[], bytes], scratch: Path) -> bytes:
    """`serialize()` in a forked child (copy-on-write: it sees the state frozen at the fork,
    which happens before this coroutine first suspends), so the loop keeps stepping
    (heartbeats, appends) while a big state is encoded. The child writes the bytes to
    `scratch` and exits; the parent waits and reads them off the loop."""
    return await _wait_serializer(_fork_serializer(serialize, scratch), scratch)


def _fork_serializer(serialize: Callable[[], bytes], scratch: Path) -> int:
    """Fork the child that writes `serialize()` to `scratch`; its pid."""
    pid = os.fork()
    if pid == 0:  # the child: no loop, no logging, no signal handlers of the parent
        code = 1
        try:
            gc.disable()  # a collection would touch (and so copy) every page of the heap
            signal.set_wakeup_fd(-1)
            # Drop the inherited sockets and files: if the parent is killed meanwhile, its
            # ports must be free for the restarted node at once, not when this child ends.
            os.closerange(3, CHILD_MAX_FD)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            data = serialize()
            with open(scratch, "wb") as f:
                f.write(data)
            code = 0
        finally:
            os._exit(code)
    return pid


async def _wait_serializer(pid: int, scratch: Path) -> bytes:
    loop = asyncio.get_running_loop()
    _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"the snapshot serializer (pid {pid}) exited with {code}")
    data = await loop.run_in_executor(None, scratch.read_bytes)
    scratch.unlink()
    return data


class Snapshotter:
    def __init__(
        self,
        *,
        storage: SyncableStorage,
        mirror: MemoryStorage,
        thread: StorageThread,
        every_entries: int,
        keep_entries: int,
        log: logging.Logger,
    ) -> None:
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
        self.failed = 0
        self._retry_at = 0.0  # time.monotonic() before which a failed snapshot is not retried

    def due(self, applied_index: int) -> bool:
        """Whether the threshold asks for a snapshot now (the runtime asks after each drain:
        a failing serializer or disk must not be retried at that rate)."""
        return (
            self.in_flight is None
            and applied_index - self.index >= self.every_entries
            and time.monotonic() >= self._retry_at
        )

    def take(
        self,
        *,
        index: int,
        membership: Membership,
        serialize: Callable[[], bytes],
        on_written: Callable[[int], None],
        off_loop: bool,
        scratch: Path,
    ) -> asyncio.Future[SnapshotInfo]:
        """Snapshot the state at `index` (the app's applied index, durable locally): the
        serialization starts before this returns (see the module doc). With `off_loop` the
        state is serialized in a forked child (big states)."""
        if self.in_flight is not None:
            return self.in_flight
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SnapshotInfo] = loop.create_future()
        if index <= self.index:
            meta = self._mirror.snapshot().meta
            future.set_result(SnapshotInfo(meta.index, meta.term, 0, 0.0))
            return future
        started = time.perf_counter()
        data: bytes | asyncio.Future[bytes]
        try:
            if off_loop:
                pid = _fork_serializer(serialize, scratch)
                data = loop.create_task(_wait_serializer(pid, scratch))
            else:
                data = serialize()
        except Exception as exc:  # e.g. fork: EAGAIN/ENOMEM
            self._failed(exc)
            future.set_exception(exc)
            return future
        self.in_flight = future
        task = loop.create_task(
            self._take(
                index,
                membership,
                data=data,
                on_written=on_written,
                started=started,
            )
        )
        task.add_done_callback(self._taken)
        return future

    def _taken(self, task: asyncio.Task[SnapshotInfo | None]) -> None:
        future, self.in_flight = self.in_flight, None
        assert future is not None
        if task.cancelled():
            future.cancel()
        elif (exc := task.exception()) is not None:
            self._failed(exc)
            future.set_exception(exc)
        else:
            info = task.result()
            if info is None:  # a newer snapshot arrived from the leader meanwhile
                meta = self._mirror.snapshot().meta
                info = SnapshotInfo(meta.index, meta.term, 0, 0.0)
            future.set_result(info)

    def _failed(self, exc: BaseException) -> None:
        self.failed += 1
        self._retry_at = time.monotonic() + SNAPSHOT_RETRY_S
        self._log.error("snapshot failed (retried in %.0f s): %s", SNAPSHOT_RETRY_S, exc)

    async def _take(
        self,
        index: int,
        membership: Membership,
        *,
        data: bytes | asyncio.Future[bytes],
        on_written: Callable[[int], None],
        started: float,
    ) -> SnapshotInfo | None:
        off_loop = not isinstance(data, bytes)
        if not isinstance(data, bytes):
            data = await data
        serialized_s = time.perf_counter() - started
        storage = self._storage
        compact_to = index - self.keep_entries

        def write() -> Snapshot | None:
            if index <= storage.snapshot().meta.index:
                return None
            snap = storage.create_snapshot(index, membership, data)
            if compact_to >= storage.first_index():
                storage.compact(compact_to)
            storage.sync()  # the record naming the snapshot: durable now, not at the next Ready
            return snap

        written: asyncio.Future[Snapshot | None] = asyncio.get_running_loop().create_future()
        self._thread.submit_call(write, lambda result, _s: written.set_result(result))
        snap = await written
        mirror = self._mirror
        if snap is None or index <= mirror.snapshot().meta.index:
            return None
        # The mirror (what the core reads) follows the disk, on the loop.
        mirror_snap = mirror.create_snapshot(index, membership, data)
        assert mirror_snap.meta == snap.meta, (mirror_snap.meta, snap.meta)
        if compact_to >= mirror.first_index():
            mirror.compact(compact_to)
        self.index = index
        self.taken += 1
        on_written(index)
        info = SnapshotInfo(index, snap.meta.term, len(data), time.perf_counter() - started)
        self._log.info(
            "snapshot at index %d: %d bytes, serialized in %.3fs%s, written in %.3fs",
            index,
            len(data),
            serialized_s,
            " (forked child)" if off_loop else "",
            info.seconds - serialized_s,
        )
        return info

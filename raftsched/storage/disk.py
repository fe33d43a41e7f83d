"""`DiskStorage`: the durable `WritableStorage` (raftsched/raft/storage.py) on a directory.

Theory of operation. Everything the core asks to persist becomes a record appended to the
active segment of a write-ahead log (records.py framing; docs/storage.md has the format):
entries, hard state, snapshot references, compactions. Appending only queues the record in
memory and updates the in-memory view, so reads answer at once like `MemoryStorage`; `sync()`
then writes every queued record with ONE write call and makes it durable with ONE fsync
(group commit: however many Readys were persisted since the last sync). A new segment file
also costs a directory fsync. Snapshots are separate files written atomically before the
log record that makes them current.

A conflicting append does not rewrite old files: the new entry records simply follow, and
whoever reads the log in order (recovery) lets an entry at index i drop every entry >= i
before it, so the truncation is durable exactly when the new entries are. Compaction is a
record too; whole segments holding no live entry are deleted after the sync that made them
dead. Each segment begins with a header carrying the whole non-entry state, so deleting
older segments loses nothing.

Reads: the log index (logindex.py) keeps each live entry's file offset and term in arrays,
and the newest entries stay in a bounded in-memory tail; older entries are read back with
pread and their CRC checked. Threads: ONE writer thread (the runtime's storage thread);
readers may be on other threads. A lock makes each call atomic; `sync()` releases it during
the write and fsync, which touch only state that the writer thread alone uses.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from itertools import accumulate
from operator import attrgetter
from pathlib import Path
from typing import Final, Literal

from ..raft.errors import CompactedError, UnavailableError
from ..raft.storage import UNLIMITED_BYTES, limit_by_bytes
from ..raft.types import Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta
from . import records
from .errors import CorruptStorageError, StorageIdentityError, StorageInUseError
from .files import DiskIO
from .logindex import LogIndex
from .records import RecordType, WalState
from .recovery import SnapRef, recover
from .seal import MAX_SEALED_OFFSET, encode_seal
from .segment import Segment, segment_name
from .snapshots import SNAPSHOT_NAME, read_snapshot, snapshot_name, write_snapshot

LOGGER_NAME: Final = "raftsched.storage"
IDENTITY_FILE: Final = "IDENTITY"
LOCK_FILE: Final = "LOCK"
# A segment is sealed at segment_bytes or at this many records, whichever comes first, so
# the one segment an open replays record by record costs a bounded time (~0.1 s).
SEGMENT_RECORDS_MAX: Final = 65_536
CACHE_ENTRIES_MAX: Final = 16_384  # newest entries kept decoded in memory
CACHE_BYTES_MAX: Final = 16 << 20
READ_BATCH_ENTRIES: Final = 1_024  # entries read from disk per pread
_EMPTY_SNAPSHOT: Final = Snapshot(SnapshotMeta(0, 0, Membership(frozenset())), b"")
_ENTRY_KINDS: Final = tuple(EntryKind)
_TERM: Final = attrgetter("term")
_DATA: Final = attrgetter("data")


class DiskStorage:
    """The durable Raft storage of one node. Open with `DiskStorage.open(...)`."""

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        fsync: Literal["always", "never"] = "always",
        identity: tuple[int, int] | None = None,
        segment_bytes: int = 64 << 20,
        log: logging.Logger | None = None,
        io: DiskIO | None = None,
    ) -> DiskStorage:
        """Open (creating if needed) the data directory, recovering what a crash left.

        `identity` = (cluster_id, node_id) is recorded on first use and checked after.
        `fsync="never"` is UNSAFE (tests and benchmarks only). `io` replaces the disk layer
        (tests inject failpoints); by default failpoints come from the environment."""
        if fsync not in ("always", "never"):
            raise ValueError(f"fsync must be 'always' or 'never' (unsafe), not {fsync!r}")
        if not 4096 <= segment_bytes <= MAX_SEALED_OFFSET // 4:
            raise ValueError(f"segment_bytes must be in 4096..{MAX_SEALED_OFFSET // 4}")
        if identity is not None and not all(0 < part < 1 << 64 for part in identity):
            raise ValueError(f"identity (cluster_id, node_id) must be positive, not {identity}")
        logger = log or logging.getLogger(LOGGER_NAME)
        disk = io or DiskIO.from_env(fsync=fsync == "always", log=logger)
        if not disk.fsync_enabled:
            logger.warning(
                "storage: fsync policy 'never' is unsafe: acknowledged writes can be lost on a"
                " crash (tests and benchmarks only)"
            )
        if disk.power_loss:
            logger.warning("storage: power-loss failpoint on: writes wait in memory until fsync")
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True)
            disk.fsync_dir(data_dir.parent)  # the new directory's own entry is durable too
        lock_fd = _lock(data_dir)
        try:
            _check_identity(data_dir, identity, disk, logger)
            return cls(data_dir, disk, logger, segment_bytes, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    def __init__(
        self, data_dir: Path, io: DiskIO, log: logging.Logger, segment_bytes: int, lock_fd: int
    ) -> None:
        self._dir = data_dir
        self._io = io
        self._log = log
        self._segment_bytes = segment_bytes
        self._lock_fd: int | None = lock_fd
        # Readers (the core, maybe on another thread) never see a half-done write; sync()
        # releases it while it writes and fsyncs, so reads go on during the disk wait.
        self._lock = threading.Lock()
        _remove_temp_files(data_dir, io, log)
        recovered = recover(data_dir, io, log)
        if recovered is None:
            self._index = LogIndex(0, 0, 0)
            self._hard_state = HardState()
            self._snap = SnapRef(0, 0, 0)
            self._segments: list[Segment] = []
            self._start_segment()
            for seg, data in self._take_pending():
                self._write(seg, data)
            log.info("storage: new data directory %s", data_dir)
        else:
            self._index = recovered.index
            self._hard_state = recovered.hard_state
            self._snap = recovered.snap
            self._segments = recovered.segments
        self._snapshot = self._load_snapshot()
        self._snap_files = self._sweep_snapshot_files()
        self._cache: list[Entry] = []
        self._cache_lo = self._index.last + 1
        self._cache_bytes = 0
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"DiskStorage({self._dir} first={self.first_index()} last={self.last_index()}"
            f" snapshot={self._snap.index} {self._hard_state})"
        )

    # -- Storage (read side) ----------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, Snapshot]:
        with self._lock:
            return self._hard_state, self._snapshot

    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._index.base_index + 1

    def last_index(self) -> int:
        return self._index.last

    def term(self, index: int) -> int:
        with self._lock:
            return self._term(index)

    def _term(self, index: int) -> int:
        last = self._index.last
        if self._cache_lo <= index <= last:
            return self._cache[index - self._cache_lo].term
        base = self._index.base_index
        if index < base:
            raise CompactedError(f"index {index} is compacted (first index {base + 1})")
        if index > last:
            raise UnavailableError(f"index {index} is past the last index {last}")
        term = self._index.term(index)
        assert term is not None, f"index {index} is in no segment"
        return term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        with self._lock:
            return self._entries(lo, hi, max_bytes)

    def _entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        self._check_range(lo, hi)
        if lo >= hi:
            return []
        if lo >= self._cache_lo:
            found = self._cache[lo - self._cache_lo : hi - self._cache_lo]
        else:
            found = self._read(lo, min(hi, self._cache_lo), max_bytes)
            if hi > self._cache_lo and found[-1].index == self._cache_lo - 1:
                found.extend(self._cache[: hi - self._cache_lo])
        return found if max_bytes >= UNLIMITED_BYTES else limit_by_bytes(found, max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def _check_range(self, lo: int, hi: int) -> None:
        base = self._index.base_index
        if lo <= base:
            raise CompactedError(f"index {lo} is compacted (first index {base + 1})")
        if hi > self._index.last + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self._index.last}")

    # -- WritableStorage (what the runtime calls) -------------------------------------------

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        with self._lock:
            self._append(entries)

    def _append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        self._io.check()
        if not entries:
            return
        index = self._index
        first = entries[0].index
        if first > index.last + 1:
            raise UnavailableError(
                f"append at {first} leaves a gap after the last index {index.last}"
            )
        assert entries[-1].index == first + len(entries) - 1, "entries are contiguous"
        if first <= index.base_index:  # the head is already covered by the snapshot
            entries = entries[index.base_index + 1 - first :]
            if not entries:
                return
            first = entries[0].index
        seg = self._writable_segment()  # before any change: a new header takes the state
        if first <= index.last:
            self._truncate_after(first - 1)
        encode = records.encode_entry
        batch = [encode(e.term, e.index, e.kind, e.data) for e in entries]
        base_offset = seg.end
        offsets = [base_offset, *accumulate(map(len, batch), initial=base_offset)][1:-1]
        seg.pending.extend(batch)
        seg.end = base_offset + sum(map(len, batch))
        seg.records += len(batch)
        if not seg.offsets:
            seg.lo = first
            index.runs.append(seg)
        seg.offsets.extend(offsets)
        seg.terms.extend(map(_TERM, entries))
        index.last = entries[-1].index
        assert seg.hi == index.last + 1
        self._cache.extend(entries)
        self._cache_bytes += sum(map(len, map(_DATA, entries)))

    def set_hard_state(self, hard_state: HardState) -> None:
        body = records.HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit)
        with self._lock:
            self._io.check()
            if hard_state == self._hard_state:
                return
            self._writable_segment().add(records.encode(RecordType.HARD_STATE, body))
            self._hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by `snapshot` (see MemoryStorage.apply_snapshot). The file
        is durable when this returns; the log record naming it is durable after `sync()`."""
        self._io.check()
        meta = snapshot.meta
        if meta.index < self._snap.index:
            return
        number = self._write_snapshot_file(snapshot)
        with self._lock:
            self._record_snapshot(snapshot, number, reset=True)
            self._index.reset(meta.index, meta.term)
            self._cache.clear()
            self._cache_lo = meta.index + 1
            self._cache_bytes = 0

    def create_snapshot(self, index: int, membership: Membership, data: bytes) -> Snapshot:
        self._io.check()
        if index <= self._snap.index:
            raise CompactedError(
                f"snapshot at {index} is not newer than the current one at {self._snap.index}"
            )
        snapshot = Snapshot(SnapshotMeta(index, self.term(index), membership), data)
        number = self._write_snapshot_file(snapshot)  # the slow part, outside the lock
        with self._lock:
            self._record_snapshot(snapshot, number, reset=False)
        return snapshot

    def compact(self, index: int) -> None:
        """Discard entries up to `index`. Segments holding only discarded entries are
        deleted by the `sync()` that makes this durable."""
        with self._lock:
            self._io.check()
            if index <= self._index.base_index:
                return
            if index > self._snap.index:
                raise UnavailableError(
                    f"cannot compact to {index}: the snapshot only covers {self._snap.index}"
                )
            term = self._term(index)
            body = records.COMPACT.pack(index, term)
            self._writable_segment().add(records.encode(RecordType.COMPACT, body))
            self._index.compact_to(index, term)
            if index >= self._cache_lo:
                self._drop_cache_front(index + 1 - self._cache_lo)

    def sync(self) -> None:
        """Make every write since the last sync durable: one write call and (unless the
        unsafe policy 'never' is on) one fdatasync, plus a directory fsync when the write
        creates a segment file. Raises StorageFatalError if the disk fails (for good)."""
        with self._lock:
            self._io.check()
            writes = self._take_pending()
        for seg, data in writes:  # readers go on meanwhile (the writer is this thread)
            self._write(seg, data)
        with self._lock:
            for seg, _ in writes:
                if seg.sealed and seg.write_fd is not None:
                    self._io.close(seg.write_fd)
                    seg.write_fd = None
            dead = self._pop_dead_segments()
            if len(self._cache) > CACHE_ENTRIES_MAX or self._cache_bytes > CACHE_BYTES_MAX:
                self._trim_cache()
        self._delete_dead_files(dead)

    def close(self, *, sync: bool = True) -> None:
        """Sync what is pending (unless the disk failed, or `sync=False`: then the unsynced
        writes are dropped, as a crash would), then release files and the lock."""
        if self._closed:
            return
        try:
            if sync and self._io.failure is None:
                self.sync()
        finally:
            self._closed = True
            self._release_files()

    def _release_files(self) -> None:
        with self._lock:
            for seg in self._segments:
                seg.close_fds()
                if seg.write_fd is not None:
                    self._io.close(seg.write_fd)
                    seg.write_fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- introspection for tests and the benchmark ------------------------------------------

    @property
    def fsync_count(self) -> int:
        return self._io.fsync_count

    @property
    def bytes_written(self) -> int:
        return self._io.bytes_written

    def segment_paths(self) -> list[Path]:
        return [seg.path for seg in self._segments]

    # -- writing ----------------------------------------------------------------------------

    def _state(self) -> WalState:
        hs, snap, index = self._hard_state, self._snap, self._index
        return WalState(
            hs.term,
            hs.vote,
            hs.commit,
            snap.index,
            snap.term,
            snap.number,
            index.base_index,
            index.base_term,
            index.last,
        )

    def _writable_segment(self) -> Segment:
        seg = self._segments[-1]
        return self._start_segment() if seg.sealed else seg

    def _start_segment(self) -> Segment:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        first = self._index.last + 1
        seg = Segment(seq, first, self._dir / segment_name(seq, first))
        seg.add(records.encode(RecordType.SEGMENT_HEADER, self._state().pack(seq)))
        self._segments.append(seg)
        return seg

    def _take_pending(self) -> list[tuple[Segment, bytes]]:
        """Under the lock: every segment's queued records as one buffer each (in practice
        one segment), sealing the active one when it is full."""
        writes = []
        for seg in self._segments:
            if not seg.pending:
                continue
            full = seg.end >= self._segment_bytes or seg.records >= SEGMENT_RECORDS_MAX
            if full and not seg.sealed:
                seal = encode_seal(
                    seq=seg.seq,
                    state=self._state(),
                    lo=seg.lo,
                    offsets=seg.offsets,
                    terms=seg.terms,
                    file_crc=records.crc32c(b"".join(seg.pending), seg.crc),
                    seal_offset=seg.end,
                )
                seg.add(seal)
                seg.sealed = True
            data = b"".join(seg.pending)
            seg.pending.clear()
            seg.crc = records.crc32c(data, seg.crc)
            seg.durable_bytes = seg.end
            writes.append((seg, data))
        return writes

    def _write(self, seg: Segment, data: bytes) -> None:
        """One write and one fsync (plus the directory's when this creates the file)."""
        created = not seg.on_disk
        if seg.write_fd is None:
            seg.write_fd = self._io.open_append(seg.path, create=created)
            seg.on_disk = True
        self._io.write(seg.write_fd, data, str(seg.path))
        self._io.fsync(seg.write_fd, str(seg.path))
        if created:
            self._io.fsync_dir(self._dir)
        if seg.sealed:
            self._log.info("storage: sealed %s at %d bytes", seg.path.name, seg.end)

    def _truncate_after(self, index: int) -> None:
        self._index.truncate_after(index)
        if index + 1 < self._cache_lo:
            self._cache.clear()
            self._cache_bytes = 0
            self._cache_lo = index + 1
        else:
            dropped = self._cache[index + 1 - self._cache_lo :]
            del self._cache[index + 1 - self._cache_lo :]
            self._cache_bytes -= sum(map(len, map(_DATA, dropped)))

    def _write_snapshot_file(self, snapshot: Snapshot) -> int:
        """Write `snapshot` durably to a new file; returns its number. Only the writer
        thread touches `_snap_files`, so this runs outside the lock."""
        number = max(self._snap_files, default=self._snap.number) + 1
        path = self._dir / snapshot_name(snapshot.meta.index, number)
        write_snapshot(self._io, path, snapshot)
        self._snap_files[number] = path
        return number

    def _record_snapshot(self, snapshot: Snapshot, number: int, *, reset: bool) -> None:
        meta = snapshot.meta
        body = records.SNAPSHOT_REF.pack(meta.index, meta.term, number, int(reset))
        self._writable_segment().add(records.encode(RecordType.SNAPSHOT, body))
        self._snap = SnapRef(meta.index, meta.term, number)
        self._snapshot = snapshot

    def _pop_dead_segments(self) -> list[Segment]:
        """Under the lock, after a sync: the oldest segments that hold no live entry (the
        records that made them dead are durable now). No reader can reach them after."""
        live = {id(seg) for seg in self._index.runs}
        dead = []
        while len(self._segments) > 1 and id(self._segments[0]) not in live:
            seg = self._segments.pop(0)
            seg.close_fds()
            assert seg.write_fd is None and not seg.pending
            dead.append(seg)
        return dead

    def _delete_dead_files(self, dead: list[Segment]) -> None:
        """Delete dead segments oldest first, fsyncing the directory after each (no gap in
        the seqs can survive a crash), and snapshot files older than the current one."""
        for seg in dead:
            self._io.unlink(seg.path)
            self._io.fsync_dir(self._dir)
            self._log.info("storage: deleted %s (no live entries)", seg.path.name)
        for number in [n for n in self._snap_files if n < self._snap.number]:
            self._io.unlink(self._snap_files.pop(number))

    # -- reading ----------------------------------------------------------------------------

    def _read(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) from the segment files, stopping once past max_bytes."""
        found: list[Entry] = []
        size = 0
        for seg, p0, p1 in self._index.segments_between(lo, hi):
            for start in range(p0, p1, READ_BATCH_ENTRIES):
                stop = min(p1, start + READ_BATCH_ENTRIES)
                batch = self._read_records(seg, start, stop, lo + len(found))
                found.extend(batch)
                size += sum(len(e.data) for e in batch)
                if size > max_bytes:
                    return found
        return found

    def _read_records(self, seg: Segment, p0: int, p1: int, first_index: int) -> list[Entry]:
        offsets = seg.offsets
        start = offsets[p0]
        last_header = seg.pread(records.HEADER_BYTES, offsets[p1 - 1])
        if len(last_header) < records.HEADER_BYTES:
            raise CorruptStorageError(seg.path, offsets[p1 - 1], "an entry record (file too short)")
        _, length, _ = records.HEADER.unpack(last_header)
        end = offsets[p1 - 1] + records.HEADER_BYTES + length
        buf = seg.pread(end - start, start)
        entries = []
        for pos in range(p0, p1):
            rel = offsets[pos] - start
            checked = records.check_at(buf, rel)
            expected = first_index + pos - p0
            if isinstance(checked, str) or checked[0] is not RecordType.ENTRY:
                raise CorruptStorageError(
                    seg.path, offsets[pos], f"the entry record of index {expected}: {checked}"
                )
            term, index, kind = records.ENTRY_HEAD.unpack_from(buf, rel + records.HEADER_BYTES)
            if index != expected or kind >= len(_ENTRY_KINDS):
                raise CorruptStorageError(
                    seg.path, offsets[pos], f"entry {expected}, found index {index} kind {kind}"
                )
            data = buf[rel + records.HEADER_BYTES + records.ENTRY_HEAD.size : checked[1]]
            entries.append(Entry(term, index, _ENTRY_KINDS[kind], data))
        return entries

    def _drop_cache_front(self, count: int) -> None:
        dropped = self._cache[:count]
        del self._cache[:count]
        self._cache_lo += len(dropped)
        self._cache_bytes -= sum(map(len, map(_DATA, dropped)))

    def _trim_cache(self) -> None:
        """Keep the newest entries within half of both bounds (all of them are written)."""
        keep = min(len(self._cache), CACHE_ENTRIES_MAX // 2)
        if self._cache_bytes > CACHE_BYTES_MAX // 2:  # scale by the average entry size
            keep = min(keep, len(self._cache) * (CACHE_BYTES_MAX // 2) // self._cache_bytes)
        self._drop_cache_front(len(self._cache) - max(1, keep))

    # -- opening ----------------------------------------------------------------------------

    def _load_snapshot(self) -> Snapshot:
        snap = self._snap
        if snap.number == 0:
            return _EMPTY_SNAPSHOT
        path = self._dir / snapshot_name(snap.index, snap.number)
        return read_snapshot(path, snap.index, snap.term)

    def _sweep_snapshot_files(self) -> dict[int, Path]:
        kept: dict[int, Path] = {}
        for path in sorted(self._dir.iterdir()):
            match = SNAPSHOT_NAME.match(path.name)
            if not match:
                continue
            number = int(match[2], 16)
            if number == self._snap.number:
                kept[number] = path
                continue
            self._log.info(
                "storage recovery: removing %s (the log names snapshot file %d)",
                path.name,
                self._snap.number,
            )
            self._io.unlink(path)
        return kept


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageInUseError(f"{data_dir} is open in another process") from None
    return fd


def _check_identity(
    data_dir: Path, identity: tuple[int, int] | None, io: DiskIO, log: logging.Logger
) -> None:
    path = data_dir / IDENTITY_FILE
    if not path.exists():
        if identity is not None:
            body = records.IDENTITY.pack(*identity)
            io.write_file_atomically(path, records.encode(RecordType.IDENTITY, body))
            log.info("storage: recorded identity cluster %d node %d in %s", *identity, path)
        return
    buf = path.read_bytes()
    checked = records.check_at(buf, 0)
    if isinstance(checked, str) or checked != (RecordType.IDENTITY, len(buf)):
        raise CorruptStorageError(path, 0, f"one IDENTITY record: {checked}")
    stored = records.IDENTITY.unpack_from(buf, records.HEADER_BYTES)
    if identity is not None and tuple(stored) != identity:
        raise StorageIdentityError(
            f"{data_dir} belongs to cluster {stored[0]} node {stored[1]}, not cluster"
            f" {identity[0]} node {identity[1]}"
        )


def _remove_temp_files(data_dir: Path, io: DiskIO, log: logging.Logger) -> None:
    for path in data_dir.glob("*.tmp"):
        log.info("storage recovery: removing %s (a write interrupted before its rename)", path)
        io.unlink(path)

"""The in-memory mirror of the durable log that the core reads on the event loop.

Theory of operation. The Raft core reads its storage (entries to replicate, terms of old
entries, the snapshot to send) from the event loop, while the storage thread writes and
fsyncs the durable log (DiskStorage, not thread-safe). Rather than share the disk storage
under a lock the loop would wait on during fsyncs, the loop keeps a `MemoryStorage` with the
same content: loaded from the disk at startup, then given each Ready's writes (and each
snapshot and compaction) on the loop, in the same order the storage thread applies them to
the disk. Durability still comes only from the disk: the core is told a Ready is done
(`advance`) only after the storage thread synced it.

Its size is bounded by the snapshot policy: the log after the last compaction, i.e. about
`raft.snapshot_entries + raft.snapshot_keep_entries` entries.
"""

from __future__ import annotations

from raftsched.raft.storage import UNLIMITED_BYTES, MemoryStorage, Storage
from raftsched.raft.types import Snapshot, SnapshotMeta


def mirror_of(storage: Storage) -> MemoryStorage:
    """A MemoryStorage holding exactly what `storage` holds (startup: one pass over the log).

    The log may keep entries below the snapshot (compaction lags it by
    `snapshot_keep_entries`), so the mirror starts from a sentinel at first_index - 1 and
    records the snapshot over the entries it already holds."""
    hard_state, snapshot = storage.initial_state()
    meta = snapshot.meta
    first, last = storage.first_index(), storage.last_index()
    assert first - 1 <= meta.index <= last, (first, meta.index, last)
    base = Snapshot(SnapshotMeta(first - 1, storage.term(first - 1), meta.membership), b"")
    mirror = MemoryStorage(meta.membership)
    mirror.apply_snapshot(snapshot if meta.index == first - 1 else base)
    if first <= last:
        mirror.append(storage.entries(first, last + 1, UNLIMITED_BYTES))
    if meta.index > first - 1:
        recorded = mirror.create_snapshot(meta.index, meta.membership, snapshot.data)
        assert recorded.meta == meta, (recorded.meta, meta)
    mirror.set_hard_state(hard_state)
    assert mirror.first_index() == first and mirror.last_index() == last
    assert mirror.snapshot().meta == meta
    return mirror

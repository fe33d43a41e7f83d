"""The storage interface the core reads its log from, and an in-memory implementation.

The core only reads storage; the runtime writes to it as each `Ready` instructs (etcd's
model). `MemoryStorage` is what the simulator uses (the simulator wraps it to model crashes
that lose unsynced writes); the durable implementation lives in raftsched/storage and has
the same methods.

`MemoryStorage` keeps the log as one list whose element 0 is a sentinel carrying the
index and term of the last compacted entry, so index i lives at position i - sentinel.index
and every lookup is O(1). Compaction (`compact`) is separate from taking a snapshot
(`create_snapshot`): the application may keep some entries below its snapshot so that
slightly slow followers can still be served from the log.

Index rules: the log is preceded by a snapshot (at index 0 / term 0 for a new node);
`first_index()` is snapshot index + 1; `term(snapshot index)` is valid; reading an entry
at or below the snapshot index raises CompactedError, past the last index UnavailableError.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from operator import attrgetter
from typing import Protocol

from .errors import CompactedError, UnavailableError
from .ready import Ready
from .types import Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, Snapshot]:
        """The persisted hard state and the latest snapshot's metadata/data at startup.
        The core rebuilds its membership from the snapshot and the CONFIG entries after it."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of the entry at `index`; valid from snapshot index to last index."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), stopping once their data exceeds max_bytes, but always at least
        one entry when lo < hi."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot, to send to a follower that is too far behind."""
        ...


class ReadyStore(Protocol):
    """The writes a Ready asks for (see `persist_ready`)."""

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None: ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def apply_snapshot(self, snapshot: Snapshot) -> None: ...


def persist_ready(storage: ReadyStore, rd: Ready) -> None:
    """Write everything `rd` asks to persist, in the one safe order: the snapshot first (it
    replaces the log up to its index), then the entries after it, then the hard state. The
    caller then fsyncs if `rd.must_sync`, and only after that sends `rd.messages`."""
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)


class WritableStorage(Storage, ReadyStore, Protocol):
    """What the runtime calls on the storage while processing a Ready."""

    def create_snapshot(self, index: int, membership: Membership, data: bytes) -> Snapshot:
        """Record the application's snapshot at applied `index` (term looked up here)."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to and including `index` (which must be covered by a snapshot)."""
        ...


_entry_data = attrgetter("data")
UNLIMITED_BYTES = 1 << 62
"""A `max_bytes` that never limits: skips the size computation."""


def limit_by_bytes(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix of `entries` whose data fits in `max_bytes`, but at least one entry.

    Runs its per-entry work in C (map/accumulate/bisect), not in a Python loop."""
    if len(entries) <= 1 or sum(map(len, map(_entry_data, entries))) <= max_bytes:
        return entries
    sizes = list(accumulate(map(len, map(_entry_data, entries))))
    return entries[: max(1, bisect_right(sizes, max_bytes))]


class MemoryStorage:
    """An in-memory `WritableStorage`: the simulator's disk model and the tests' storage.

    `MemoryStorage(membership)` bootstraps a new node of a new cluster: an empty log preceded
    by the empty snapshot (index 0, term 0) whose membership is the initial configuration.
    A node joining an existing cluster starts with `MemoryStorage()` (no membership) and
    learns the configuration from the leader.
    """

    def __init__(self, membership: Membership | None = None) -> None:
        meta = SnapshotMeta(0, 0, membership or Membership(frozenset()))
        self._snapshot = Snapshot(meta, b"")
        self._hard_state = HardState()
        self._entries: list[Entry] = [Entry(0, 0, EntryKind.NOOP, b"")]

    def __repr__(self) -> str:
        return (
            f"MemoryStorage(first={self.first_index()} last={self.last_index()}"
            f" snapshot={self._snapshot.meta.index} {self._hard_state})"
        )

    # Storage (read side)

    def initial_state(self) -> tuple[HardState, Snapshot]:
        return self._hard_state, self._snapshot

    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[-1].index

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(f"index {index} is compacted (first index {offset + 1})")
        if index - offset >= len(self._entries):
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        if lo >= hi:
            return []
        entries = self._entries[lo - offset : hi - offset]
        return entries if max_bytes >= UNLIMITED_BYTES else limit_by_bytes(entries, max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # WritableStorage (what the runtime calls)

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        if not entries:
            return
        offset = self._entries[0].index
        first = entries[0].index
        if first > self.last_index() + 1:
            raise UnavailableError(
                f"append at {first} leaves a gap after the last index {self.last_index()}"
            )
        if first <= offset:  # the head is already covered by the snapshot
            entries = entries[offset + 1 - first :]
            if not entries:
                return
            first = entries[0].index
        del self._entries[first - offset :]
        self._entries.extend(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by `snapshot` (§7: the core only emits a snapshot when the
        log does not already hold the snapshot's last entry). Older snapshots are ignored;
        one at the same index replaces the current one (a new node's first configuration
        arrives as a snapshot at the index it already has, usually 0)."""
        meta = snapshot.meta
        if meta.index < self._snapshot.meta.index:
            return
        self._snapshot = snapshot
        self._entries = [Entry(meta.term, meta.index, EntryKind.NOOP, b"")]

    def create_snapshot(self, index: int, membership: Membership, data: bytes) -> Snapshot:
        if index <= self._snapshot.meta.index:
            raise CompactedError(
                f"snapshot at {index} is not newer than the current one at"
                f" {self._snapshot.meta.index}"
            )
        term = self.term(index)  # raises if index is outside the log
        self._snapshot = Snapshot(SnapshotMeta(index, term, membership), data)
        return self._snapshot

    def compact(self, index: int) -> None:
        offset = self._entries[0].index
        if index <= offset:
            return
        if index > self._snapshot.meta.index:
            raise UnavailableError(
                f"cannot compact to {index}: the snapshot only covers {self._snapshot.meta.index}"
            )
        term = self._entries[index - offset].term
        sentinel = Entry(term, index, EntryKind.NOOP, b"")
        self._entries = [sentinel, *self._entries[index - offset + 1 :]]

"""The storage interface the core reads its log from, and an in-memory implementation.

The core only reads storage; the runtime writes to it as each `Ready` instructs (etcd's
model). `MemoryStorage` is what the simulator uses (the simulator wraps it to model crashes
that lose unsynced writes); the durable implementation lives in raftsched/storage and has
the same methods.

Index rules: the log is preceded by a snapshot (at index 0 / term 0 for a new node);
`first_index()` is snapshot index + 1; `term(snapshot index)` is valid; reading an entry
at or below the snapshot index raises CompactedError, past the last index UnavailableError.
"""

from __future__ import annotations

from typing import Protocol

from .types import Entry, HardState, Membership, Snapshot


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


class WritableStorage(Storage, Protocol):
    """What the runtime calls on the storage while processing a Ready."""

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None: ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def apply_snapshot(self, snapshot: Snapshot) -> None: ...

    def create_snapshot(self, index: int, membership: Membership, data: bytes) -> Snapshot:
        """Record the application's snapshot at applied `index` (term looked up here)."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to and including `index` (which must be covered by a snapshot)."""
        ...

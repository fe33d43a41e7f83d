"""RaftLog: the durable log in storage, the unstable tail not yet persisted, and the
commit and apply cursors.

Theory of operation (the etcd-raft model). Entries the core accepts (proposals on the
leader, appends on a follower) go to the *unstable* tail first: `unstable[0]` has index
`unstable_offset`. `ready()` hands the new part of the tail to the runtime (`handed_index`
marks how far); once the runtime has persisted it and called `advance`, `stable_to` drops
it from the tail, and from then on the entries are read from storage. Everything below
`unstable_offset` is durable, so `persisted_index()` is `unstable_offset - 1`.

A follower may have to replace a suffix of its log (§5.3). The replacement goes into the
tail starting at the first conflicting index, even if that index is already in storage;
the tail shadows storage from `unstable_offset` on, and the runtime's `append` truncates
the stale suffix when it persists the replacement.

A snapshot received from the leader replaces the whole log (§7): it is held as
`pending_snapshot` until the runtime has installed it; meanwhile the log's base is the
snapshot's index and term.

Cursors: applied <= applying <= committed. `applying` is how far committed entries have
been handed to the runtime; `applied` how far the runtime said it applied them. Committed
entries are handed out only once durable locally, i.e. up to `persisted_index()`.
"""

from __future__ import annotations

from .errors import CompactedError, UnavailableError
from .storage import UNLIMITED_BYTES, Storage, limit_by_bytes
from .types import Entry, Snapshot


class RaftLog:
    __slots__ = (
        "applied",
        "applying",
        "committed",
        "handed_index",
        "pending_snapshot",
        "snapshot_handed",
        "storage",
        "unstable",
        "unstable_offset",
    )

    def __init__(self, storage: Storage, committed: int, applied: int) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.unstable_offset = storage.last_index() + 1
        self.handed_index = self.unstable_offset - 1
        self.pending_snapshot: Snapshot | None = None
        self.snapshot_handed = False
        first = storage.first_index()
        assert first - 1 <= applied <= committed <= self.unstable_offset - 1, (
            f"log cursors out of order: first={first} applied={applied}"
            f" committed={committed} last={self.unstable_offset - 1}"
        )
        self.committed = committed
        self.applying = applied
        self.applied = applied

    def __repr__(self) -> str:
        return (
            f"RaftLog(first={self.first_index()} last={self.last_index()}"
            f" unstable_offset={self.unstable_offset} committed={self.committed}"
            f" applied={self.applied})"
        )

    # Reading

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        return self.unstable_offset + len(self.unstable) - 1

    def last_term(self) -> int:
        if self.unstable:
            return self.unstable[-1].term
        return self.term(self.unstable_offset - 1)

    def persisted_index(self) -> int:
        return self.unstable_offset - 1

    def term(self, index: int) -> int:
        """Term of the entry at `index`; raises CompactedError / UnavailableError."""
        offset = self.unstable_offset
        if index >= offset:
            position = index - offset
            if position < len(self.unstable):
                return self.unstable[position].term
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        snapshot = self.pending_snapshot
        if snapshot is not None:
            if index == snapshot.meta.index:
                return snapshot.meta.term
            raise CompactedError(f"index {index} is covered by the snapshot")
        return self.storage.term(index)

    def term_or_none(self, index: int) -> int | None:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term_or_none(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a log ending at (last_index, last_term) is at least as up to date."""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_entries: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at most `max_entries` and about `max_bytes` (at least one).
        Raises CompactedError when lo precedes the first retained entry."""
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted")
        hi = min(hi, self.last_index() + 1, lo + max_entries)
        if lo >= hi:
            return []
        offset = self.unstable_offset
        if lo >= offset:
            return limit_by_bytes(self.unstable[lo - offset : hi - offset], max_bytes)
        stored = self.storage.entries(lo, min(hi, offset), max_bytes)
        if hi <= offset or len(stored) < min(hi, offset) - lo:
            return stored
        size = sum(len(entry.data) for entry in stored)
        tail = limit_by_bytes(self.unstable[: hi - offset], max(1, max_bytes - size))
        if size + len(tail[0].data) > max_bytes:
            return stored
        return stored + tail

    # Writing

    def append(self, entries: list[Entry]) -> None:
        """Leader: new entries directly after the last one."""
        assert entries[0].index == self.last_index() + 1, "leader appends must be contiguous"
        self.unstable.extend(entries)

    def truncate_and_append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Follower: entries replacing everything from entries[0].index on (§5.3)."""
        first = entries[0].index
        offset = self.unstable_offset
        assert first > self.committed, "a committed entry can never be overwritten"
        assert first <= self.last_index() + 1, "appends must not leave a gap"
        if first == offset + len(self.unstable):
            self.unstable.extend(entries)
            return
        if first <= offset:
            self.unstable = list(entries)
            self.unstable_offset = first
        else:
            del self.unstable[first - offset :]
            self.unstable.extend(entries)
        self.handed_index = min(self.handed_index, first - 1)

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        assert index <= self.last_index(), f"commit {index} beyond last {self.last_index()}"
        self.committed = index
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader (§7)."""
        index = snapshot.meta.index
        # Equal only for a new node's first configuration, on an empty log.
        assert index > self.committed or index == self.committed == self.last_index()
        self.pending_snapshot = snapshot
        self.snapshot_handed = False
        self.unstable = []
        self.unstable_offset = index + 1
        self.handed_index = index
        self.committed = self.applying = self.applied = index

    # The Ready cycle

    def has_unhanded_entries(self) -> bool:
        return self.handed_index < self.unstable_offset + len(self.unstable) - 1

    def take_unhanded_entries(self) -> list[Entry]:
        start = self.handed_index + 1 - self.unstable_offset
        entries = self.unstable[start:] if start > 0 else self.unstable[:]
        self.handed_index = self.last_index()
        return entries

    def has_committed_to_apply(self) -> bool:
        return min(self.committed, self.unstable_offset - 1) > self.applying and (
            self.pending_snapshot is None
        )

    def take_committed_to_apply(self) -> list[Entry]:
        hi = min(self.committed, self.unstable_offset - 1)
        lo = self.applying + 1
        if lo > hi or self.pending_snapshot is not None:
            return []
        entries = self.storage.entries(lo, hi + 1, UNLIMITED_BYTES)
        assert len(entries) == hi + 1 - lo
        self.applying = hi
        return entries

    def stable_to(self, index: int, term: int) -> None:
        """The runtime persisted the entries up to (index, term)."""
        offset = self.unstable_offset
        position = index - offset
        if position < 0 or position >= len(self.unstable):
            return
        if self.unstable[position].term != term:
            return  # replaced in the meantime: the replacement is still to be persisted
        del self.unstable[: position + 1]
        self.unstable_offset = index + 1

    def stable_snapshot(self, index: int) -> None:
        if self.pending_snapshot is not None and self.pending_snapshot.meta.index == index:
            self.pending_snapshot = None

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            assert index <= self.committed
            self.applied = index

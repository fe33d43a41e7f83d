"""The simulated disk of one node: what was written, what was synced, and crashes.

Theory of operation: the disk holds two images of the node's Raft storage (snapshot, hard
state, log). `current` is what the node reads and writes: every write lands there at once.
`durable` is what survives a crash: writes since the last `sync` wait in an ordered journal
and are replayed onto `durable` by `sync` (so one sync covers all of them: group commit).
`crash` makes `current` a copy of `durable` after replaying an arbitrary prefix of the
journal onto it (what the page cache happened to write back before the power went), and
may tear the record after that prefix: a torn append keeps only some of its entries, as a
write-ahead log that truncates a torn tail record on start would. `crash(keep_ops=0)` is
"lose every write not yet synced". Entries are immutable and shared by both images.
Writes are journalled in order and the log is one sequential file, so a crash can never
keep a later write without the earlier ones.

`SimDisk` is the `WritableStorage` the core and the node host see. With
`track_durability=False` it keeps one image only (the benchmark, where nothing crashes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.types import Entry, HardState, Membership, Snapshot, SnapshotMeta

_DATA = operator.attrgetter("data")


class LogImage:
    """One image of Raft storage: the latest snapshot, the hard state, and the log after it."""

    __slots__ = ("entries", "hard_state", "snapshot")

    def __init__(self, hard_state: HardState, snapshot: Snapshot) -> None:
        self.hard_state = hard_state
        self.snapshot = snapshot
        self.entries: list[Entry] = []  # entries[i].index == snapshot.meta.index + 1 + i

    def clone(self) -> LogImage:
        other = LogImage(self.hard_state, self.snapshot)
        other.entries = list(self.entries)
        return other

    # -- reads --------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.meta.index + 1

    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self.entries)

    def term(self, index: int) -> int:
        base = self.snapshot.meta.index
        if index < base:
            raise CompactedError(f"index {index} is compacted (snapshot at {base})")
        if index == base:
            return self.snapshot.meta.term
        if index > base + len(self.entries):
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self.entries[index - base - 1].term

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        base = self.snapshot.meta.index
        if lo <= base:
            raise CompactedError(f"index {lo} is compacted (snapshot at {base})")
        if hi > base + len(self.entries) + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        out = self.entries[lo - base - 1 : hi - base - 1]
        if max_bytes <= 0 or not out:
            return out[:1]
        # Fast path, summed in C: the common case is a slice well under the limit.
        if sum(map(len, map(_DATA, out))) <= max_bytes:
            return out
        total = 0
        for i, entry in enumerate(out):
            total += len(entry.data)
            if total > max_bytes and i > 0:
                return out[:i]
        return out

    # -- writes -------------------------------------------------------------------------

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        if not entries:
            return
        base = self.snapshot.meta.index
        first = entries[0].index
        assert first > base, f"append at {first} overlaps the snapshot at {base}"
        assert first <= base + len(self.entries) + 1, (
            f"append at {first} leaves a gap after {self.last_index()}"
        )
        del self.entries[first - base - 1 :]  # a conflicting suffix is replaced (§5.3)
        self.entries.extend(entries)
        assert self.entries[-1].index == base + len(self.entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Install a snapshot from the leader: keep log entries after it only if the log
        agrees with the snapshot at its index, as §7 says."""
        index = snapshot.meta.index
        keep: list[Entry] = []
        if self.snapshot.meta.index < index <= self.last_index() and (
            self.term(index) == snapshot.meta.term
        ):
            keep = self.entries[index - self.snapshot.meta.index :]
        elif index == self.snapshot.meta.index:
            # Same point, possibly news: a joiner learns its first configuration from a
            # snapshot at index 0, which must survive a restart.
            keep = self.entries
        elif index < self.snapshot.meta.index:
            return  # older than what we have: nothing to do
        self.snapshot = snapshot
        self.entries = keep

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Record a locally taken snapshot; the log is untouched (compaction is separate)."""
        if snapshot.meta.index > self.snapshot.meta.index:
            self.snapshot = snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to `index`, which the current snapshot must cover."""
        base = self.snapshot.meta.index
        assert index <= base, f"compact to {index} beyond the snapshot at {base}"
        # Entries are kept relative to the snapshot; those up to it are already gone.
        assert not self.entries or self.entries[0].index == base + 1


class SimDisk:
    """WritableStorage with crash semantics (see the module docstring)."""

    def __init__(
        self,
        membership: Membership,
        *,
        track_durability: bool = True,
    ) -> None:
        empty = Snapshot(SnapshotMeta(index=0, term=0, membership=membership), b"")
        self.current = LogImage(HardState(), empty)
        self.track_durability = track_durability
        self.durable = self.current.clone() if track_durability else self.current
        self._journal: list[Callable[[LogImage], None]] = []
        # The entries of each journalled append (empty for other writes): what a torn
        # append record can keep a prefix of.
        self._journal_entries: list[tuple[Entry, ...]] = []
        self.syncs = 0
        self.crashes = 0

    # -- Storage (reads) ----------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, Snapshot]:
        return self.current.hard_state, self.current.snapshot

    def first_index(self) -> int:
        return self.current.first_index()

    def last_index(self) -> int:
        return self.current.last_index()

    def term(self, index: int) -> int:
        return self.current.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        return self.current.slice(lo, hi, max_bytes)

    def snapshot(self) -> Snapshot:
        return self.current.snapshot

    # -- WritableStorage ----------------------------------------------------------------

    def _write(self, op: Callable[[LogImage], None], entries: tuple[Entry, ...] = ()) -> None:
        op(self.current)
        if self.track_durability:
            self._journal.append(op)
            self._journal_entries.append(entries)

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        if entries:
            batch = tuple(entries)
            self._write(lambda image: image.append(batch), batch)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._write(lambda image: image.set_hard_state(hard_state))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._write(lambda image: image.apply_snapshot(snapshot))

    def create_snapshot(self, index: int, membership: Membership, data: bytes) -> Snapshot:
        assert self.current.snapshot.meta.index < index <= self.current.last_index(), (
            f"snapshot at {index} outside ({self.current.snapshot.meta.index}, "
            f"{self.current.last_index()}]"
        )
        snapshot = Snapshot(SnapshotMeta(index, self.current.term(index), membership), data)
        # A snapshot is written to a temp file, fsynced and renamed (SPEC §3): it is durable
        # at once, and only when its index is durable in the log too (else it waits in the
        # journal like the entries it covers).
        self._write(lambda image: _take_snapshot(image, snapshot))
        return snapshot

    def compact(self, index: int) -> None:
        self._write(lambda image: image.compact(index))

    # -- durability ---------------------------------------------------------------------

    def has_unsynced_writes(self) -> bool:
        return bool(self._journal)

    def unsynced_writes(self) -> int:
        return len(self._journal)

    def sync(self) -> None:
        """fsync: everything written so far becomes durable."""
        self.syncs += 1
        for op in self._journal:
            op(self.durable)
        self._journal.clear()
        self._journal_entries.clear()

    def crash(self, keep_ops: int = 0, torn_entries: int | None = None) -> None:
        """Power loss: the first `keep_ops` unsynced writes reached the platter, the rest
        vanish; `torn_entries`: the next write, if it is an append, was torn after that
        many of its entries (its other writes are lost). The node restarts from the
        durable image."""
        assert 0 <= keep_ops <= len(self._journal), (keep_ops, len(self._journal))
        self.crashes += 1
        if self.track_durability:
            for op in self._journal[:keep_ops]:
                op(self.durable)
            if torn_entries is not None and keep_ops < len(self._journal):
                batch = self._journal_entries[keep_ops][:torn_entries]
                if batch:
                    self.durable.append(batch)
            self.current = self.durable.clone()
        self._journal.clear()
        self._journal_entries.clear()

    def pending_append_sizes(self) -> list[int]:
        """Entries per unsynced write (0 for a non-append): to choose a tear point."""
        return [len(batch) for batch in self._journal_entries]

    def durable_hard_state(self) -> HardState:
        return self.durable.hard_state


def _take_snapshot(image: LogImage, snapshot: Snapshot) -> None:
    """Replace the log prefix up to the snapshot's index by the snapshot."""
    index = snapshot.meta.index
    if index <= image.snapshot.meta.index:
        return
    if index > image.last_index():
        return  # the covered entries never became durable on this image: skip
    assert image.term(index) == snapshot.meta.term
    image.entries = image.entries[index - image.snapshot.meta.index :]
    image.snapshot = snapshot

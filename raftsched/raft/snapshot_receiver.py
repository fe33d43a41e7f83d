"""Reassembling a snapshot that arrives in chunks (§7, InstallSnapshot).

Theory of operation. The leader sends the chunks of one snapshot in order and waits for
each answer (stop-and-wait flow control), so the follower only needs to remember the one
snapshot it is receiving: who sends it (leader and term), which snapshot it is, and the
bytes so far. A chunk at offset 0 (re)starts a transfer; a chunk that continues the current
transfer exactly where it stands is appended; anything else is answered with where the
follower stands (`next_offset`), or with "restart from 0" when it belongs to a transfer
the follower does not have (e.g. after a restart, which forgets partial transfers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import InstallSnapshot
from .types import Snapshot, SnapshotMeta


@dataclass(slots=True)
class _Transfer:
    key: tuple[int, int, int, int]  # (leader, term, snapshot index, snapshot term)
    meta: SnapshotMeta
    chunks: list[bytes] = field(default_factory=list)
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What to answer (InstallSnapshotResponse fields) and, once complete, the snapshot."""

    next_offset: int
    success: bool
    snapshot: Snapshot | None = None


class SnapshotReceiver:
    __slots__ = ("_transfer",)

    def __init__(self) -> None:
        self._transfer: _Transfer | None = None

    def receive(self, m: InstallSnapshot) -> ChunkOutcome:
        key = (m.src, m.term, m.snapshot_index, m.snapshot_term)
        transfer = self._transfer
        if m.offset == 0:
            meta = SnapshotMeta(m.snapshot_index, m.snapshot_term, m.membership)
            transfer = _Transfer(key, meta)
            self._transfer = transfer
        elif transfer is None or transfer.key != key:
            return ChunkOutcome(0, success=False)  # restart from the beginning
        if m.offset != transfer.size_bytes:
            return ChunkOutcome(transfer.size_bytes, success=True)  # duplicate or gap
        transfer.chunks.append(m.data)
        transfer.size_bytes += len(m.data)
        if not m.done:
            return ChunkOutcome(transfer.size_bytes, success=True)
        self._transfer = None
        snapshot = Snapshot(transfer.meta, b"".join(transfer.chunks))
        return ChunkOutcome(transfer.size_bytes, success=True, snapshot=snapshot)

"""Pending ReadIndex rounds on the leader (§6.4).

Theory of operation. A read is recorded with the commit index at the time it arrived (its
read index) and the *round* it joined. Rounds are numbered by the leader, increasing over
its term; every heartbeat carries the latest round number as its context, and each
follower echoes it back. Once a majority of the voters (the leader included) has echoed a
round >= r, the leader was still the leader after every read of round <= r arrived, so all
those reads are confirmed at once: one heartbeat round serves any number of concurrent
reads (batching). Reads leave the queue in arrival order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .types import NodeId

MAX_PENDING_READS = 100_000
"""Bound on reads waiting for confirmation; beyond it new reads are refused."""


@dataclass(frozen=True, slots=True)
class PendingRead:
    requester: NodeId  # the leader itself for local reads, else the follower that forwarded
    context: int
    index: int  # the read index: the leader's commit index when the read arrived
    round: int


class ReadOnlyQueue:
    __slots__ = ("_pending", "round", "unsent")

    def __init__(self) -> None:
        self._pending: deque[PendingRead] = deque()
        self.round = 0  # the latest round number handed out
        self.unsent = False  # a round was opened and no heartbeat carried it yet

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, requester: NodeId, context: int, index: int) -> None:
        if not self.unsent:
            self.round += 1
            self.unsent = True
        self._pending.append(PendingRead(requester, context, index, self.round))

    def confirm(self, confirmed_round: int) -> list[PendingRead]:
        """Remove and return the reads of every round <= `confirmed_round`."""
        pending = self._pending
        done: list[PendingRead] = []
        while pending and pending[0].round <= confirmed_round:
            done.append(pending.popleft())
        return done

    def clear(self) -> list[PendingRead]:
        dropped = list(self._pending)
        self._pending.clear()
        self.unsent = False
        return dropped

"""Per-queue configuration, state counts and the pending index.

The pending index is a `SortedIndex` (raftsched/sched/index.py) of `(-priority, seq, job id)`:
the first key is the highest-priority pending job, oldest first (`seq` is the job's creation
order, unique). Taking a job costs O(log n) whatever the queue depth. Keys hold the id, not the
Job: a tuple of atomic values is dropped from the garbage collector's tracking.

Deletion is eager: a pending job that is cancelled leaves the index at once
(`SchedulerState.transition` keeps every index in step), so leasing never meets garbage.

`counts` holds the number of jobs per state (terminal ones until retention removes them);
`unfinished` the number of non-terminal jobs, which `Limits.max_jobs_per_queue` bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .index import SortedIndex
from .job import LEASED, PENDING, STATES, TERMINAL, Job

PendingKey = tuple[int, int, str]  # (-priority, seq, job id)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """max_in_flight None: no limit on leased jobs. lease_ms / max_attempts None: the
    cluster defaults from Limits."""

    max_in_flight: int | None = None
    lease_ms: int | None = None
    max_attempts: int | None = None
    paused: bool = False

    def to_plain(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.max_in_flight,
            "lease_ms": self.lease_ms,
            "max_attempts": self.max_attempts,
            "paused": self.paused,
        }


class Queue:
    __slots__ = ("config", "counts", "name", "pending", "unfinished")

    def __init__(self, name: str, config: QueueConfig | None = None) -> None:
        self.name = name
        self.config = config or QueueConfig()
        self.pending: SortedIndex[PendingKey] = SortedIndex()
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.unfinished = 0

    def count_move(self, old_state: str | None, new_state: str) -> None:
        """Account a job's state change (old_state None: a new job)."""
        counts = self.counts
        if old_state is not None:
            counts[old_state] -= 1
            assert counts[old_state] >= 0, (self.name, old_state)
            self.unfinished -= old_state not in TERMINAL
        counts[new_state] += 1
        self.unfinished += new_state not in TERMINAL

    def count_remove(self, state: str) -> None:
        """A terminal job left the state (retention)."""
        assert state in TERMINAL
        self.counts[state] -= 1
        assert self.counts[state] >= 0

    @staticmethod
    def pending_key(job: Job) -> PendingKey:
        return (-job.spec.priority, job.seq, job.id)

    def lease_room(self) -> int:
        """How many more jobs this queue may have leased now (paused: none)."""
        config = self.config
        if config.paused:
            return 0
        pending = self.counts[PENDING]
        if config.max_in_flight is None:
            return pending
        return max(0, min(pending, config.max_in_flight - self.counts[LEASED]))

    def doc(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.to_plain(), "counts": dict(self.counts)}

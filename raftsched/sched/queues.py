"""Per-queue configuration, state counts and the pending index.

The pending index is a binary heap of `(-priority, seq, job id)`: the top is the highest-priority
pending job, oldest first (`seq` is the job's creation order, unique). Taking a job costs
O(log n) whatever the queue depth, which is what keeps the lease cost flat from 10k to 1M
pending jobs. Entries hold the id, not the Job: a tuple of atomic values is dropped from the
garbage collector's tracking, and with a million entries that halves the work of every full
collection; `seq` tells a job apart from a later one that reuses its id.

Deletion is lazy: a pending job that is cancelled keeps its heap entry, and `pop_pending` drops
entries whose job is gone or no longer pending. This is sound because a job has at most one
live entry: it enters the heap each time it becomes pending and leaves it only by being popped
(to be leased) or by becoming terminal (cancelled), after which it never returns to pending.

`counts` holds the number of jobs per state (terminal ones until retention removes them);
`unfinished` the number of non-terminal jobs, which `Limits.max_jobs_per_queue` bounds.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from .job import LEASED, PENDING, STATES, TERMINAL, Job


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """max_in_flight None: no limit on leased jobs. lease_ms / max_attempts None: the
    cluster defaults from Limits."""

    max_in_flight: int | None = None
    lease_ms: int | None = None
    max_attempts: int | None = None
    paused: bool = False

    def to_plain(self) -> dict[str, Any]:
        return {"max_in_flight": self.max_in_flight, "lease_ms": self.lease_ms,
                "max_attempts": self.max_attempts, "paused": self.paused}


class Queue:
    __slots__ = ("config", "counts", "heap", "name", "unfinished")

    def __init__(self, name: str, config: QueueConfig | None = None) -> None:
        self.name = name
        self.config = config or QueueConfig()
        self.heap: list[tuple[int, int, str]] = []
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.unfinished = 0

    def count_move(self, old_state: str | None, new_state: str) -> None:
        """Account a job's state change (old_state None: a new job)."""
        counts = self.counts
        if old_state is None:
            self.unfinished += 1
        else:
            assert old_state not in TERMINAL, (self.name, old_state)
            counts[old_state] -= 1
            assert counts[old_state] >= 0, (self.name, old_state)
        counts[new_state] += 1
        if new_state in TERMINAL:
            self.unfinished -= 1

    def count_remove(self, state: str) -> None:
        """A terminal job left the state (retention)."""
        assert state in TERMINAL
        self.counts[state] -= 1
        assert self.counts[state] >= 0

    def push_pending(self, job: Job) -> None:
        assert job.state == PENDING
        heapq.heappush(self.heap, (-job.spec.priority, job.seq, job.id))

    def pop_pending(self, jobs: dict[str, Job]) -> Job | None:
        """The best pending job, removed from the index; None when there is none."""
        heap = self.heap
        while heap:
            _, seq, job_id = heapq.heappop(heap)
            job = jobs.get(job_id)
            if job is not None and job.seq == seq and job.state == PENDING:
                return job
        return None

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

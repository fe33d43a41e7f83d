"""The job table: id -> Job, in shards so that growing it never stalls one apply.

A Python dict copies its whole hash table when it grows (at 2/3 full, to about 4x its
size): the submit that crossed 699,050 jobs spent 39 ms copying one dict, the one crossing
1,398,101 about twice that (bench/sched_apply.py, growth row) - over issue 7's 10 ms per
entry, and longer each doubling. 64 shards each hold ~1/64 of the jobs, so each copy is
1/64 as long, and the shards grow at different moments.

Shards are picked by Python's own string hash (cached in the str, free), which differs
between processes; nothing observable depends on it: lookups are by key, and iteration is
in submit order (`seq`), the order a single dict kept (jobs are inserted in seq order, and a
restored state inserts them in the snapshot's, which is seq order too), so every replica
iterates the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from operator import attrgetter
from typing import Final

from .job import Job

SHARD_BITS: Final = 6
_MASK: Final = (1 << SHARD_BITS) - 1
_SEQ: Final = attrgetter("seq")


class JobTable:
    """The subset of dict[str, Job] the state machine uses."""

    __slots__ = ("_len", "_shards")

    def __init__(self) -> None:
        self._shards: list[dict[str, Job]] = [{} for _ in range(1 << SHARD_BITS)]
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._shards[hash(job_id) & _MASK]

    def __getitem__(self, job_id: str) -> Job:
        return self._shards[hash(job_id) & _MASK][job_id]

    def get(self, job_id: str) -> Job | None:
        return self._shards[hash(job_id) & _MASK].get(job_id)

    def __setitem__(self, job_id: str, job: Job) -> None:
        shard = self._shards[hash(job_id) & _MASK]
        if job_id not in shard:
            self._len += 1
        shard[job_id] = job

    def __delitem__(self, job_id: str) -> None:
        del self._shards[hash(job_id) & _MASK][job_id]
        self._len -= 1

    def pop(self, job_id: str) -> Job:
        job = self._shards[hash(job_id) & _MASK].pop(job_id)
        self._len -= 1
        return job

    def values(self) -> Iterator[Job]:
        """Every job in submit order (each shard is in that order: merge them)."""
        return heapq.merge(*(shard.values() for shard in self._shards if shard), key=_SEQ)

    def sorted_values(self) -> list[Job]:
        """`values()` as a list, faster for the whole table (one sort of 64 sorted runs)."""
        jobs = [job for shard in self._shards for job in shard.values()]
        jobs.sort(key=_SEQ)
        return jobs

    def __iter__(self) -> Iterator[str]:
        return (job.id for job in self.values())

    def keys(self) -> Iterator[str]:
        return iter(self)

    def items(self) -> Iterator[tuple[str, Job]]:
        return ((job.id, job) for job in self.values())

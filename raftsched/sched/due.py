"""Due work, in bounded slices: what every entry does before its command (SPEC §4).

Order, against the entry's clock: finish resolving the dependents of ended jobs (the cascade),
release the leases of expired workers, release expired leases, promote scheduled jobs whose
run time came, fire due cron schedules, remove terminal jobs past retention, drop expired
idempotency keys. Each item costs units of the entry's `Budget` (`Limits.due_work_per_entry`);
when it runs out the rest waits for the next entry, and `SchedulerState.has_due_work` tells
the leader to propose another Tick (issue 7 defect 1: 300,000 jobs sharing one run_at, 100,000
leases expiring together or 50 `fire_all` schedules after an outage no longer stall a replica
for seconds in one entry).

Determinism: only live items are counted and every index holds live keys only (index.py), so
a replica restored from a snapshot does exactly the same slices as one that applied the log.
Items whose slice has not come yet are still handled correctly by commands: a dead lease is
released on the spot when a command meets it (leases.py), a scheduled job past its run time is
simply not leasable yet, a retained job is still readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import leases, schedules
from .job import PENDING, SCHEDULED, TERMINAL

if TYPE_CHECKING:
    from .state import Budget, SchedulerState


@dataclass(frozen=True, slots=True)
class DueCounts:
    """What one entry's due work did (the Tick's answer)."""

    released: int = 0
    promoted: int = 0
    fired: int = 0
    removed: int = 0
    resolved: int = 0
    expired_keys: int = 0


NOTHING_DUE = DueCounts()


def run_due(st: SchedulerState, budget: Budget) -> DueCounts:
    resolved = st.resolve_dependents(budget)
    released = leases.expire_workers(st, budget) + leases.expire_leases(st, budget)
    promoted = promote(st, budget)
    fired = schedules.fire_due(st, budget)
    removed = remove_retained(st, budget)
    expired_keys = st.idempotency.expire(st.clock_ms, st.limits.idempotency_ttl_ms, budget)
    if not (resolved or released or promoted or fired or removed or expired_keys):
        return NOTHING_DUE
    return DueCounts(released, promoted, fired, removed, resolved, expired_keys)


def promote(st: SchedulerState, budget: Budget) -> int:
    index, now, promoted = st.delay_index, st.clock_ms, 0
    while budget.left > 0:
        key = index.first()
        if key is None or key[0] > now:
            break
        job = st.jobs[key[2]]
        assert job.state == SCHEDULED and job.run_at_ms == key[0]
        st.transition(job, PENDING)  # removes the key
        budget.left -= 1
        promoted += 1
    return promoted


def remove_retained(st: SchedulerState, budget: Budget) -> int:
    index, removed = st.retention_index, 0
    ended_by = st.clock_ms - st.limits.retention_ms  # jobs that ended by then are removed
    while budget.left > 0:
        key = index.first()
        if key is None or key[0] > ended_by:
            break
        index.remove(key)
        job = st.jobs.pop(key[2])
        assert job.state in TERMINAL and job.seq == key[1]
        st.forget(job)
        budget.left -= 1
        removed += 1
    return removed


def work_waits(st: SchedulerState) -> int | None:
    """The earliest time at which due work waits, or None (the clock when it waits now)."""
    now = st.clock_ms
    if st.cascade or st.firing:
        return now
    tops: list[int] = []
    for index in (st.lease_index, st.delay_index, st.worker_index, st.schedule_index):
        key = index.first()
        if key is not None:
            tops.append(key[0])
    key = st.retention_index.first()
    if key is not None:
        tops.append(key[0] + st.limits.retention_ms)
    return min(tops) if tops else None

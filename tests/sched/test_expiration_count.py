"""`SchedulerState.lease_expirations` (the /metrics lease_expirations_total): every lease ended by
expiry counts, whichever entry ended it. The old metric counted only the `released` field of
Tick answers, so expiries done by the due work of other entries, or met by a command, were lost.
"""

from __future__ import annotations

from raftsched.sched import JobSpec, Lease, SubmitJobs, WorkerHeartbeat

from .helpers import Driver


def _leased(d: Driver, n: int, *, lease_ms: int = 1_000, worker: str = "w") -> None:
    d.ok(WorkerHeartbeat(worker_id=worker, capacity=100, ttl_ms=10**9))
    d.ok(
        SubmitJobs(
            jobs=tuple(JobSpec(id=f"{worker}-{i}", queue="q", lease_ms=lease_ms) for i in range(n))
        )
    )
    granted = d.ok(Lease(queue="q", worker_id=worker, max_jobs=n))["leases"]
    assert len(granted) == n


def test_expiries_done_by_the_due_work_of_any_entry_count() -> None:
    d = Driver()
    _leased(d, 3)
    assert d.state.lease_expirations == 0
    d.advance(1_001)
    # Not a Tick: a heartbeat of another worker carries the due work.
    d.ok(WorkerHeartbeat(worker_id="other", capacity=1, ttl_ms=10**9))
    assert d.state.lease_expirations == 3


def test_worker_expiry_counts_each_released_lease() -> None:
    d = Driver()
    d.ok(WorkerHeartbeat(worker_id="short", capacity=10, ttl_ms=2_000))
    d.ok(SubmitJobs(jobs=tuple(JobSpec(id=f"s{i}", queue="q", lease_ms=10**8) for i in range(4))))
    assert len(d.ok(Lease(queue="q", worker_id="short", max_jobs=4))["leases"]) == 4
    d.advance(2_001)
    d.settle()
    assert d.state.lease_expirations == 4

"""Bounded work per entry (issue 7 defects 1 and 2): due work is done in slices of
`Limits.due_work_per_entry` units, the leader keeps proposing Ticks while `has_due_work`, and a
replica restored from a snapshot taken between slices continues exactly like the original."""

from __future__ import annotations

from raftsched.sched import Refused, Result, SchedulerState
from raftsched.sched import commands as c
from raftsched.sched.limits import Limits

from .helpers import T0, Driver

PER_ENTRY = 50
LIMITS = Limits(due_work_per_entry=PER_ENTRY, max_batch_jobs=10_000, lease_grants_per_entry=1_000)


def _submit(d: Driver, n: int, prefix: str = "j", **kw: object) -> None:
    for start in range(0, n, 1_000):
        d.ok(
            c.SubmitJobs(
                jobs=tuple(
                    c.JobSpec(id=f"{prefix}{i}", queue="q", **kw)  # type: ignore[arg-type]
                    for i in range(start, min(n, start + 1_000))
                )
            )
        )


def _expect(result: Result, code: str) -> None:
    """A refusal that may change state: due work of its entry, or a dead lease released."""
    assert isinstance(result, Refused) and result.error.code == code, result


def _restored(d: Driver) -> Driver:
    twin = Driver(start_ms=d.now_ms)
    twin.state = SchedulerState.restore(d.state.snapshot())
    twin.index = d.index
    return twin


def test_promotions_of_one_run_at_are_sliced_and_a_restored_replica_agrees() -> None:
    """Old code: 300,000 jobs sharing one run_at were all promoted by one entry (7 s)."""
    d = Driver(LIMITS)
    _submit(d, 1_000, run_at_ms=T0 + 1_000)
    d.advance(1_000)
    tick = d.ok(c.Tick())
    assert tick["promoted"] == PER_ENTRY and tick["more"] is True
    assert d.state.has_due_work(d.now_ms)
    twin = _restored(d)
    for driver in (d, twin):
        assert driver.settle() == 1_000 // PER_ENTRY - 1
        assert driver.state.queue_counts()["q"]["pending"] == 1_000
        assert not driver.state.has_due_work(driver.now_ms)
    assert d.state.state_hash() == twin.state.state_hash()


def test_expiring_leases_are_sliced_and_a_command_never_acts_on_a_dead_lease() -> None:
    d = Driver(LIMITS)
    _submit(d, 300, lease_ms=1_000)
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1_000, ttl_ms=10**9))
    token = d.ok(c.Lease(queue="q", worker_id="w", max_jobs=300))["leases"][0]["token"]
    d.advance(1_000)
    assert d.ok(c.Tick())["released"] == PER_ENTRY
    # j299 is last in line; its lease is dead though its slice has not come.
    _expect(d.apply(c.Complete(job_id="j299", token=token)), "lease_expired")
    assert d.job("j299")["state"] in ("scheduled", "pending")
    d.settle()
    assert d.state.queue_counts()["q"]["leased"] == 0


def test_worker_expiry_is_sliced_and_late_reports_are_refused() -> None:
    d = Driver(LIMITS)
    _submit(d, 200, lease_ms=10**9)
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1_000, ttl_ms=1_000))
    token = d.ok(c.Lease(queue="q", worker_id="w", max_jobs=200))["leases"][0]["token"]
    d.advance(1_000)
    d.apply(c.Tick())
    assert d.state.queue_counts()["q"]["leased"] > 0  # not all in one entry
    _expect(d.apply(c.HeartbeatLease(job_id="j199", token=token)), "lease_expired")
    d.settle()
    assert d.state.queue_counts()["q"]["leased"] == 0
    assert d.state.worker_docs() == []


def test_retention_and_idempotency_expiry_are_sliced() -> None:
    d = Driver(Limits(due_work_per_entry=PER_ENTRY, retention_ms=1_000))
    for i in range(120):
        d.ok(c.SubmitJobs(jobs=(c.JobSpec(id=f"j{i}", queue="q"),), idempotency_key=f"k{i}"))
        d.ok(c.Cancel(job_id=f"j{i}"))
    d.advance(86_400_000)
    tick = d.ok(c.Tick())
    assert tick["removed"] == PER_ENTRY
    d.settle()
    assert len(d.state.jobs) == 0 and len(d.state.idempotency) == 0


def test_cron_catch_up_is_sliced_and_restores_midway() -> None:
    """Old code: a fire_all schedule after an outage created all its fires in one entry."""
    d = Driver(Limits(due_work_per_entry=200))
    d.ok(
        c.PutSchedule(
            name="s",
            cron="* * * * *",
            template=c.JobTemplate(queue="cq"),
            misfire="fire_all",
            misfire_cap=100,
        )
    )
    d.advance(30 * 86_400_000)
    first = d.ok(c.Tick())
    assert first["fired"] < 100 and first["more"] is True
    twin = _restored(d)
    for driver in (d, twin):
        driver.settle()
        page, _ = driver.state.list_jobs(queue="cq", limit=1_000)
        assert len(page) == 100
        assert page == sorted(page, key=lambda j: j["id"])  # created oldest first
    assert d.state.state_hash() == twin.state.state_hash()


def test_a_long_cascade_restores_midway() -> None:
    d = Driver(Limits(due_work_per_entry=PER_ENTRY, max_batch_jobs=1_000))
    specs = [c.JobSpec(id="n0", queue="q")] + [
        c.JobSpec(id=f"n{i}", queue="q", depends_on=("n0",)) for i in range(1, 400)
    ]
    d.ok(c.SubmitJobs(jobs=tuple(specs)))
    d.ok(c.Cancel(job_id="n5"))  # a waiting dependent ended already: skipped, not counted
    d.ok(c.Cancel(job_id="n0"))
    twin = _restored(d)
    for driver in (d, twin):
        driver.settle()
        assert driver.state.queue_counts()["q"]["cancelled"] == 400
    assert d.state.state_hash() == twin.state.state_hash()


def test_cancelled_jobs_leave_no_garbage_in_the_indexes() -> None:
    """Old code: cancelled pending/scheduled jobs stayed in the heaps (200,000 stale entries
    cost the next lease 0.68 s); replaced schedules and heartbeats grew their heaps."""
    d = Driver(LIMITS)
    _submit(d, 500)
    _submit(d, 500, prefix="s", delay_ms=10**6)
    for i in range(500):
        d.ok(c.Cancel(job_id=f"j{i}"))
        d.ok(c.Cancel(job_id=f"s{i}"))
    assert len(d.state.queues["q"].pending) == 0
    assert len(d.state.delay_index) == 0
    for _ in range(100):
        d.ok(c.PutSchedule(name="p", cron="0 0 1 1 *", template=c.JobTemplate(queue="cq")))
        d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1, ttl_ms=1_000))
        d.advance(1)
    assert len(d.state.schedule_index) == 1
    assert len(d.state.worker_index) == 1


def test_has_due_work_reports_a_lagging_clock() -> None:
    d = Driver(Limits(max_clock_step_ms=60_000), bound_clock=True)
    d.apply(c.Tick())
    assert not d.state.has_due_work(d.now_ms)
    assert d.state.has_due_work(d.now_ms + 3_600_000)
    d.advance(3_600_000)
    assert d.settle() == 59  # until the lag is one step: the next entry closes it
    assert d.state.clock_ms == d.now_ms - 60_000

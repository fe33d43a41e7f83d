"""Issue 7: timeout_ms enforced, listing by index, partial queue config, worker incarnations,
dead-letter requeue/purge, workflow status/cancel, idempotency answers (compact, transient
refusals not stored), stale fail after a re-lease."""

from __future__ import annotations

from typing import Any

from raftsched.sched import Ok, SchedulerState
from raftsched.sched import commands as c
from raftsched.sched.limits import Limits

from .helpers import Driver


def job(job_id: str, queue: str = "q", **kw: object) -> c.JobSpec:
    return c.JobSpec(id=job_id, queue=queue, **kw)  # type: ignore[arg-type]


def submit(*specs: c.JobSpec, key: str | None = None) -> c.SubmitJobs:
    return c.SubmitJobs(jobs=specs, idempotency_key=key)


def lease_one(d: Driver, worker: str = "w", queue: str = "q") -> dict[str, object]:
    grants = d.ok(c.Lease(queue=queue, worker_id=worker))["leases"]
    assert len(grants) == 1
    grant: dict[str, object] = grants[0]
    return grant


def test_timeout_ends_the_attempt_whatever_the_heartbeats() -> None:
    """Old code: a job with timeout_ms=1000 stayed leased for 400 s of heartbeats."""
    d = Driver()
    d.ok(submit(job("a", timeout_ms=1_000, lease_ms=600_000, max_attempts=2)))
    token = int(str(lease_one(d)["token"]))
    d.advance(500)
    answer = d.ok(c.HeartbeatLease(job_id="a", token=token))
    assert answer["lease_expires_at"] == d.now_ms + 500  # capped at lease start + timeout
    d.advance(500)
    d.refused(c.HeartbeatLease(job_id="a", token=token), "lease_expired")
    doc = d.job("a")
    assert doc["state"] in ("scheduled", "pending") and doc["error"] == "timed out"


def test_listing_pages_by_queue_and_state_from_the_index() -> None:
    d = Driver()
    d.ok(submit(*(job(f"j{i}", queue="q" if i % 2 else "r") for i in range(10))))
    d.ok(c.Cancel(job_id="j3"))
    page, cursor = d.state.list_jobs(queue="q", state="pending", limit=2)
    assert [j["id"] for j in page] == ["j1", "j5"]
    page, cursor = d.state.list_jobs(queue="q", state="pending", limit=2, after=cursor)
    assert [j["id"] for j in page] == ["j7", "j9"] and cursor is None
    page, _ = d.state.list_jobs(state="pending", limit=3)
    assert [j["id"] for j in page] == ["j0", "j1", "j2"]
    page, _ = d.state.list_jobs(queue="q", limit=10)
    assert [j["id"] for j in page] == ["j1", "j3", "j5", "j7", "j9"]
    restored = SchedulerState.restore(d.state.snapshot())
    assert restored.list_jobs(limit=100) == d.state.list_jobs(limit=100)


def test_queue_config_is_a_partial_update() -> None:
    """Old code: sending paused=false replaced the whole config and dropped max_in_flight."""
    d = Driver()
    d.ok(c.ConfigureQueue(queue="q", max_in_flight=3, lease_ms=9_000))
    d.ok(c.ConfigureQueue(queue="q", paused=True, fields_set=("paused",)))
    config = d.ok(c.ConfigureQueue(queue="q", paused=False, fields_set=("paused",)))
    assert config["queue"]["config"] == {
        "max_in_flight": 3,
        "lease_ms": 9_000,
        "max_attempts": None,
        "paused": False,
    }
    cleared = d.ok(c.ConfigureQueue(queue="q", fields_set=("max_in_flight",)))
    assert cleared["queue"]["config"]["max_in_flight"] is None


def test_a_restarted_worker_gets_a_new_incarnation_and_its_old_leases_are_released() -> None:
    d = Driver()
    d.ok(submit(job("a"), job("b")))
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, incarnation="host:1"))
    old = d.state.worker_docs()[0]["incarnation"]
    token = int(str(lease_one(d)["token"]))
    answer = d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, incarnation="host:2"))
    assert answer["worker"]["incarnation"] > old and answer["worker"]["leased"] == []
    assert d.job("a")["state"] in ("scheduled", "pending")
    assert d.job("a")["error"] == "worker expired"
    d.refused(c.Complete(job_id="a", token=token), "lease_expired")


def test_a_worker_registered_by_a_lease_adopts_its_first_incarnation() -> None:
    """A worker whose registration expired re-registers with its next Lease (no incarnation
    string); its next heartbeat names its incarnation: that must not release what it leased."""
    d = Driver()
    d.ok(submit(job("a")))
    grant = lease_one(d)  # registers "w" implicitly
    answer = d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, incarnation="host:1"))
    assert answer["worker"]["leased"] == ["a"] and d.job("a")["state"] == "leased"
    assert d.state.workers["w"].process == "host:1"
    d.ok(c.Complete(job_id="a", token=int(str(grant["token"]))))
    again = d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, incarnation="host:2"))
    assert again["worker"]["incarnation"] > answer["worker"]["incarnation"]  # a restart


def test_a_worker_leases_only_from_its_queues() -> None:
    d = Driver()
    d.ok(submit(job("a"), job("b", queue="other")))
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, queues=("other",)))
    d.refused(c.Lease(queue="q", worker_id="w"), "queue_not_allowed")
    assert lease_one(d, queue="other")["job_id"] == "b"


def test_dead_letter_requeue_and_purge() -> None:
    d = Driver()
    d.ok(submit(job("a", max_attempts=1), job("b", max_attempts=1), job("c")))
    for _ in range(2):
        grant = lease_one(d)
        d.ok(c.Fail(job_id=str(grant["job_id"]), token=int(str(grant["token"])), retryable=False))
    assert d.job("a")["state"] == "dead" and d.job("b")["state"] == "dead"
    d.refused(c.RequeueDead(job_ids=("a", "c")), "invalid")  # all or none: c is not dead
    out = d.ok(c.RequeueDead(job_ids=("a",), max_attempts=4))
    assert out["jobs"][0]["state"] == "pending"
    doc = d.job("a")
    assert doc["attempts"] == 0 and doc["max_attempts"] == 4 and doc["error"] is None
    assert d.ok(c.PurgeDead(job_ids=("b",))) == {"purged": ["b"]}
    assert d.state.get_job("b") is None
    d.refused(c.PurgeDead(job_ids=("b",)), "not_found")
    restored = SchedulerState.restore(d.state.snapshot())
    assert restored.state_hash() == d.state.state_hash()


def test_workflow_status_and_cancel() -> None:
    d = Driver()
    d.ok(
        c.SubmitWorkflow(
            workflow_id="wf",
            jobs=(job("x"), job("y", depends_on=("x",)), job("z", depends_on=("y",))),
        )
    )
    status = d.state.workflow_status("wf")
    assert status is not None and status["counts"]["waiting"] == 2 and not status["done"]
    out = d.ok(c.CancelWorkflow(workflow_id="wf"))
    assert out["cancelled"] == ["x"] or set(out["cancelled"]) <= {"x", "y", "z"}
    d.settle()
    status = d.state.workflow_status("wf")
    assert status is not None and status["done"] and status["counts"]["cancelled"] == 3
    d.refused(c.CancelWorkflow(workflow_id="nope"), "not_found")


def test_keyed_lease_answer_is_stored_compactly_and_replayed_whole() -> None:
    """Old code: a keyed lease stored every leased payload in the idempotency table."""
    d = Driver()
    big = "x" * 10_000
    d.ok(submit(*(job(f"j{i}", payload=big) for i in range(20))))
    cmd = c.Lease(queue="q", worker_id="w", max_jobs=20, idempotency_key="k")
    first = d.apply(cmd)
    again = d.apply(cmd)
    assert isinstance(first, Ok) and isinstance(again, Ok)
    assert again.value == first.value
    assert len(d.state.snapshot()) < 20 * 10_000 + 50_000  # payloads once, not twice


def test_a_transient_refusal_is_not_stored_as_the_key_answer() -> None:
    """Old code: a queue_full refusal was the key's answer for a day."""
    d = Driver(Limits(max_jobs_per_queue=1))
    d.ok(submit(job("a")))
    d.refused(submit(job("b"), key="k"), "queue_full")
    d.ok(c.Cancel(job_id="a"))
    assert d.ok(submit(job("b"), key="k"))["jobs"][0]["created"] is True


def test_a_repeated_fail_after_a_new_lease_is_stale_as_documented() -> None:
    d = Driver()
    d.ok(submit(job("a", backoff=c.Backoff(initial_ms=0, max_ms=0))))
    token = int(str(lease_one(d)["token"]))
    d.ok(c.Fail(job_id="a", token=token))
    assert d.ok(c.Fail(job_id="a", token=token))["state"] == "pending"  # acknowledged again
    lease_one(d)
    d.refused(c.Fail(job_id="a", token=token), "stale_token")


def test_admission_caps_refuse_overloaded_and_are_never_cached() -> None:
    d = Driver(Limits(max_live_jobs=2))
    d.ok(submit(job("a"), job("b")))
    refused = d.refused(submit(job("c"), key="k"), "overloaded")
    assert refused.error.details["what"] == "live_jobs"
    d.ok(c.Cancel(job_id="a"))
    assert d.ok(submit(job("c"), key="k"))["jobs"][0]["created"] is True


class _NoScan(dict[str, object]):
    """A jobs dict that refuses to be scanned: listing must go through its index."""

    def values(self) -> Any:
        raise AssertionError("list_jobs scanned every job")

    def __iter__(self) -> Any:
        raise AssertionError("list_jobs scanned every job")


def test_listing_a_page_does_not_scan_the_jobs() -> None:
    """Old code walked every job for each page (500,000 jobs: 0.04-0.16 s per page)."""
    d = Driver()
    d.ok(submit(*(job(f"a{i}", queue="big") for i in range(500))))
    d.ok(submit(job("b0", queue="small"), job("b1", queue="small")))
    d.state.jobs = _NoScan(d.state.jobs)  # type: ignore[assignment]
    page, cursor = d.state.list_jobs(queue="small", limit=1)
    assert [j["id"] for j in page] == ["b0"]
    page, _ = d.state.list_jobs(queue="small", state="pending", limit=5, after=cursor)
    assert [j["id"] for j in page] == ["b1"]

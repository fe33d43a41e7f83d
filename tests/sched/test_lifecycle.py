"""The job lifecycle: selection order, fencing, retries, expiry, dependencies, retention, limits."""

from __future__ import annotations

from typing import Any

from raftsched.sched import commands as c
from raftsched.sched.backoff import retry_delay_ms
from raftsched.sched.limits import DAY_MS, Limits

from .helpers import Driver


def job(job_id: str | None, queue: str = "q", **kw: Any) -> c.JobSpec:
    return c.JobSpec(id=job_id, queue=queue, **kw)


def submit(*specs: c.JobSpec, key: str | None = None) -> c.SubmitJobs:
    return c.SubmitJobs(jobs=specs, idempotency_key=key)


def lease(d: Driver, n: int = 1, worker: str = "w", queue: str = "q") -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = d.ok(c.Lease(queue=queue, worker_id=worker, max_jobs=n))[
        "leases"
    ]
    return grants


def test_lease_takes_highest_priority_then_oldest() -> None:
    d = Driver()
    d.ok(submit(job("low", priority=1), job("high1", priority=5)))
    d.ok(submit(job("high2", priority=5), job("mid", priority=3)))
    order = [g["job_id"] for g in lease(d, 10)]
    assert order == ["high1", "high2", "mid", "low"]


def test_tokens_are_the_lease_index_and_grow_per_job() -> None:
    d = Driver()
    d.ok(submit(job("a", max_attempts=5, backoff=c.Backoff(0, 1.0, 0)), job("b")))
    grants = lease(d, 2)
    assert {g["token"] for g in grants} == {d.index}  # one Lease entry: one token
    token1 = grants[0]["token"]
    d.ok(c.Fail(job_id="a", token=token1))  # zero backoff: back to pending at once
    assert d.job("a")["state"] == "pending"
    token2 = lease(d)[0]["token"]
    assert token2 == d.index > token1
    assert [e["token"] for e in d.job("a")["events"]] == [0, token1, token1, token2]


def test_complete_is_idempotent_with_the_same_token() -> None:
    d = Driver()
    d.ok(submit(job("a")))
    token = lease(d)[0]["token"]
    first = d.ok(c.Complete(job_id="a", token=token, result={"x": 1}))
    again = d.ok(c.Complete(job_id="a", token=token, result={"x": 2}))
    assert (
        first
        == again
        == {
            "id": "a",
            "state": "succeeded",
            "token": token,
            "attempts": 1,
            "run_at": first["run_at"],
        }
    )
    assert d.job("a")["result"] == {"x": 1}
    assert [e["state"] for e in d.job("a")["events"]].count("succeeded") == 1


def test_a_retried_fail_is_acknowledged_and_changes_nothing() -> None:
    d = Driver()
    d.ok(submit(job("a")))
    token = lease(d)[0]["token"]
    d.ok(c.Fail(job_id="a", token=token, error={"msg": "boom"}, retryable=False))
    before = d.job("a")
    again = d.ok(c.Fail(job_id="a", token=token, error={"msg": "other"}, retryable=True))
    assert again["state"] == "dead" and again["token"] == token
    assert d.job("a") == before  # no new event, error or attempt
    assert before["error"] == {"msg": "boom"}
    # Heartbeat and complete with that token are still refused.
    assert d.apply(c.Complete(job_id="a", token=token)).error.code == (  # type: ignore[union-attr]
        "already_terminal"
    )


def test_complete_after_expiry_without_a_tick_is_refused_and_releases() -> None:
    d = Driver()
    d.ok(submit(job("a", lease_ms=1_000)))
    token = lease(d)[0]["token"]
    d.advance(999)
    d.ok(c.HeartbeatLease(job_id="a", token=token, extend_ms=1_000))  # live: extended
    d.advance(1_000)  # clock == new expiry: dead
    refused = d.apply(c.Complete(job_id="a", token=token))
    assert refused.error.code == "lease_expired"  # type: ignore[union-attr]
    doc = d.job("a")
    assert doc["state"] == "scheduled" and doc["error"] == "lease expired"


def test_heartbeat_never_shortens_a_lease() -> None:
    d = Driver()
    d.ok(submit(job("a", lease_ms=10_000)))
    token = lease(d)[0]["token"]
    expiry = d.job("a")["lease_expires_at"]
    out = d.ok(c.HeartbeatLease(job_id="a", token=token, extend_ms=1))
    assert out["lease_expires_at"] == expiry


def test_expiry_retries_with_backoff_then_dies() -> None:
    d = Driver()
    backoff = c.Backoff(initial_ms=1_000, multiplier=2.0, max_ms=10_000)
    d.ok(submit(job("a", lease_ms=100, max_attempts=2, backoff=backoff)))
    lease(d)
    d.advance(100)
    assert d.ok(c.Tick())["released"] == 1
    doc = d.job("a")
    assert doc["state"] == "scheduled"
    assert doc["run_at"] == d.now_ms + retry_delay_ms(backoff, "a", 1)
    d.now_ms = doc["run_at"] - 1
    assert d.ok(c.Tick())["promoted"] == 0
    d.advance(1)
    assert d.ok(c.Tick())["promoted"] == 1
    assert d.job("a")["state"] == "pending"
    lease(d)
    d.advance(100)
    d.ok(c.Tick())
    doc = d.job("a")
    assert doc["state"] == "dead" and doc["reason"] == "attempts_exhausted"
    assert doc["attempts"] == 2


def test_fail_not_retryable_is_dead_at_once() -> None:
    d = Driver()
    d.ok(submit(job("a", max_attempts=5)))
    token = lease(d)[0]["token"]
    out = d.ok(c.Fail(job_id="a", token=token, error={"msg": "bad input"}, retryable=False))
    assert out["state"] == "dead"
    assert d.job("a")["reason"] == "failed" and d.job("a")["error"] == {"msg": "bad input"}


def test_max_in_flight_paused_and_worker_capacity() -> None:
    d = Driver()
    d.ok(submit(*(job(f"j{i}") for i in range(10))))
    d.ok(c.ConfigureQueue(queue="q", max_in_flight=3))
    assert len(lease(d, 10, worker="w1")) == 3
    assert lease(d, 10, worker="w2") == []
    d.ok(c.ConfigureQueue(queue="q", max_in_flight=None, paused=True))
    assert lease(d, 10, worker="w2") == []
    d.ok(c.ConfigureQueue(queue="q"))
    d.ok(c.WorkerHeartbeat(worker_id="w3", capacity=2))
    assert len(lease(d, 10, worker="w3")) == 2
    assert lease(d, 10, worker="w3") == []
    # an unregistered worker is registered implicitly with the default capacity
    assert len(lease(d, 10, worker="w4")) == 5
    assert [w["id"] for w in d.state.worker_docs()] == ["w1", "w2", "w3", "w4"]
    assert d.state.worker_docs()[3]["capacity"] == Limits().default_worker_capacity


def test_queue_defaults_apply_at_submit() -> None:
    d = Driver()
    d.ok(c.ConfigureQueue(queue="q", lease_ms=5_000, max_attempts=7))
    d.ok(submit(job("a"), job("b", lease_ms=9, max_attempts=1)))
    assert (d.job("a")["lease_ms"], d.job("a")["max_attempts"]) == (5_000, 7)
    assert (d.job("b")["lease_ms"], d.job("b")["max_attempts"]) == (9, 1)


def test_worker_expiry_releases_all_its_leases_at_once() -> None:
    d = Driver()
    d.ok(submit(*(job(f"j{i}", lease_ms=DAY_MS) for i in range(3))))
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, ttl_ms=10_000))
    grants = lease(d, 3)
    assert len(grants) == 3
    d.advance(9_000)
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, ttl_ms=10_000))  # refresh
    d.advance(9_000)
    assert d.ok(c.Tick())["released"] == 0
    d.advance(1_000)
    assert d.ok(c.Tick())["released"] == 3
    assert d.state.worker_docs() == []
    for i in range(3):
        doc = d.job(f"j{i}")
        assert doc["state"] in ("scheduled", "pending") and doc["error"] == "worker expired"
    refused = d.apply(c.Complete(job_id="j0", token=grants[0]["token"]))
    assert refused.error.code == "lease_expired"  # type: ignore[union-attr]


def test_shorter_worker_ttl_takes_effect() -> None:
    d = Driver()
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1, ttl_ms=60_000))
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1, ttl_ms=1_000))
    assert d.state.next_deadline_ms() == d.now_ms + 1_000
    d.advance(1_000)
    d.ok(c.Tick())
    assert d.state.worker_docs() == []


def test_delayed_jobs_wait_in_scheduled() -> None:
    d = Driver()
    d.ok(submit(job("later", delay_ms=5_000), job("at", run_at_ms=d.now_ms + 2_000)))
    assert d.job("later")["state"] == "scheduled"
    assert d.state.next_deadline_ms() == d.now_ms + 2_000
    assert lease(d) == []
    d.advance(2_000)
    assert [g["job_id"] for g in lease(d)] == ["at"]  # any entry's stamp promotes
    d.advance(3_000)
    assert [g["job_id"] for g in lease(d)] == ["later"]


def test_dependencies_wait_then_run_and_failures_cascade() -> None:
    d = Driver()
    d.ok(
        submit(
            job("a"),
            job("b"),
            job("c", depends_on=("a", "b")),
            job("d", depends_on=("c",)),
            job("e", depends_on=("d",)),
        )
    )
    assert [d.job(x)["state"] for x in "abcde"] == [
        "pending",
        "pending",
        "waiting",
        "waiting",
        "waiting",
    ]
    grants = {g["job_id"]: g["token"] for g in lease(d, 2)}
    d.ok(c.Complete(job_id="a", token=grants["a"]))
    assert d.job("c")["state"] == "waiting"
    d.ok(c.Complete(job_id="b", token=grants["b"]))
    assert d.job("c")["state"] == "pending"
    token = lease(d)[0]["token"]
    d.ok(c.Fail(job_id="c", token=token, retryable=False))
    for x in "de":
        assert d.job(x)["state"] == "cancelled" and d.job(x)["reason"] == "upstream_failed"


def test_depending_on_a_dead_job_cancels_at_submit() -> None:
    d = Driver()
    d.ok(submit(job("a")))
    d.ok(c.Cancel(job_id="a"))
    out = d.ok(submit(job("b", depends_on=("a",)), job("c", depends_on=("b",))))
    assert [j["state"] for j in out["jobs"]] == ["cancelled", "cancelled"]
    assert d.job("c")["reason"] == "upstream_failed"


def test_cancel_cascade_handles_long_chains() -> None:
    d = Driver(Limits(max_batch_jobs=5_000))
    specs = [job("n0")] + [job(f"n{i}", depends_on=(f"n{i - 1}",)) for i in range(1, 3_000)]
    d.ok(submit(*specs))
    d.ok(c.Cancel(job_id="n0"))
    assert d.settle() >= 3_000 // d.state.limits.due_work_per_entry - 1  # bounded slices
    assert d.state.queue_counts()["q"]["cancelled"] == 3_000


def test_resubmit_same_spec_returns_existing() -> None:
    d = Driver()
    first = d.ok(submit(job("a", payload={"x": [1, 2]})))
    again = d.ok(submit(job("a", payload={"x": [1, 2]}), job("b")))
    assert first["jobs"][0]["created"] is True
    assert [(j["id"], j["created"]) for j in again["jobs"]] == [("a", False), ("b", True)]
    assert d.state.queue_counts()["q"]["pending"] == 2


def test_generated_ids_are_unique_and_deterministic() -> None:
    d = Driver()
    out = d.ok(submit(job(None), job(None)))
    assert [j["id"] for j in out["jobs"]] == [f"auto-{d.index}-0", f"auto-{d.index}-1"]


def test_retention_removes_terminal_jobs_and_dependents_cannot_find_them() -> None:
    d = Driver(Limits(retention_ms=60_000))
    d.ok(submit(job("a"), job("keep")))
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=1, ttl_ms=DAY_MS))
    token = lease(d)[0]["token"]
    d.ok(c.Complete(job_id="a", token=token))
    assert d.state.next_deadline_ms() == d.now_ms + 60_000
    d.advance(59_999)
    d.ok(c.Tick())
    assert d.state.get_job("a") is not None
    d.advance(1)
    assert d.ok(c.Tick())["removed"] == 1
    assert d.state.get_job("a") is None and d.state.get_job("keep") is not None
    assert d.state.queue_counts()["q"]["succeeded"] == 0
    assert d.apply(submit(job("b", depends_on=("a",)))).error.code == (  # type: ignore[union-attr]
        "unknown_dependency"
    )
    d.ok(submit(job("a")))  # the id is free again


def test_event_history_is_bounded() -> None:
    d = Driver(Limits(event_history=4))
    d.ok(submit(job("a", max_attempts=100, backoff=c.Backoff(0, 1.0, 0))))
    for _ in range(10):
        token = lease(d)[0]["token"]
        d.ok(c.Fail(job_id="a", token=token))
    events = d.job("a")["events"]
    assert len(events) == 4
    assert events[-1]["state"] == "pending" and events[-2]["state"] == "leased"


def test_idempotency_key_returns_first_answer_and_expires() -> None:
    d = Driver(Limits(idempotency_ttl_ms=1_000, idempotency_max_entries=2))
    first = d.apply(submit(job("a"), key="k1"))
    assert d.apply(submit(job("a"), key="k1")) is first  # not applied again
    assert d.state.queue_counts()["q"]["pending"] == 1
    refused = d.apply(c.Cancel(job_id="zzz", idempotency_key="k2"))
    d.ok(submit(job("zzz")))
    assert d.apply(c.Cancel(job_id="zzz", idempotency_key="k2")) == refused  # first answer
    assert d.job("zzz")["state"] == "pending"
    # Full: a new key is refused overloaded (not stored), never evicting a live key (the old
    # code evicted k1, so a retry of k1 would have been applied a second time).
    d.refused(submit(job("b"), key="k3"), "overloaded")
    assert [k for k, _ in d.state.idempotency.items()] == ["k1", "k2"]
    assert d.apply(submit(job("a"), key="k1")) is first
    assert d.state.get_job("b") is None
    d.advance(1_000)
    d.ok(c.Tick())
    assert len(d.state.idempotency) == 0
    out = d.ok(submit(job("a"), key="k1"))  # expired: applied again (same spec: existing)
    assert out["jobs"][0]["created"] is False
    assert d.ok(submit(job("b"), key="k3"))["jobs"][0]["created"] is True


def test_list_jobs_pages_in_creation_order() -> None:
    d = Driver()
    d.ok(submit(*(job(f"j{i}", queue="q" if i % 2 else "r") for i in range(7))))
    page, cursor = d.state.list_jobs(queue="q", limit=2)
    assert [j["id"] for j in page] == ["j1", "j3"]
    page, cursor = d.state.list_jobs(queue="q", limit=2, after=cursor)
    assert [j["id"] for j in page] == ["j5"] and cursor is None
    page, _ = d.state.list_jobs(state="pending", limit=100)
    assert len(page) == 7


def test_clock_never_goes_backwards() -> None:
    d = Driver()
    d.ok(submit(job("a", delay_ms=1_000)))
    d.apply(c.Tick(), at_ms=d.now_ms - 50_000)  # an older stamp (a new leader's skew)
    assert d.state.clock_ms == d.now_ms + 50_000
    assert d.job("a")["state"] == "scheduled"


def test_queue_counts_track_every_state() -> None:
    d = Driver()
    d.ok(submit(job("a"), job("b"), job("c", delay_ms=10), job("w", depends_on=("a",))))
    token = lease(d)[0]["token"]
    d.ok(c.Cancel(job_id="b"))
    counts = d.state.queue_counts()["q"]
    assert counts == {
        "waiting": 1,
        "scheduled": 1,
        "pending": 0,
        "leased": 1,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 1,
    }
    d.ok(c.Complete(job_id="a", token=token))
    assert d.state.queue_counts()["q"]["pending"] == 1  # w woke up


def test_next_deadline_follows_a_heartbeated_lease() -> None:
    d = Driver()
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=4, ttl_ms=DAY_MS))
    d.ok(submit(job("a", lease_ms=1_000)))
    token = lease(d)[0]["token"]
    assert d.state.next_deadline_ms() == d.now_ms + 1_000
    d.ok(c.HeartbeatLease(job_id="a", token=token, extend_ms=5_000))
    assert d.state.next_deadline_ms() == d.now_ms + 5_000
    d.advance(4_999)
    assert d.ok(c.Tick())["released"] == 0
    d.advance(1)
    assert d.ok(c.Tick())["released"] == 1


def test_a_retried_lease_with_its_key_leases_nothing_more() -> None:
    d = Driver()
    d.ok(submit(job("a"), job("b")))
    first = d.ok(c.Lease(queue="q", worker_id="w", idempotency_key="lease-1"))
    again = d.ok(c.Lease(queue="q", worker_id="w", idempotency_key="lease-1"))
    assert first == again and len(first["leases"]) == 1
    assert d.state.queue_counts()["q"]["leased"] == 1
    assert d.job("b")["state"] == "pending"

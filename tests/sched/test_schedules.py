"""Cron on the state-machine side: job ids, exactly once per fire time, misfires, backfill.

(The cron engine's own parsing, DST and misfire tables are in tests/sched/test_cron.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import commands as c
from raftsched.sched import cron as cron_engine
from raftsched.sched.limits import Limits

from .helpers import Driver

MIN = 60_000
T = int(datetime(2024, 1, 15, 12, 0, tzinfo=UTC).timestamp() * 1000)  # a whole minute


def put(name: str = "s", cron: str = "* * * * *", **kw: Any) -> c.PutSchedule:
    kw.setdefault("template", c.JobTemplate(queue="cq", payload={"from": name}))
    return c.PutSchedule(name=name, cron=cron, **kw)


def cron_ids(d: Driver, queue: str = "cq") -> list[str]:
    page, _ = d.state.list_jobs(queue=queue, limit=10_000)
    return [j["id"] for j in page]


def test_each_fire_creates_one_job_named_by_its_fire_time() -> None:
    d = Driver(start_ms=T)
    d.ok(put())
    assert d.state.next_deadline_ms() == T + MIN
    d.apply(c.Tick(), at_ms=T + MIN)
    d.apply(c.Tick(), at_ms=T + MIN)  # the same time proposed again (a new leader)
    d.apply(c.Tick(), at_ms=T + MIN + 500)
    assert cron_ids(d) == [f"s@{T + MIN}"]
    doc = d.job(f"s@{T + MIN}")
    assert doc["payload"] == {"from": "s"} and doc["state"] == "pending"
    d.apply(c.Tick(), at_ms=T + 2 * MIN)
    assert cron_ids(d) == [f"s@{T + MIN}", f"s@{T + 2 * MIN}"]
    assert d.state.schedule_docs()[0]["fired_through"] == T + 2 * MIN


def test_fire_all_after_an_outage_creates_the_latest_cap() -> None:
    d = Driver(start_ms=T)
    d.ok(put(misfire="fire_all", misfire_cap=3))
    d.apply(c.Tick(), at_ms=T + 10 * MIN)
    assert cron_ids(d) == [f"s@{T + k * MIN}" for k in (8, 9, 10)]


def test_fire_once_after_an_outage_creates_only_the_latest() -> None:
    d = Driver(start_ms=T)
    d.ok(put(misfire="fire_once", misfire_grace_ms=1_000))
    d.apply(c.Tick(), at_ms=T + 10 * MIN + 30_000)
    assert cron_ids(d) == [f"s@{T + 10 * MIN}"]


def test_skip_after_an_outage_creates_only_on_time_fires() -> None:
    d = Driver(start_ms=T)
    d.ok(put(misfire="skip", misfire_grace_ms=1_000))
    d.apply(c.Tick(), at_ms=T + 10 * MIN + 30_000)
    assert cron_ids(d) == []
    d.apply(c.Tick(), at_ms=T + 11 * MIN + 500)  # on time again
    assert cron_ids(d) == [f"s@{T + 11 * MIN}"]


def test_backfill_fills_skipped_fires_and_never_repeats_one() -> None:
    d = Driver(Limits(retention_ms=MIN), start_ms=T)
    d.ok(put(misfire="skip", misfire_grace_ms=0))
    d.apply(c.Tick(), at_ms=T + MIN)  # on time: s@T+1m
    d.apply(c.Tick(), at_ms=T + 4 * MIN + 1_000)  # 2m, 3m, 4m missed and skipped
    assert cron_ids(d) == [f"s@{T + MIN}"]
    # the fired job ends and is removed by retention
    d.ok(c.Cancel(job_id=f"s@{T + MIN}"))
    d.apply(c.Tick(), at_ms=T + 6 * MIN)
    assert d.state.get_job(f"s@{T + MIN}") is None
    out = d.ok(c.Backfill(name="s", from_ms=T, to_ms=T + 4 * MIN))
    assert out["created"] == [f"s@{T + k * MIN}" for k in (2, 3, 4)]
    assert out["skipped"] == [f"s@{T + MIN}"]  # made a job once: never again
    again = d.ok(c.Backfill(name="s", from_ms=T - 2 * MIN, to_ms=T + 4 * MIN))
    assert again["created"] == [f"s@{T - MIN}", f"s@{T}"]
    assert len(again["skipped"]) == 4
    # the fires made by cron from now on are not repeated by a backfill either
    d.apply(c.Tick(), at_ms=T + 7 * MIN)
    later = d.ok(c.Backfill(name="s", from_ms=T + 6 * MIN, to_ms=T + 7 * MIN))
    assert later == {"created": [], "skipped": [f"s@{T + 7 * MIN}"]}


def test_delete_and_recreate_starts_fresh() -> None:
    """Old code: the record kept the watermark of the deleted schedule, so a re-created
    fire_all schedule fired for every minute it did not exist (720 jobs after 12 hours)."""
    d = Driver(start_ms=T)
    d.ok(put())
    d.apply(c.Tick(), at_ms=T + MIN)
    d.ok(c.DeleteSchedule(name="s"))
    d.apply(c.Tick(), at_ms=T + 12 * 60 * MIN)
    assert cron_ids(d) == [f"s@{T + MIN}"]
    assert d.ok(put(misfire="fire_all", misfire_cap=1_000))["created"] is True
    d.settle()
    assert cron_ids(d) == [f"s@{T + MIN}"], "nothing for the time it did not exist"
    d.apply(c.Tick(), at_ms=T + 12 * 60 * MIN + MIN)
    assert cron_ids(d) == [f"s@{T + MIN}", f"s@{T + 12 * 60 * MIN + MIN}"]
    assert d.ok(put(misfire="fire_all"))["created"] is False


def test_deleted_schedule_names_are_freed_after_retention() -> None:
    """Old code: fire records were never freed; once max_schedules names had been used, no
    schedule could ever be created again."""
    d = Driver(Limits(max_schedules=2, retention_ms=MIN), start_ms=T)
    d.ok(put(name="a"))
    d.ok(put(name="b"))
    d.ok(c.DeleteSchedule(name="a"))
    d.refused(put(name="c"), "too_many_schedules")  # a's record is kept for a retention
    d.advance(2 * MIN)
    d.ok(put(name="c"))
    assert [s["name"] for s in d.state.schedule_docs()] == ["b", "c"]


def test_expression_change_clears_coverage_for_backfill() -> None:
    """Old code: after an expression change, backfill reported the new expression's fire
    times inside old covered intervals as skipped, though no job ever existed for them."""
    d = Driver(start_ms=T)
    d.ok(put(cron="*/10 * * * *"))
    d.apply(c.Tick(), at_ms=T + 10 * MIN)
    d.apply(c.Tick(), at_ms=T + 20 * MIN)
    assert cron_ids(d) == [f"s@{T + 10 * MIN}", f"s@{T + 20 * MIN}"]
    d.ok(put(cron="*/5 * * * *"))
    out = d.ok(c.Backfill(name="s", from_ms=T + 5 * MIN - 1, to_ms=T + 20 * MIN))
    assert out["created"] == [f"s@{T + k * MIN}" for k in (5, 15)]
    assert out["skipped"] == [f"s@{T + k * MIN}" for k in (10, 20)]  # their jobs exist


def test_skipped_fires_are_counted_and_shown() -> None:
    d = Driver(start_ms=T)
    d.ok(put(misfire="skip", misfire_grace_ms=1_000))
    d.apply(c.Tick(), at_ms=T + 10 * MIN + 30_000)
    assert cron_ids(d) == []
    doc = d.state.schedule_docs()[0]
    assert doc["skip_events"] == 1
    assert doc["last_skipped"] == {"after": T, "before": T + 10 * MIN + 1}
    out = d.ok(
        c.Backfill(
            name="s", from_ms=doc["last_skipped"]["after"], to_ms=doc["last_skipped"]["before"] - 1
        )
    )
    assert len(out["created"]) == 10


def test_paused_schedule_does_not_fire_and_resumes_under_its_policy() -> None:
    d = Driver(start_ms=T)
    d.ok(put(paused=True))
    assert d.state.next_deadline_ms() is None
    d.apply(c.Tick(), at_ms=T + 5 * MIN)
    assert cron_ids(d) == []
    d.ok(put(misfire="fire_once", misfire_grace_ms=0))
    d.apply(c.Tick(), at_ms=T + 5 * MIN + 1)
    assert cron_ids(d) == [f"s@{T + 5 * MIN}"]


def test_a_full_queue_counts_the_missed_fire_and_backfill_recovers_it() -> None:
    d = Driver(Limits(max_jobs_per_queue=1), start_ms=T)
    d.ok(c.SubmitJobs(jobs=(c.JobSpec(id="blocker", queue="cq"),)))
    d.ok(put())
    d.apply(c.Tick(), at_ms=T + MIN)
    doc = d.state.schedule_docs()[0]
    assert doc["missed_fires"] == 1 and doc["last_error"].startswith("queue_full")
    assert cron_ids(d) == ["blocker"]
    d.ok(c.Cancel(job_id="blocker"))
    out = d.ok(c.Backfill(name="s", from_ms=T, to_ms=T + MIN))
    assert out["created"] == [f"s@{T + MIN}"]


def test_time_zone_decides_the_fire_instant() -> None:
    d = Driver(start_ms=T)
    d.ok(put(cron="0 9 * * *", timezone="Europe/Paris"))  # 09:00 CET == 08:00Z in January
    fire = int(datetime(2024, 1, 16, 8, 0, tzinfo=UTC).timestamp() * 1000)
    assert d.state.next_deadline_ms() == fire
    d.apply(c.Tick(), at_ms=fire)
    assert cron_ids(d) == [f"s@{fire}"]


def test_seconds_field_and_replacing_keeps_the_watermark() -> None:
    d = Driver(start_ms=T)
    d.ok(put(cron="*/10 * * * * *"))
    d.apply(c.Tick(), at_ms=T + 20_000)
    assert cron_ids(d) == [f"s@{T + 10_000}", f"s@{T + 20_000}"]
    d.ok(put(cron="*/5 * * * * *"))
    d.apply(c.Tick(), at_ms=T + 25_000)
    assert cron_ids(d)[-1] == f"s@{T + 25_000}"
    assert len(cron_ids(d)) == 3


def test_two_replicas_fire_identically() -> None:
    a, b = Driver(start_ms=T), Driver(start_ms=T)
    for d in (a, b):
        d.ok(put(misfire="fire_all", misfire_cap=50))
        d.ok(put(name="p", cron="*/7 * * * *", timezone="America/New_York"))
    for at in (T + 3 * MIN, T + 3 * MIN, T + 61 * MIN, T + 62 * MIN):
        a.apply(c.Tick(), at_ms=at)
        b.apply(c.Tick(), at_ms=at)
        assert a.settle() == b.settle()
    assert a.state.state_hash() == b.state.state_hash()
    assert cron_ids(a) == cron_ids(b) and len(cron_ids(a)) > 50


@settings(max_examples=25, deadline=None)
@given(
    cron=st.sampled_from(["* * * * *", "*/7 * * * *", "0 * * * *", "*/20 * * * * *", "30 2 * * *"]),
    tz=st.sampled_from(["UTC", "America/New_York", "Europe/Paris"]),
    gap_ms=st.integers(1, 3 * 86_400_000),
    policy=st.sampled_from(c.MISFIRE_POLICIES),
    cap=st.integers(1, 30),
    grace_ms=st.integers(0, 3_600_000),
    budget=st.sampled_from([1, 45, 256]),
)
def test_sliced_firing_creates_what_due_fires_says(  # noqa: PLR0917 - hypothesis arguments
    cron: str, tz: str, gap_ms: int, policy: str, cap: int, grace_ms: int, budget: int
) -> None:
    """The state machine's step-by-step catch-up (any budget) keeps exactly the fires of the
    reference `cron.due_fires`."""
    d = Driver(Limits(due_work_per_entry=budget), start_ms=T)
    d.ok(put(cron=cron, timezone=tz, misfire=policy, misfire_cap=cap, misfire_grace_ms=grace_ms))
    d.apply(c.Tick(), at_ms=T + gap_ms)
    d.settle()
    want, watermark = cron_engine.due_fires(
        cron_engine.parse_cron(cron),
        tz,
        T,
        T + gap_ms,
        cron_engine.MisfirePolicy(policy),
        cap,
        grace_ms,
    )
    assert cron_ids(d) == [f"s@{t}" for t in want]
    assert d.state.schedule_docs()[0]["fired_through"] == max(watermark, T)


def test_overlap_skip_if_running_skips_while_the_previous_fire_runs() -> None:
    d = Driver(start_ms=T)
    d.ok(put(overlap="skip_if_running"))
    d.apply(c.Tick(), at_ms=T + MIN)
    d.apply(c.Tick(), at_ms=T + 2 * MIN)  # the 1-minute fire is still pending: skipped
    assert cron_ids(d) == [f"s@{T + MIN}"]
    assert d.state.schedule_docs()[0]["overlap_skips"] == 1
    d.ok(c.Cancel(job_id=f"s@{T + MIN}"))
    d.apply(c.Tick(), at_ms=T + 3 * MIN)
    assert cron_ids(d) == [f"s@{T + MIN}", f"s@{T + 3 * MIN}"]
    allow = Driver(start_ms=T)
    allow.ok(put())
    for k in (1, 2):
        allow.apply(c.Tick(), at_ms=T + k * MIN)
    assert len(cron_ids(allow)) == 2

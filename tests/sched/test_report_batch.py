"""ReportBatch: many completes and fails in one entry, each judged on its own."""

from __future__ import annotations

from typing import Any

import pytest

from raftsched.sched import ValidationError
from raftsched.sched import commands as c
from raftsched.sched.errors import BatchTooLarge
from raftsched.sched.limits import Limits
from raftsched.sched.parse import parse_command, parse_report_batch

from .helpers import Driver

NO_BACKOFF = c.Backoff(initial_ms=0, multiplier=1.0, max_ms=0)


def _leased(d: Driver, *ids: str, **kw: Any) -> dict[str, int]:
    d.ok(c.SubmitJobs(jobs=tuple(c.JobSpec(id=i, queue="q", **kw) for i in ids)))
    grants = d.ok(c.Lease(queue="q", worker_id="w", max_jobs=len(ids)))["leases"]
    return {g["job_id"]: g["token"] for g in grants}


def test_a_refused_report_does_not_affect_the_others() -> None:
    d = Driver()
    tokens = _leased(d, "a", "b", "c", "d", backoff=NO_BACKOFF, max_attempts=3)
    index_before = d.index
    value = d.ok(
        c.ReportBatch(
            reports=(
                c.Complete(job_id="a", token=tokens["a"], result=1),
                c.Complete(job_id="b", token=tokens["b"] + 1, result=2),  # stale token
                c.Fail(job_id="c", token=tokens["c"], error="boom", retryable=True),
                c.Complete(job_id="nope", token=1),
                c.Fail(job_id="d", token=tokens["d"], error="final", retryable=False),
            )
        )
    )
    assert d.index == index_before + 1  # one entry
    results = value["results"]
    assert [r["job_id"] for r in results] == ["a", "b", "c", "nope", "d"]
    assert results[0] == {"job_id": "a", "ok": True, "state": "succeeded"}
    assert results[1]["error"]["code"] == "stale_token"
    assert results[1]["error"]["details"]["current_token"] == tokens["b"]
    assert set(results[1]["error"]) == {"code", "message", "details"}
    assert results[2] == {"job_id": "c", "ok": True, "state": "pending"}
    assert results[3]["error"]["code"] == "not_found"
    assert results[4] == {"job_id": "d", "ok": True, "state": "dead"}
    assert d.job("a")["result"] == 1
    assert d.job("b")["state"] == "leased"  # untouched by its refused report
    assert d.job("c")["error"] == "boom" and d.job("c")["attempts"] == 1
    assert d.job("d")["state"] == "dead"


def test_a_batch_of_only_refusals_changes_no_job() -> None:
    d = Driver()
    tokens = _leased(d, "a", "b")
    docs = (d.job("a"), d.job("b"))
    value = d.ok(
        c.ReportBatch(
            reports=(
                c.Complete(job_id="a", token=tokens["a"] + 5),
                c.Fail(job_id="b", token=tokens["b"] + 5),
            )
        )
    )
    assert [r["error"]["code"] for r in value["results"]] == ["stale_token", "stale_token"]
    assert (d.job("a"), d.job("b")) == docs


def test_a_repeated_batch_is_acknowledged_like_repeated_single_reports() -> None:
    d = Driver()
    tokens = _leased(d, "a", "b", backoff=NO_BACKOFF, max_attempts=1)
    batch = c.ReportBatch(
        reports=(
            c.Complete(job_id="a", token=tokens["a"], result="r"),
            c.Fail(job_id="b", token=tokens["b"], error="e"),
        )
    )
    first = d.ok(batch)
    again = d.ok(batch)  # a worker retrying after a lost answer
    assert (
        first
        == again
        == {
            "results": [
                {"job_id": "a", "ok": True, "state": "succeeded"},
                {"job_id": "b", "ok": True, "state": "dead"},
            ]
        }
    )
    assert [e["state"] for e in d.job("a")["events"]].count("succeeded") == 1


def test_the_same_entries_give_the_same_state_on_every_replica() -> None:
    replicas = [Driver(), Driver()]
    for d in replicas:
        tokens = _leased(d, "a", "b", "c", backoff=NO_BACKOFF)
        d.ok(
            c.ReportBatch(
                reports=(
                    c.Complete(job_id="c", token=tokens["c"]),
                    c.Fail(job_id="a", token=tokens["a"], error="x"),
                    c.Complete(job_id="b", token=999),
                )
            )
        )
    assert replicas[0].state.state_hash() == replicas[1].state.state_hash()
    restored = type(replicas[0].state).restore(replicas[0].state.snapshot())
    assert restored.state_hash() == replicas[0].state.state_hash()


def test_a_completed_report_wakes_dependents() -> None:
    d = Driver()
    d.ok(
        c.SubmitJobs(
            jobs=(c.JobSpec(id="a", queue="q"), c.JobSpec(id="b", queue="q", depends_on=("a",)))
        )
    )
    token = d.ok(c.Lease(queue="q", worker_id="w"))["leases"][0]["token"]
    d.ok(c.ReportBatch(reports=(c.Complete(job_id="a", token=token),)))
    d.settle()
    assert d.job("b")["state"] == "pending"


def test_a_keyed_batch_answers_the_first_results_again() -> None:
    d = Driver()
    tokens = _leased(d, "a")
    batch = c.ReportBatch(
        reports=(c.Complete(job_id="a", token=tokens["a"]),), idempotency_key="k1"
    )
    assert d.ok(batch) == d.ok(batch)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reports"),
        ({"reports": "x"}, "reports"),
        ({"reports": []}, "reports"),
        ({"reports": [{"job_id": "a", "token": 1}, 5]}, "reports[1]"),
        ({"reports": [{"job_id": "a", "token": 1}, {"job_id": "b"}]}, "reports[1].token"),
        (
            {"reports": [{"job_id": "a", "token": 1}, {"job_id": "b", "token": 0}]},
            "reports[1].token",
        ),
        (
            {"reports": [{"job_id": "a", "token": 1}, {"job_id": "b", "token": True}]},
            "reports[1].token",
        ),
        (
            {
                "reports": [
                    {"job_id": "a", "token": 1},
                    {"job_id": "b", "token": 2},
                    {"job_id": "c", "token": "3"},
                ]
            },
            "reports[2].token",
        ),
        ({"reports": [{"token": 1}]}, "reports[0].job_id"),
        ({"reports": [{"job_id": "bad id", "token": 1}]}, "reports[0].job_id"),
        (
            {"reports": [{"job_id": "a", "token": 1, "result": 1, "error": "x"}]},
            "reports[0].result",
        ),
        ({"reports": [{"job_id": "a", "token": 1, "retryable": "no"}]}, "reports[0].retryable"),
        (
            {"reports": [{"job_id": "a", "token": 1, "idempotency_key": "k"}]},
            "reports[0].idempotency_key",
        ),
        (
            {"reports": [{"job_id": "a", "token": 1}, {"job_id": "a", "token": 2}]},
            "reports[1].job_id",
        ),
        ({"reports": [{"job_id": "a", "token": 1, "result": float("nan")}]}, "reports[0].result"),
        ({"reports": [], "extra": 1}, "extra"),
    ],
)
def test_parse_names_the_bad_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_report_batch(body)
    assert info.value.field == field


def test_parse_tells_a_fail_from_a_complete() -> None:
    cmd = parse_command(
        "report_batch",
        {
            "reports": [
                {"job_id": "a", "token": 1, "result": {"x": 1}},
                {"job_id": "b", "token": 2},
                {"job_id": "c", "token": 3, "error": "boom"},
                {"job_id": "d", "token": 4, "retryable": False},
            ]
        },
        idempotency_key="k",
    )
    assert cmd == c.ReportBatch(
        reports=(
            c.Complete(job_id="a", token=1, result={"x": 1}),
            c.Complete(job_id="b", token=2),
            c.Fail(job_id="c", token=3, error="boom"),
            c.Fail(job_id="d", token=4, retryable=False),
        ),
        idempotency_key="k",
    )


def test_parse_bounds_the_batch_by_max_batch_jobs() -> None:
    limits = Limits(max_batch_jobs=3)
    reports = [{"job_id": f"j{i}", "token": 1} for i in range(4)]
    with pytest.raises(BatchTooLarge):
        parse_report_batch({"reports": reports}, limits)
    assert len(parse_report_batch({"reports": reports[:3]}, limits).reports) == 3

"""Workflows: atomic DAG submission, cycle detection naming the cycle, topological placement."""

from __future__ import annotations

import pytest

from raftsched.sched import commands as c
from raftsched.sched.errors import CycleError, UnknownDependency
from raftsched.sched.workflow import plan_submission

from .helpers import Driver


def spec(job_id: str, *deps: str) -> c.JobSpec:
    return c.JobSpec(id=job_id, queue="q", depends_on=deps)


@pytest.mark.parametrize(
    ("specs", "cycle"),
    [
        ([spec("a", "b"), spec("b", "a")], ["a", "b", "a"]),
        ([spec("a", "b"), spec("b", "c"), spec("c", "a")], ["a", "b", "c", "a"]),
        ([spec("x"), spec("a", "x", "b"), spec("b", "c"), spec("c", "b")], ["b", "c", "b"]),
        ([spec("a", "b"), spec("b", "c"), spec("c", "d"), spec("d", "b")], ["b", "c", "d", "b"]),
    ],
)
def test_cycle_is_named(specs: list[c.JobSpec], cycle: list[str]) -> None:
    with pytest.raises(CycleError) as info:
        plan_submission(specs, [s.id or "" for s in specs], lambda _: False)
    assert info.value.details["cycle"] == cycle
    assert " -> ".join(cycle) in info.value.message


def test_order_puts_dependencies_first() -> None:
    specs = [spec("d", "b", "c"), spec("b", "a"), spec("c", "a"), spec("a", "old")]
    order = plan_submission(specs, [s.id or "" for s in specs], lambda i: i == "old")
    names = [specs[i].id for i in order]
    for s in specs:
        for dep in s.depends_on:
            if dep != "old":
                assert names.index(dep) < names.index(s.id)


def test_unknown_dependency_names_it() -> None:
    with pytest.raises(UnknownDependency) as info:
        plan_submission([spec("a", "ghost")], ["a"], lambda _: False)
    assert info.value.details == {"job_id": "a", "dependency": "ghost"}


def test_workflow_is_atomic_and_runs_in_dependency_order() -> None:
    d = Driver()
    refused = d.refused(
        c.SubmitWorkflow(
            workflow_id="wf",
            jobs=(spec("extract"), spec("load", "transform"), spec("transform", "load")),
        ),
        "cycle",
    )
    assert refused.error.details["cycle"] == ["load", "transform", "load"]
    assert len(d.state.jobs) == 0
    out = d.ok(
        c.SubmitWorkflow(
            workflow_id="wf",
            jobs=(spec("load", "transform"), spec("transform", "extract"), spec("extract")),
        )
    )
    assert out["workflow"] == "wf"
    assert [j["state"] for j in out["jobs"]] == ["waiting", "waiting", "pending"]
    assert d.job("load")["workflow"] == "wf"
    done = []
    for _ in range(3):
        grant = d.ok(c.Lease(queue="q", worker_id="w"))["leases"][0]
        done.append(grant["job_id"])
        d.ok(c.Complete(job_id=grant["job_id"], token=grant["token"]))
    assert done == ["extract", "transform", "load"]
    again = d.ok(
        c.SubmitWorkflow(
            workflow_id="wf",
            jobs=(spec("load", "transform"), spec("transform", "extract"), spec("extract")),
        )
    )
    assert [j["created"] for j in again["jobs"]] == [False, False, False]

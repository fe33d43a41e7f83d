"""Table tests: every way the parse functions refuse input, with the error code and the field."""

from __future__ import annotations

from typing import Any

import pytest

from raftsched.sched import commands as c
from raftsched.sched.errors import (
    BatchTooLarge,
    PayloadTooLarge,
    TooManyDependencies,
    ValidationError,
)
from raftsched.sched.limits import Limits
from raftsched.sched.parse import (
    parse_backfill,
    parse_cancel,
    parse_command,
    parse_complete,
    parse_configure_queue,
    parse_fail,
    parse_heartbeat_lease,
    parse_lease,
    parse_put_schedule,
    parse_submit_batch,
    parse_submit_job,
    parse_submit_workflow,
    parse_worker_heartbeat,
)

SMALL = Limits(max_payload_bytes=100, max_batch_jobs=3, max_dependencies=2, max_tags=2)
JOB = {"id": "j1", "queue": "q"}
DEEP: list[Any] = []
for _ in range(70):
    DEEP = [DEEP]

# (parser, input, code, field)
CASES: list[tuple[Any, Any, str, str]] = [
    (parse_submit_job, [], "invalid", "body"),
    (parse_submit_job, {"id": "j1"}, "invalid", "queue"),
    (parse_submit_job, {**JOB, "bogus": 1}, "invalid", "bogus"),
    (parse_submit_job, {**JOB, "priority": True}, "invalid", "priority"),
    (parse_submit_job, {**JOB, "priority": 1.0}, "invalid", "priority"),
    (parse_submit_job, {**JOB, "priority": "1"}, "invalid", "priority"),
    (parse_submit_job, {**JOB, "priority": 2**40}, "invalid", "priority"),
    (parse_submit_job, {**JOB, "id": ""}, "invalid", "id"),
    (parse_submit_job, {**JOB, "id": "a b"}, "invalid", "id"),
    (parse_submit_job, {**JOB, "id": "s@1"}, "invalid", "id"),
    (parse_submit_job, {**JOB, "id": "auto-1-0"}, "invalid", "id"),
    (parse_submit_job, {**JOB, "id": "x" * 201}, "invalid", "id"),
    (parse_submit_job, {**JOB, "queue": 5}, "invalid", "queue"),
    (parse_submit_job, {**JOB, "run_at": 5, "delay_ms": 5}, "invalid", "delay_ms"),
    (parse_submit_job, {**JOB, "delay_ms": -1}, "invalid", "delay_ms"),
    (parse_submit_job, {**JOB, "max_attempts": 0}, "invalid", "max_attempts"),
    (parse_submit_job, {**JOB, "lease_ms": 0}, "invalid", "lease_ms"),
    (
        parse_submit_job,
        {**JOB, "backoff": {"initial_ms": 10, "max_ms": 5}},
        "invalid",
        "backoff.max_ms",
    ),
    (parse_submit_job, {**JOB, "backoff": {"multiplier": 0.5}}, "invalid", "backoff.multiplier"),
    (parse_submit_job, {**JOB, "backoff": {"multiplier": True}}, "invalid", "backoff.multiplier"),
    (parse_submit_job, {**JOB, "backoff": {"jitter": 1}}, "invalid", "backoff.jitter"),
    (parse_submit_job, {**JOB, "depends_on": "a"}, "invalid", "depends_on"),
    (parse_submit_job, {**JOB, "depends_on": ["a", "a"]}, "invalid", "depends_on"),
    (parse_submit_job, {**JOB, "depends_on": ["j1"]}, "invalid", "depends_on"),
    (parse_submit_job, {**JOB, "depends_on": [1]}, "invalid", "depends_on[0]"),
    (
        parse_submit_job,
        {**JOB, "depends_on": ["a", "b", "c"]},
        "too_many_dependencies",
        "depends_on",
    ),
    (parse_submit_job, {**JOB, "tags": ["a", "b", "c"]}, "invalid", "tags"),
    (parse_submit_job, {**JOB, "payload": "x" * 200}, "payload_too_large", "payload"),
    (parse_submit_job, {**JOB, "payload": {"a": float("nan")}}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "payload": {1: "a"}}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "payload": (1, 2)}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "payload": b"bytes"}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "payload": [2**64]}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "payload": DEEP}, "invalid", "payload"),
    (parse_submit_job, {**JOB, "idempotency_key": ""}, "invalid", "idempotency_key"),
    (parse_submit_batch, {"jobs": []}, "invalid", "jobs"),
    (parse_submit_batch, {"jobs": {}}, "invalid", "jobs"),
    (parse_submit_batch, {}, "invalid", "jobs"),
    (parse_submit_batch, {"jobs": [JOB] * 4}, "batch_too_large", "jobs"),
    (parse_submit_batch, {"jobs": [JOB, JOB]}, "invalid", "jobs[1].id"),
    (parse_submit_batch, {"jobs": [JOB, {"queue": 1}]}, "invalid", "jobs[1].queue"),
    (parse_submit_batch, {"jobs": [JOB], "extra": 1}, "invalid", "extra"),
    (parse_submit_workflow, {"jobs": [JOB]}, "invalid", "id"),
    (parse_submit_workflow, {"id": "w", "jobs": [{"queue": "q"}]}, "invalid", "jobs[0].id"),
    (parse_lease, {"queue": "q"}, "invalid", "worker_id"),
    (parse_lease, {"queue": "q", "worker_id": "w", "max_jobs": 0}, "invalid", "max_jobs"),
    (parse_lease, {"queue": "q", "worker_id": "w", "max_jobs": False}, "invalid", "max_jobs"),
    (parse_lease, {"queue": "q", "worker_id": "w", "wait_ms": 10**9}, "invalid", "wait_ms"),
    (parse_heartbeat_lease, {"job_id": "j"}, "invalid", "token"),
    (parse_heartbeat_lease, {"job_id": "j", "token": 0}, "invalid", "token"),
    (parse_heartbeat_lease, {"job_id": "j", "token": True}, "invalid", "token"),
    (parse_heartbeat_lease, {"job_id": "j", "token": 1, "extend_ms": 0}, "invalid", "extend_ms"),
    (parse_complete, {"token": 1}, "invalid", "job_id"),
    (
        parse_complete,
        {"job_id": "j", "token": 1, "result": "x" * 200},
        "payload_too_large",
        "result",
    ),
    (parse_fail, {"job_id": "j", "token": 1, "retryable": 1}, "invalid", "retryable"),
    (parse_fail, {"job_id": "j", "token": 1, "error": "x" * 200}, "payload_too_large", "error"),
    (parse_cancel, {"job_id": "j", "reason": 3}, "invalid", "reason"),
    (parse_worker_heartbeat, {"worker_id": "w"}, "invalid", "capacity"),
    (parse_worker_heartbeat, {"worker_id": "w", "capacity": -1}, "invalid", "capacity"),
    (
        parse_worker_heartbeat,
        {"worker_id": "w", "capacity": 1, "queues": ["q", "q"]},
        "invalid",
        "queues",
    ),
    (parse_configure_queue, {"queue": "q", "paused": "yes"}, "invalid", "paused"),
    (parse_configure_queue, {"queue": "q", "max_in_flight": -1}, "invalid", "max_in_flight"),
    (
        parse_put_schedule,
        {"name": "s", "cron": "* * *", "template": {"queue": "q"}},
        "invalid",
        "cron",
    ),
    (
        parse_put_schedule,
        {"name": "s", "cron": "61 * * * *", "template": {"queue": "q"}},
        "invalid",
        "cron",
    ),
    (
        parse_put_schedule,
        {"name": "s", "cron": "* * * * *", "timezone": "Mars/Olympus", "template": {"queue": "q"}},
        "invalid",
        "timezone",
    ),
    (
        parse_put_schedule,
        {"name": "s", "cron": "* * * * *", "template": {"queue": "q"}, "misfire": "sometimes"},
        "invalid",
        "misfire",
    ),
    (
        parse_put_schedule,
        {"name": "s", "cron": "* * * * *", "template": {"queue": "q"}, "misfire_cap": 0},
        "invalid",
        "misfire_cap",
    ),
    (parse_put_schedule, {"name": "s", "cron": "* * * * *"}, "invalid", "template"),
    (
        parse_put_schedule,
        {"name": "s", "cron": "* * * * *", "template": {"queue": "q", "id": "x"}},
        "invalid",
        "template.id",
    ),
    (
        parse_put_schedule,
        {"name": "s@1", "cron": "* * * * *", "template": {"queue": "q"}},
        "invalid",
        "name",
    ),
    (parse_backfill, {"name": "s", "from": 10, "to": 5}, "invalid", "to"),
    (parse_backfill, {"name": "s", "from": 10}, "invalid", "to"),
]


@pytest.mark.parametrize(("parser", "data", "code", "field"), CASES)
def test_parse_refuses_with_code_and_field(parser: Any, data: Any, code: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parser(data, SMALL)
    assert info.value.code == code, info.value
    assert info.value.field == field, info.value
    assert field in info.value.message


def test_limit_errors_have_their_own_status() -> None:
    assert PayloadTooLarge.http_status == 413
    assert BatchTooLarge.http_status == 413
    assert TooManyDependencies.code == "too_many_dependencies"
    assert ValidationError.http_status == 400


def test_idempotency_header_and_body_must_agree() -> None:
    cmd = parse_submit_job({**JOB, "idempotency_key": "k"}, SMALL, idempotency_key="k")
    assert cmd.idempotency_key == "k"
    with pytest.raises(ValidationError) as info:
        parse_submit_job({**JOB, "idempotency_key": "k"}, SMALL, idempotency_key="other")
    assert info.value.field == "idempotency_key"


def test_parse_builds_the_command_with_defaults() -> None:
    cmd = parse_submit_job(
        {"queue": "q", "payload": {"a": [1, 2.5, None, True]}, "delay_ms": 5, "tags": ["t"]}
    )
    assert cmd == c.SubmitJobs(
        jobs=(
            c.JobSpec(
                id=None, queue="q", payload={"a": [1, 2.5, None, True]}, delay_ms=5, tags=("t",)
            ),
        )
    )
    lease = parse_lease({"queue": "q", "worker_id": "w"})
    assert lease == c.Lease(queue="q", worker_id="w", max_jobs=1, wait_ms=0)


def test_every_kind_round_trips_through_plain() -> None:
    template = c.JobTemplate(
        queue="q",
        payload=[1],
        priority=3,
        max_attempts=2,
        backoff=c.Backoff(5, 3.0, 50),
        lease_ms=9,
        timeout_ms=7,
        tags=("a",),
    )
    commands: list[c.Command] = [
        c.SubmitJobs(
            jobs=(
                c.JobSpec(id="a", queue="q", run_at_ms=5, depends_on=("b@1",)),
                c.JobSpec(id=None, queue="q", delay_ms=3),
            ),
            idempotency_key="k",
        ),
        c.SubmitWorkflow(workflow_id="w", jobs=(c.JobSpec(id="a", queue="q"),)),
        c.Lease(queue="q", worker_id="w", max_jobs=4, wait_ms=10),
        c.HeartbeatLease(job_id="a", token=3, extend_ms=100),
        c.Complete(job_id="s@1000", token=3, result={"r": 1}),
        c.Fail(job_id="a", token=3, error="boom", retryable=False),
        c.ReportBatch(
            reports=(
                c.Complete(job_id="a", token=3, result=None),
                c.Fail(job_id="b", token=4, error=None, retryable=True),
            )
        ),
        c.Cancel(job_id="a", reason="no longer needed"),
        c.WorkerHeartbeat(worker_id="w", capacity=3, queues=("q",), ttl_ms=5),
        c.ConfigureQueue(queue="q", max_in_flight=None, lease_ms=5, max_attempts=2, paused=True),
        c.PutSchedule(
            name="s",
            cron="*/5 * * * *",
            template=template,
            timezone="Europe/Paris",
            misfire="fire_all",
            misfire_cap=7,
            misfire_grace_ms=0,
            paused=True,
        ),
        c.DeleteSchedule(name="s"),
        c.Backfill(name="s", from_ms=1, to_ms=2),
        c.Tick(idempotency_key="t"),
        c.Bootstrap(settings=Limits(retention_ms=5, due_work_per_entry=9)),
        c.UpdateSettings(changes=(("max_clock_step_ms", 7), ("retention_ms", 3))),
        c.AcceptClockJump(to_ms=12),
        c.RequeueDead(job_ids=("a", "s@1000"), max_attempts=3),
        c.PurgeDead(job_ids=("a",)),
        c.CancelWorkflow(workflow_id="w", reason="stop"),
        c.ConfigureQueue(queue="q", paused=True, fields_set=("paused",)),
        c.ConfigureQueue(queue="q", max_in_flight=None, fields_set=("max_in_flight",)),
        c.WorkerHeartbeat(worker_id="w", capacity=3, incarnation="host:1"),
        c.PutSchedule(name="s", cron="* * * * *", template=template, overlap="skip_if_running"),
    ]
    assert {type(cmd) for cmd in commands} == set(c.KIND_BY_TYPE)
    for cmd in commands:
        assert parse_command(c.command_kind(cmd), c.to_plain(cmd)) == cmd


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        parse_command("reboot", {})
    assert info.value.field == "kind"

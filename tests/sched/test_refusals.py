"""Table tests: every refusal `apply` can give, its code and HTTP status, and that it changes
nothing (the Driver.refused helper compares snapshots before and after)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftsched.sched import commands as c
from raftsched.sched import errors
from raftsched.sched.limits import Limits

from .helpers import Driver

LIMITS = Limits(
    max_jobs_per_queue=3, max_queues=2, max_workers=2, max_schedules=1, max_backfill_fires=5
)
TEMPLATE = c.JobTemplate(queue="cron")


def job(job_id: str | None, queue: str = "q", **kw: object) -> c.JobSpec:
    return c.JobSpec(id=job_id, queue=queue, **kw)  # type: ignore[arg-type]


def submit(*specs: c.JobSpec, key: str | None = None) -> c.SubmitJobs:
    return c.SubmitJobs(jobs=specs, idempotency_key=key)


def leased(d: Driver, job_id: str, worker: str = "w") -> int:
    d.ok(submit(job(job_id)))
    grants = d.ok(c.Lease(queue="q", worker_id=worker, max_jobs=1))["leases"]
    assert grants[0]["job_id"] == job_id
    return int(grants[0]["token"])


def case_not_found_complete(d: Driver) -> c.Command:
    return c.Complete(job_id="nope", token=1)


def case_not_found_heartbeat(d: Driver) -> c.Command:
    return c.HeartbeatLease(job_id="nope", token=1)


def case_not_found_fail(d: Driver) -> c.Command:
    return c.Fail(job_id="nope", token=1)


def case_not_found_cancel(d: Driver) -> c.Command:
    return c.Cancel(job_id="nope")


def case_not_found_schedule_delete(d: Driver) -> c.Command:
    return c.DeleteSchedule(name="nope")


def case_not_found_backfill(d: Driver) -> c.Command:
    return c.Backfill(name="nope", from_ms=0, to_ms=1)


def case_stale_token_after_release(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.ok(c.Fail(job_id="a", token=token, retryable=True))
    d.advance(10 * 60_000)
    d.ok(c.Tick())
    token2 = d.ok(c.Lease(queue="q", worker_id="w"))["leases"][0]["token"]
    assert token2 > token
    return c.Complete(job_id="a", token=token)


def case_stale_token_made_up(d: Driver) -> c.Command:
    token = leased(d, "a")
    return c.HeartbeatLease(job_id="a", token=token + 1)


def case_lease_expired(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.advance(30_000)  # default lease_ms: clock == expiry, so the lease is dead
    return c.Complete(job_id="a", token=token)


def case_not_leased_after_fail(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.ok(c.Fail(job_id="a", token=token))
    return c.HeartbeatLease(job_id="a", token=token)


def case_already_terminal_cancel(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.ok(c.Complete(job_id="a", token=token))
    return c.Cancel(job_id="a")


def case_already_terminal_fail_after_complete(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.ok(c.Complete(job_id="a", token=token))
    return c.Fail(job_id="a", token=token)


def case_already_terminal_complete_after_cancel(d: Driver) -> c.Command:
    token = leased(d, "a")
    d.ok(c.Cancel(job_id="a"))
    return c.Complete(job_id="a", token=token)


def case_conflict_different_spec(d: Driver) -> c.Command:
    d.ok(submit(job("a", priority=1)))
    return submit(job("b"), job("a", priority=2))


def case_conflict_other_workflow(d: Driver) -> c.Command:
    d.ok(c.SubmitWorkflow(workflow_id="w1", jobs=(job("a"),)))
    return c.SubmitWorkflow(workflow_id="w2", jobs=(job("a"),))


def case_idempotency_key_reused(d: Driver) -> c.Command:
    d.ok(submit(job("a"), key="k"))
    return submit(job("b"), key="k")


def case_unknown_dependency(d: Driver) -> c.Command:
    return submit(job("a"), job("b", depends_on=("a", "ghost")))


def case_cycle(d: Driver) -> c.Command:
    return submit(job("a", depends_on=("b",)), job("b", depends_on=("a",)))


def case_queue_full(d: Driver) -> c.Command:
    d.ok(submit(job("a"), job("b")))
    return submit(job("c"), job("d"))


def case_too_many_queues(d: Driver) -> c.Command:
    d.ok(submit(job("a", queue="q1"), job("b", queue="q2")))
    return submit(job("c", queue="q3"))


def case_too_many_workers(d: Driver) -> c.Command:
    d.ok(c.WorkerHeartbeat(worker_id="w1", capacity=1))
    d.ok(c.WorkerHeartbeat(worker_id="w2", capacity=1))
    return c.Lease(queue="q", worker_id="w3")


def case_too_many_schedules(d: Driver) -> c.Command:
    d.ok(c.PutSchedule(name="s1", cron="* * * * *", template=TEMPLATE))
    return c.PutSchedule(name="s2", cron="* * * * *", template=TEMPLATE)


def case_backfill_into_the_future(d: Driver) -> c.Command:
    d.ok(c.PutSchedule(name="s", cron="* * * * *", template=TEMPLATE))
    return c.Backfill(name="s", from_ms=d.now_ms, to_ms=d.now_ms + 60_000)


def case_backfill_too_large(d: Driver) -> c.Command:
    d.ok(c.PutSchedule(name="s", cron="* * * * *", template=TEMPLATE))
    return c.Backfill(name="s", from_ms=d.now_ms - 3_600_000, to_ms=d.now_ms)


def case_backfill_queue_full(d: Driver) -> c.Command:
    d.ok(c.PutSchedule(name="s", cron="* * * * *", template=c.JobTemplate(queue="q")))
    d.ok(submit(job("a"), job("b")))
    return c.Backfill(name="s", from_ms=d.now_ms - 180_000, to_ms=d.now_ms)


def case_queue_not_allowed(d: Driver) -> c.Command:
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=2, queues=("other",)))
    return c.Lease(queue="q", worker_id="w")


def case_overloaded_live_jobs(d: Driver) -> c.Command:
    d.ok(c.UpdateSettings(changes=(("max_live_jobs", 1),)))
    d.ok(submit(job("a")))
    return submit(job("b"))


def case_overloaded_retained_jobs(d: Driver) -> c.Command:
    d.ok(c.UpdateSettings(changes=(("max_retained_jobs", 1),)))
    d.ok(submit(job("a")))
    d.ok(c.Cancel(job_id="a"))
    return submit(job("b"))


def case_overloaded_idempotency_table(d: Driver) -> c.Command:
    d.ok(c.UpdateSettings(changes=(("idempotency_max_entries", 1),)))
    d.ok(submit(job("a"), key="k1"))
    return submit(job("b"), key="k2")


CASES: list[tuple[Callable[[Driver], c.Command], str, int]] = [
    (case_not_found_complete, "not_found", 404),
    (case_not_found_heartbeat, "not_found", 404),
    (case_not_found_fail, "not_found", 404),
    (case_not_found_cancel, "not_found", 404),
    (case_not_found_schedule_delete, "not_found", 404),
    (case_not_found_backfill, "not_found", 404),
    (case_stale_token_after_release, "stale_token", 409),
    (case_stale_token_made_up, "stale_token", 409),
    (case_lease_expired, "lease_expired", 409),
    (case_not_leased_after_fail, "not_leased", 409),
    (case_already_terminal_cancel, "already_terminal", 409),
    (case_already_terminal_fail_after_complete, "already_terminal", 409),
    (case_already_terminal_complete_after_cancel, "already_terminal", 409),
    (case_conflict_different_spec, "conflict", 409),
    (case_conflict_other_workflow, "conflict", 409),
    (case_idempotency_key_reused, "idempotency_key_reused", 409),
    (case_unknown_dependency, "unknown_dependency", 400),
    (case_cycle, "cycle", 400),
    (case_queue_full, "queue_full", 429),
    (case_too_many_queues, "queue_full", 429),
    (case_too_many_workers, "too_many_workers", 429),
    (case_too_many_schedules, "too_many_schedules", 429),
    (case_backfill_into_the_future, "invalid", 400),
    (case_backfill_too_large, "batch_too_large", 413),
    (case_backfill_queue_full, "queue_full", 429),
    (case_queue_not_allowed, "queue_not_allowed", 409),
    (case_overloaded_live_jobs, "overloaded", 429),
    (case_overloaded_retained_jobs, "overloaded", 429),
    (case_overloaded_idempotency_table, "overloaded", 429),
]


@pytest.mark.parametrize(
    ("setup", "code", "status"),
    CASES,
    ids=[case.__name__.removeprefix("case_") for case, _, _ in CASES],
)
def test_refusal(setup: Callable[[Driver], c.Command], code: str, status: int) -> None:
    d = Driver(LIMITS)
    cmd = setup(d)
    if cmd.idempotency_key is None:
        d.apply(c.Tick())  # settle due work at this stamp so the refusal alone is compared
    refused = d.refused(cmd, code)
    assert refused.error.http_status == status
    assert refused.error.message
    rebuilt = errors.error_from_wire(*refused.error.to_wire())
    assert rebuilt == refused.error and type(rebuilt) is type(refused.error)


def test_every_error_code_is_covered_by_a_table() -> None:
    from .test_parse import CASES as PARSE_CASES

    covered = {code for _, code, _ in CASES} | {code for _, _, code, _ in PARSE_CASES}
    assert covered == set(errors.ERROR_CODES)


def test_batch_is_all_or_none() -> None:
    d = Driver(LIMITS)
    d.ok(submit(job("a", priority=1)))
    d.refused(submit(job("new1"), job("a", priority=9)), "conflict")
    assert d.state.get_job("new1") is None
    d.refused(submit(job("new2"), job("new3", depends_on=("ghost",))), "unknown_dependency")
    assert d.state.get_job("new2") is None
    assert d.state.queue_counts()["q"]["pending"] == 1

"""Replicated settings (issue 7 defect 4) and the bounded clock (defect 5).

Every value that changes what apply does comes from the log (Bootstrap, UpdateSettings) and the
snapshot, never from the node that applies it; one entry moves the clock by a bounded step."""

from __future__ import annotations

import pytest

from raftsched.sched import SchedulerState
from raftsched.sched import commands as c
from raftsched.sched.errors import ValidationError
from raftsched.sched.limits import DAY_MS, Limits
from raftsched.sched.parse import parse_command
from raftsched.wire.sched_codec import decode_command, encode_command

from .helpers import T0, Driver

HOUR_MS = 3_600_000


def _done_job(d: Driver, job_id: str) -> None:
    d.ok(c.SubmitJobs(jobs=(c.JobSpec(id=job_id, queue="q"),)))
    d.ok(c.Cancel(job_id=job_id))


def test_bootstrap_sets_the_settings_once_and_later_ones_change_nothing() -> None:
    d = Driver()
    assert not d.state.bootstrapped
    first = d.ok(c.Bootstrap(settings=Limits(retention_ms=DAY_MS)))
    assert first["applied"] and first["settings"]["retention_ms"] == DAY_MS
    again = d.ok(c.Bootstrap(settings=Limits(retention_ms=7 * DAY_MS)))  # a second leader's
    assert not again["applied"] and again["settings"]["retention_ms"] == DAY_MS
    state: SchedulerState = d.state  # mypy narrowed `bootstrapped` to False above
    assert state.bootstrapped
    assert state.limits.retention_ms == DAY_MS


def test_retention_comes_from_the_log_on_a_replaying_and_a_restored_replica() -> None:
    """The old defect: a node restored from a snapshot (7-day retention inside) and one
    replaying the log with its own 1-day config removed different jobs. Now both take the
    value of the committed Bootstrap, whatever they were built with."""
    entries: list[tuple[c.Command, int]] = [
        (c.Bootstrap(settings=Limits(retention_ms=DAY_MS)), T0),
        (c.SubmitJobs(jobs=(c.JobSpec(id="a", queue="q"),)), T0),
        (c.Cancel(job_id="a"), T0),
    ]
    origin = SchedulerState(Limits(retention_ms=7 * DAY_MS))  # genesis values differ...
    replay = SchedulerState()
    for i, (cmd, at) in enumerate(entries, 1):
        origin.apply(cmd, i, at)
        replay.apply(cmd, i, at)
    restored = SchedulerState.restore(origin.snapshot())
    later = T0 + DAY_MS + 1
    for state in (origin, replay, restored):
        state.apply(c.Tick(), 10, T0 + 2 * HOUR_MS)
        for k in range(1, 30):  # ...the bounded clock walks there, one step per entry
            state.apply(c.Tick(), 10 + k, later)
        assert state.get_job("a") is None, "retention is the bootstrapped 1 day"
    assert origin.state_hash() == replay.state_hash() == restored.state_hash()


def test_update_settings_is_partial_and_applies_to_what_already_ended() -> None:
    d = Driver(Limits(retention_ms=7 * DAY_MS, max_queues=5))
    _done_job(d, "a")
    d.apply(c.Tick(), at_ms=T0 + 2 * DAY_MS)
    assert d.state.get_job("a") is not None
    answer = d.ok(c.UpdateSettings(changes=(("retention_ms", DAY_MS),)))
    assert answer["settings"]["retention_ms"] == DAY_MS
    assert answer["settings"]["max_queues"] == 5, "the other settings are kept"
    d.apply(c.Tick())
    assert d.state.get_job("a") is None
    restored = SchedulerState.restore(d.state.snapshot())
    assert restored.limits == d.state.limits


def test_idempotency_ttl_change_applies_to_stored_keys() -> None:
    d = Driver(Limits(idempotency_ttl_ms=DAY_MS))
    d.ok(c.SubmitJobs(jobs=(c.JobSpec(id="a", queue="q"),), idempotency_key="k"))
    d.ok(c.UpdateSettings(changes=(("idempotency_ttl_ms", 1_000),)))
    d.advance(2_000)
    d.apply(c.Tick())
    assert d.state.idempotency.get("k") is None


def test_settings_parse_strictly() -> None:
    with pytest.raises(ValidationError) as info:
        parse_command("update_settings", {"settings": {"retention_ms": 0}})
    assert info.value.field == "settings.retention_ms"
    with pytest.raises(ValidationError):
        parse_command("update_settings", {"settings": {"nope": 1}})
    with pytest.raises(ValidationError):
        parse_command("update_settings", {"settings": {}})
    boot = parse_command("bootstrap", {"settings": {"retention_ms": 5}})
    assert boot == c.Bootstrap(settings=Limits(retention_ms=5))


# -- the clock -------------------------------------------------------------------------------


def test_one_stamp_a_year_ahead_moves_the_clock_one_step_and_is_reported() -> None:
    d = Driver(bound_clock=True)
    d.ok(c.SubmitJobs(jobs=(c.JobSpec(id="a", queue="q", lease_ms=60_000),)))
    grant = d.ok(c.Lease(queue="q", worker_id="w"))["leases"][0]
    d.apply(c.Tick(), at_ms=T0 + 365 * DAY_MS)  # one broken stamp
    step = d.state.limits.max_clock_step_ms
    assert d.state.clock_ms == T0 + step
    skew = d.state.clock_skew.to_plain()
    assert skew["refused_entries"] == 1
    assert skew["max_excess_ms"] == 365 * DAY_MS - step
    # Back to the real time: the clock did not go a year ahead for good.
    d.now_ms = T0 + 1_000
    d.refused(c.HeartbeatLease(job_id="a", token=grant["token"]), "lease_expired")
    assert d.state.clock_ms == T0 + step, "only the one step (the 60 s lease expired in it)"


def test_a_broken_stamp_no_longer_freezes_live_leases_for_a_year() -> None:
    """Old code: the clock jumped a year; every lease and worker expired at once."""
    d = Driver(bound_clock=True)
    d.ok(c.WorkerHeartbeat(worker_id="w", capacity=5, ttl_ms=DAY_MS))
    d.ok(c.SubmitJobs(jobs=(c.JobSpec(id="a", queue="q", lease_ms=DAY_MS),)))
    grant = d.ok(c.Lease(queue="q", worker_id="w"))["leases"][0]
    d.apply(c.Tick(), at_ms=T0 + 365 * DAY_MS)
    d.now_ms = T0 + 2_000
    d.ok(c.Complete(job_id="a", token=grant["token"]))
    assert d.state.worker_docs()[0]["id"] == "w"


def test_accept_clock_jump_moves_the_clock_up_to_its_own_stamp() -> None:
    d = Driver(bound_clock=True)
    d.apply(c.Tick())
    target = T0 + 30 * DAY_MS
    d.refused(c.AcceptClockJump(to_ms=target + 1), "invalid", at_ms=target)
    answer = d.ok(c.AcceptClockJump(to_ms=target), at_ms=target)
    assert answer["clock"] == target == d.state.clock_ms


def test_the_genesis_clock_takes_any_first_stamp() -> None:
    d = Driver(bound_clock=True)
    d.apply(c.Tick())
    assert d.state.clock_ms == T0
    assert d.state.clock_skew.refused_entries == 0


def test_the_wire_decodes_what_a_larger_setting_accepted() -> None:
    """Decoding never applies this node's input limits: a requeue of more ids than the
    default limit, accepted under a raised setting, still decodes everywhere."""
    ids = tuple(f"j{i}" for i in range(Limits().max_requeue_jobs + 5))
    cmd = c.RequeueDead(job_ids=ids)
    assert decode_command(encode_command(cmd)) == cmd

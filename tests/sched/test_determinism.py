"""Determinism: replicas fed the same entries reach the same state hash, and so does a replica
restored from a snapshot taken midway. Commands come from a seeded generator (the test may use
random; the state machine may not), with stamps that sometimes go backwards like a skewed new
leader's."""

from __future__ import annotations

import random

import pytest

from raftsched.sched import SchedulerState
from raftsched.sched import commands as c
from raftsched.sched.limits import Limits

T0 = 1_700_000_000_000
LIMITS = Limits(retention_ms=120_000, idempotency_ttl_ms=60_000, idempotency_max_entries=20)


def random_entries(seed: int, count: int) -> list[tuple[c.Command, int]]:
    rng = random.Random(seed)
    ids = [f"j{i}" for i in range(40)]
    queues = ["q", "r"]
    workers = ["w1", "w2", "w3"]
    tokens: list[int] = [1]
    now = T0
    entries: list[tuple[c.Command, int]] = []
    template = c.JobTemplate(queue="q", payload={"cron": True})
    entries.append(
        (
            c.PutSchedule(
                name="every10s",
                cron="*/10 * * * * *",
                template=template,
                misfire="fire_all",
                misfire_cap=5,
            ),
            now,
        )
    )
    for n in range(count):
        now += rng.choice([0, 0, 1, 100, 1_000, 10_000, 40_000]) - rng.choice([0] * 9 + [5_000])
        key = rng.choice([None] * 4 + ["k1", "k2", "k3"])
        job_id = rng.choice(ids)
        kind = rng.randrange(11)
        cmd: c.Command
        if kind <= 2:
            specs = tuple(
                c.JobSpec(
                    id=rng.choice([*ids, None]),
                    queue=rng.choice(queues),
                    payload={"n": rng.randrange(3)},
                    priority=rng.randrange(3),
                    delay_ms=rng.choice([None, 500, 20_000]),
                    max_attempts=rng.choice([None, 1, 4]),
                    lease_ms=rng.choice([None, 2_000]),
                    depends_on=tuple(rng.sample(ids, rng.choice([0, 0, 1, 2]))),
                )
                for _ in range(rng.randint(1, 3))
            )
            cmd = c.SubmitJobs(jobs=specs, idempotency_key=key)
        elif kind <= 4:
            cmd = c.Lease(
                queue=rng.choice(queues),
                worker_id=rng.choice(workers),
                max_jobs=rng.randint(1, 4),
                idempotency_key=key,
            )
            tokens.append(len(entries) + 1)
        elif kind == 5:
            cmd = c.Complete(job_id=job_id, token=rng.choice(tokens), result=n)
        elif kind == 6:
            cmd = c.Fail(job_id=job_id, token=rng.choice(tokens), retryable=rng.random() < 0.7)
        elif kind == 7:
            cmd = c.HeartbeatLease(job_id=job_id, token=rng.choice(tokens))
        elif kind == 8:
            cmd = c.Cancel(job_id=job_id, idempotency_key=key)
        elif kind == 9:
            cmd = c.WorkerHeartbeat(
                worker_id=rng.choice(workers),
                capacity=rng.randint(0, 5),
                ttl_ms=rng.choice([None, 5_000]),
            )
        else:
            cmd = c.Tick()
        entries.append((cmd, now))
    return entries


def run(state: SchedulerState, entries: list[tuple[c.Command, int]], start: int) -> list[str]:
    outcomes = []
    for i, (cmd, stamp) in enumerate(entries[start:], start=start + 1):
        outcomes.append(repr(state.apply(cmd, i, stamp)))
    return outcomes


@pytest.mark.parametrize("seed", range(6))
def test_replicas_and_a_restored_replica_agree(seed: int) -> None:
    entries = random_entries(seed, 600)
    a, b = SchedulerState(LIMITS), SchedulerState(LIMITS)
    outcomes_a = run(a, entries, 0)
    outcomes_b = run(b, entries, 0)
    assert outcomes_a == outcomes_b
    assert a.state_hash() == b.state_hash()
    assert a.snapshot() == b.snapshot()

    midway = len(entries) // 2
    c1 = SchedulerState(LIMITS)
    first_half = run(c1, entries[:midway], 0)
    restored = SchedulerState.restore(c1.snapshot())
    assert restored.state_hash() == c1.state_hash()
    second_half = run(restored, entries, midway)
    assert first_half + second_half == outcomes_a
    assert restored.state_hash() == a.state_hash()
    # the run did exercise the interesting paths
    assert any("Refused" in o for o in outcomes_a)
    assert any("'leases': [{" in o for o in outcomes_a)
    assert len(a.jobs) > 10


def test_snapshot_round_trip_is_byte_identical() -> None:
    state = SchedulerState(LIMITS)
    run(state, random_entries(99, 300), 0)
    data = state.snapshot()
    again = SchedulerState.restore(data)
    assert again.snapshot() == data
    assert again.clock_ms == state.clock_ms and again.limits == state.limits
    assert again.next_deadline_ms() == state.next_deadline_ms()


def test_restore_refuses_an_unknown_format() -> None:
    import msgpack

    with pytest.raises(ValueError, match="format"):
        SchedulerState.restore(msgpack.packb({"format": 99}))


TIGHT = Limits(
    retention_ms=120_000,
    idempotency_ttl_ms=60_000,
    idempotency_max_entries=20,
    due_work_per_entry=3,
    lease_grants_per_entry=2,
)


def operator_entries(seed: int, count: int) -> list[tuple[c.Command, int]]:
    """The random log plus operator commands (dead letters, workflows, incarnations)."""
    rng = random.Random(seed + 1_000)
    entries = random_entries(seed, count)
    ids = [f"j{i}" for i in range(40)]
    out: list[tuple[c.Command, int]] = []
    for n, (cmd, stamp) in enumerate(entries):
        out.append((cmd, stamp))
        roll = rng.randrange(30)
        if roll == 0:
            out.append((c.RequeueDead(job_ids=tuple(rng.sample(ids, 2))), stamp))
        elif roll == 1:
            out.append((c.PurgeDead(job_ids=(rng.choice(ids),)), stamp))
        elif roll == 2:
            wf = f"wf{n}"
            out.append(
                (
                    c.SubmitWorkflow(
                        workflow_id=wf,
                        jobs=(
                            c.JobSpec(id=f"{wf}a", queue="q"),
                            c.JobSpec(id=f"{wf}b", queue="q", depends_on=(f"{wf}a",)),
                            c.JobSpec(id=f"{wf}c", queue="r", depends_on=(f"{wf}b", f"{wf}a")),
                        ),
                    ),
                    stamp,
                )
            )
        elif roll == 3:
            out.append((c.CancelWorkflow(workflow_id=f"wf{rng.randrange(n + 1)}"), stamp))
        elif roll == 4:
            out.append(
                (
                    c.WorkerHeartbeat(
                        worker_id=rng.choice(["w1", "w2"]),
                        capacity=3,
                        incarnation=rng.choice(["a", "b"]),
                    ),
                    stamp,
                )
            )
    return out


@pytest.mark.parametrize("seed", range(4))
def test_tight_budget_slices_restore_anywhere(seed: int) -> None:
    """With a budget of 3 units most due work spans entries; a replica restored from a
    snapshot taken after any entry continues exactly like the original."""
    entries = operator_entries(seed, 400)
    origin = SchedulerState(TIGHT)
    outcomes = run(origin, entries, 0)
    for point in range(37, len(entries), 97):
        replica = SchedulerState(TIGHT)
        first = run(replica, entries[:point], 0)
        restored = SchedulerState.restore(replica.snapshot())
        assert first + run(restored, entries, point) == outcomes
        assert restored.state_hash() == origin.state_hash()
        # Derived counters the snapshot leaves out must agree too (admission decides on them).
        assert restored.retained_bytes == origin.retained_bytes
        assert restored.state_counts == origin.state_counts
    assert origin.cascade or origin.firing or any("'more': True" in o for o in outcomes)

"""JobTable behaves as the dict it replaces: lookups by id, and iteration in submit order."""

from __future__ import annotations

import random

from raftsched.sched import JobSpec
from raftsched.sched.job import Job
from raftsched.sched.job_table import JobTable


def _job(job_id: str, seq: int) -> Job:
    return Job(
        job_id,
        JobSpec(id=job_id, queue="q"),
        seq,
        0,
        max_attempts=1,
        lease_ms=1_000,
        run_at_ms=0,
        workflow=None,
    )


def test_a_random_walk_agrees_with_a_dict() -> None:
    rng = random.Random(7)
    table, model = JobTable(), dict[str, Job]()
    seq = 0
    for _ in range(5_000):
        if model and rng.random() < 0.3:
            victim = rng.choice(list(model))
            if rng.random() < 0.5:
                assert table.pop(victim) is model.pop(victim)
            else:
                del table[victim]
                del model[victim]
        else:
            seq += 1
            job = _job(f"j{rng.randrange(10**9)}-{seq}", seq)
            table[job.id] = job
            model[job.id] = job
        probe = f"j{rng.randrange(10**9)}"
        assert (probe in table) == (probe in model)
        assert table.get(probe) is model.get(probe)
    assert len(table) == len(model)
    # Iteration is in submit (seq) order, the insertion order of the dict it replaces.
    assert list(table) == list(model)
    assert list(table.values()) == list(model.values()) == table.sorted_values()
    assert list(table.items()) == list(model.items())
    assert all(table[k] is v for k, v in model.items())

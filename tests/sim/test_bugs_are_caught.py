"""The simulator can fail: every deliberately seeded bug is caught within 200 seeds.

Seeds run in-process and stop at the first violation, so a well-tuned fault schedule keeps
this fast. The budget in the assertion is what the CLI promises
(`scripts/sim --bug NAME --seeds 200` exits non-zero).
"""

from __future__ import annotations

import pytest

from raftsched.sim.bugs import BUGS
from raftsched.sim.run import SimConfig, run_seed

SEED_BUDGET = 200
REQUIRED_BUGS = {
    "commit-old-term",
    "forget-vote",
    "vote-without-log-check",
    "read-without-quorum",
    "ack-before-sync",
    "eager-before-durable",  # issue 6 defect 1
    "heartbeat-ignored",  # issue 6 defect 5
}


def test_the_required_bugs_are_listed() -> None:
    assert set(BUGS) >= REQUIRED_BUGS


@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_is_caught(name: str) -> None:
    if not BUGS[name].available():
        pytest.skip(f"the core has no hook {BUGS[name].hook} yet")
    for seed in range(1, SEED_BUDGET + 1):
        result = run_seed(SimConfig(seed=seed, bug=name))
        if not result.ok:
            return
    pytest.fail(f"bug {name!r} survived {SEED_BUDGET} seeds: the fault schedules are too gentle")


def test_correct_core_passes_the_seeds_that_catch_bugs() -> None:
    """The seeds that expose each bug are clean without it: the bug, not the schedule,
    makes them fail."""
    for name in sorted(n for n, bug in BUGS.items() if bug.available()):
        seed = next(
            s for s in range(1, SEED_BUDGET + 1) if not run_seed(SimConfig(seed=s, bug=name)).ok
        )
        clean = run_seed(SimConfig(seed=seed))
        assert clean.ok, f"seed {seed} fails without bug {name}: {clean.violations}"

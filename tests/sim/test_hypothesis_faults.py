"""Hypothesis chooses the fault schedule's parameters; every invariant must still hold."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.sim.clients import Workload
from raftsched.sim.faults import FaultKind, FaultProfile
from raftsched.sim.run import SimConfig, run_seed

weights = st.dictionaries(
    st.sampled_from(list(FaultKind)), st.floats(min_value=0.0, max_value=5.0), min_size=1
)


@st.composite
def profiles(draw: st.DrawFn) -> FaultProfile:
    gap_min = draw(st.integers(1, 20))
    return FaultProfile(
        weights=draw(weights),
        gap_ticks_min=gap_min,
        gap_ticks_max=draw(st.integers(gap_min, 60)),
        down_ticks_max=draw(st.integers(1, 80)),
        pause_ticks_max=draw(st.integers(5, 80)),
        partition_ticks_max=draw(st.integers(10, 100)),
        loss_probability_max=draw(st.floats(0.0, 0.6)),
        duplicate_probability_max=draw(st.floats(0.0, 0.5)),
        reorder_probability_max=draw(st.floats(0.0, 0.6)),
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    nodes=st.sampled_from([3, 5]),
    profile=profiles(),
    clients=st.integers(1, 6),
    keys=st.integers(1, 4),
)
def test_random_fault_schedules_keep_raft_safe_and_live(
    seed: int, nodes: int, profile: FaultProfile, clients: int, keys: int
) -> None:
    result = run_seed(
        SimConfig(
            seed=seed,
            nodes=nodes,
            safety_ticks=150,
            profile=profile,
            workload=Workload(clients=clients, keys=keys),
        )
    )
    assert result.ok, f"{result.violations}\n(seed {seed}, nodes {nodes}, profile {profile})"

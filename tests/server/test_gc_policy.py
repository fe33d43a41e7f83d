"""The node's garbage-collector policy: survivors frozen, no collection walks a big young
generation, thaws measured and kept under their budget.

The collector is process-wide: each test installs a policy, and the fixture uninstalls it and
unfreezes what it froze, so the rest of the suite runs with the collector as it found it."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from raftsched.server.gc_policy import GcPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def restore_gc() -> Iterator[list[GcPolicy]]:
    thresholds = gc.get_threshold()
    installed: list[GcPolicy] = []
    yield installed
    for policy in installed:
        policy.uninstall()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _installed(registry: list[GcPolicy], policy: GcPolicy) -> GcPolicy:
    policy.install()
    registry.append(policy)
    return policy


def test_install_sets_thresholds_and_uninstall_restores_them(
    restore_gc: list[GcPolicy],
) -> None:
    before = gc.get_threshold()
    policy = _installed(restore_gc, GcPolicy((12_345, 7, 9)))
    assert gc.get_threshold() == (12_345, 7, 9)
    policy.uninstall()
    assert gc.get_threshold() == before
    with pytest.raises(AssertionError):
        policy.install()
        policy.install()


def test_survivors_of_a_collection_are_frozen_at_the_next_apply(
    restore_gc: list[GcPolicy],
) -> None:
    policy = _installed(restore_gc, GcPolicy(collect_after_apply_s=1.0))
    kept = [[i] for i in range(5_000)]  # long-lived containers
    frozen_before = gc.get_freeze_count()
    gc.collect(0)  # as if the threshold had been crossed
    assert policy.stats.collections[0] >= 1
    policy.after_apply(0.0)
    assert policy.stats.freezes == 1
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    assert policy.stats.frozen_since_thaw >= len(kept)
    policy.after_apply(0.0)  # nothing collected since: nothing to freeze
    assert policy.stats.freezes == 1


def test_apply_work_triggers_a_young_collection_the_counter_missed(
    restore_gc: list[GcPolicy],
) -> None:
    """Replacing old objects with new ones leaves CPython's allocation count unchanged, so the
    young generation grows without a collection; the policy collects after apply work."""
    policy = _installed(restore_gc, GcPolicy((1_000_000, 10, 10), collect_after_apply_s=0.0))
    old: list[object] = [(i, "x") for i in range(2_000)]
    gc.freeze()
    before = policy.stats.collections[0]
    old[0] = (-1, [])  # one new tracked object
    policy.after_apply(0.0)
    assert policy.stats.collections[0] == before + 1
    assert policy.stats.freezes == 1


def _walked_per_young_collection(policy: GcPolicy | None, rounds: int) -> int:
    """Largest young generation a collection walked while `rounds` applies each create 5,000
    records and delete 5,000 old (frozen) ones: the shape of a due-work burst that ends old
    jobs and creates new ones."""
    old = [[i] for i in range(5_000 * rounds)]
    new: list[list[int]] = []
    gc.collect()
    gc.freeze()
    largest = 0

    def watch(phase: str, info: dict[str, int]) -> None:
        nonlocal largest
        if phase == "start" and info["generation"] == 0:
            largest = max(largest, len(gc.get_objects(0)))

    gc.callbacks.append(watch)
    try:
        for r in range(rounds):
            started = time.perf_counter()
            for i in range(5_000):
                new.append([r, i])
                old.pop()  # allocate one, free one: CPython's count does not move
            if policy is not None:
                policy.after_apply(time.perf_counter() - started)
        gc.collect(0)
    finally:
        gc.callbacks.remove(watch)
    return largest


def test_no_young_collection_walks_more_than_a_few_applies_of_objects(
    restore_gc: list[GcPolicy],
) -> None:
    # Without the policy (CPython's own trigger only) the young generation accumulates
    # every round's replacements: 20 rounds x 5,000.
    gc.set_threshold(20_000, 10, 10)
    assert _walked_per_young_collection(None, rounds=20) >= 50_000
    policy = _installed(restore_gc, GcPolicy((20_000, 10, 10), collect_after_apply_s=0.0))
    assert _walked_per_young_collection(policy, rounds=20) <= 2 * 5_000 + 1_000


def test_thaw_frees_cycles_frozen_while_alive_and_measures_itself(
    restore_gc: list[GcPolicy],
) -> None:
    policy = _installed(restore_gc, GcPolicy())

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    cycles = []
    for _ in range(1_000):
        a, b = Node(), Node()
        a.other, b.other = b, a
        cycles.append(a)
    gc.collect(0)
    policy.after_apply(0.0)  # the cycles are frozen while alive
    del cycles, a, b
    gc.collect()
    assert policy.thaw() >= 2_000  # dropped, frozen cycles: only a thaw finds them
    stats = policy.stats
    assert stats.thaws == 1 and stats.thaw_found_total >= 2_000
    assert stats.last_thaw_objects > 0 and stats.last_thaw_s > 0
    assert stats.frozen_since_thaw == 0
    assert policy.predicted_thaw_s() > 0


def test_timer_thaws_only_when_due_and_under_budget(restore_gc: list[GcPolicy]) -> None:
    clock = FakeClock()
    skipped: list[float] = []
    policy = _installed(restore_gc, GcPolicy(thaw_every_s=60.0, thaw_budget_s=10.0, clock=clock))
    policy.on_skip = skipped.append
    policy.thaw()  # measures the cost per object
    kept = [[i] for i in range(1_000)]
    gc.collect(0)
    policy.after_apply(0.0)
    assert policy.stats.frozen_since_thaw >= len(kept)
    assert not policy.maybe_thaw()  # not due yet
    clock.now += 61
    assert policy.maybe_thaw()
    assert policy.stats.thaws == 2
    # Over the budget: skipped, counted, reported once until a thaw runs again.
    policy.thaw_budget_s = 0.0
    for _ in range(3):
        gc.collect(0)
        policy.after_apply(0.0)
        clock.now += 61
        assert not policy.maybe_thaw()
    assert policy.stats.thaws == 2 and policy.stats.thaws_skipped == 3
    assert len(skipped) == 1 and skipped[0] > 0


def test_with_a_job_count_a_thaw_is_predicted_from_the_jobs_added(
    restore_gc: list[GcPolicy],
) -> None:
    jobs = [0]
    policy = _installed(restore_gc, GcPolicy(jobs=lambda: jobs[0]))
    policy.thaw()
    base = policy.predicted_thaw_s()
    assert base > 0
    garbage = [[i] for i in range(10_000)]  # frozen, then freed: not growth
    gc.collect(0)
    policy.after_apply(0.0)
    del garbage
    assert policy.predicted_thaw_s() == base  # no jobs added: nothing predicted beyond the base
    jobs[0] = 1_000_000
    assert policy.predicted_thaw_s() > 10 * base

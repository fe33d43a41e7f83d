"""JobRun's timeout budget: timeout_ms counts from the lease's start, minus a margin."""

from __future__ import annotations

import time

import pytest

from raftsched.client import Lease
from raftsched.worker.runner import TIMEOUT_MARGIN_S, JobRun


def lease(*, timeout_ms: int | None, leased_ago_ms: int | None) -> Lease:
    now_ms = int(time.time() * 1000)
    return Lease(
        job_id="j",
        queue="q",
        token=1,
        attempt=1,
        max_attempts=1,
        payload=None,
        timeout_ms=timeout_ms,
        lease_expires_at=now_ms + 30_000,
        leased_at=None if leased_ago_ms is None else now_ms - leased_ago_ms,
        raw={},
    )


def test_no_timeout_means_no_budget() -> None:
    assert JobRun(lease(timeout_ms=None, leased_ago_ms=0))._timeout_s() is None


def test_budget_counts_from_the_lease_start_with_a_margin() -> None:
    budget = JobRun(lease(timeout_ms=10_000, leased_ago_ms=4_000))._timeout_s()
    assert budget == pytest.approx(6.0 - TIMEOUT_MARGIN_S, abs=0.05)
    short = JobRun(lease(timeout_ms=1_000, leased_ago_ms=0))._timeout_s()
    assert short == pytest.approx(0.9, abs=0.05)  # the margin is at most a tenth


def test_an_attempt_already_over_gets_no_time_and_an_unknown_start_the_whole_budget() -> None:
    assert JobRun(lease(timeout_ms=1_000, leased_ago_ms=5_000))._timeout_s() == 0.0
    assert JobRun(lease(timeout_ms=2_000, leased_ago_ms=None))._timeout_s() == 2.0

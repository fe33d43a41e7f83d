"""Retry backoff: exponential, capped, with jitter that depends only on (job id, attempt)."""

from __future__ import annotations

from raftsched.sched.backoff import JITTER_FRACTION, jitter_unit, retry_delay_ms
from raftsched.sched.commands import Backoff


def test_grows_exponentially_then_caps() -> None:
    b = Backoff(initial_ms=1_000, multiplier=2.0, max_ms=10_000)
    for attempt, base in [
        (1, 1_000),
        (2, 2_000),
        (3, 4_000),
        (4, 8_000),
        (5, 10_000),
        (500, 10_000),
    ]:
        delay = retry_delay_ms(b, "job", attempt)
        assert base * (1 - JITTER_FRACTION) <= delay <= base, (attempt, delay)


def test_jitter_is_deterministic_and_spreads() -> None:
    b = Backoff(initial_ms=10_000, multiplier=1.0, max_ms=10_000)
    delays = [retry_delay_ms(b, f"job-{i}", 1) for i in range(200)]
    assert delays == [retry_delay_ms(b, f"job-{i}", 1) for i in range(200)]
    assert len(set(delays)) > 150  # jobs that failed together do not retry together
    assert retry_delay_ms(b, "x", 1) != retry_delay_ms(b, "x", 2) or jitter_unit("x", 1) == (
        jitter_unit("x", 2)
    )
    assert jitter_unit("job", 7) == jitter_unit("job", 7)
    assert 0.0 <= jitter_unit("job", 7) < 1.0


def test_zero_backoff_is_zero() -> None:
    assert retry_delay_ms(Backoff(0, 1.0, 0), "a", 3) == 0


def test_huge_attempt_does_not_overflow() -> None:
    assert retry_delay_ms(Backoff(1, 100.0, 7 * 86_400_000), "a", 1_000_000) <= 7 * 86_400_000

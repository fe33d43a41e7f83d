"""Retry backoff with deterministic jitter.

delay = min(max_ms, initial_ms * multiplier ** (attempt - 1)), then reduced by up to
`JITTER_FRACTION` of itself. The jitter spreads retries of jobs that failed together (so they do
not stampede back at the same millisecond), yet it must be the same on every replica: it comes
from blake2b(job id, attempt), never from a random source.
"""

from __future__ import annotations

import hashlib

from .commands import Backoff

JITTER_FRACTION = 0.25
_UNIT = float(2**64)


def jitter_unit(job_id: str, attempt: int) -> float:
    """A number in [0, 1) that depends only on (job_id, attempt)."""
    digest = hashlib.blake2b(f"{job_id}\x00{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT


def retry_delay_ms(backoff: Backoff, job_id: str, attempt: int) -> int:
    """Delay before the retry that follows failed attempt number `attempt` (1-based)."""
    assert attempt >= 1
    delay = float(backoff.initial_ms)
    # Grow step by step and stop at the cap: multiplier ** attempt could overflow a float.
    for _ in range(attempt - 1):
        if delay >= backoff.max_ms:
            break
        delay *= backoff.multiplier
    base_ms = min(backoff.max_ms, int(delay))
    delay_ms = base_ms - int(base_ms * JITTER_FRACTION * jitter_unit(job_id, attempt))
    assert 0 <= delay_ms <= backoff.max_ms
    return delay_ms

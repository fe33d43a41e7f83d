"""What a running Python job knows about its lease, and the error type that stops retries."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class JobContext:
    """The lease a job runs under. Pass `token` to your own storage to fence writes: a write
    with a smaller token than the last one seen comes from a worker that lost its lease."""

    job_id: str
    attempt: int
    queue: str
    token: int
    max_attempts: int = 0

    @classmethod
    def from_env(cls) -> JobContext:
        """The context of the job this process runs (from the RAFTSCHED_* variables)."""
        return cls(
            job_id=os.environ["RAFTSCHED_JOB_ID"],
            attempt=int(os.environ["RAFTSCHED_ATTEMPT"]),
            queue=os.environ["RAFTSCHED_QUEUE"],
            token=int(os.environ["RAFTSCHED_FENCING_TOKEN"]),
        )


class Permanent(Exception):
    """Raise from a task to fail its job without retrying."""

    retryable = False

"""How much of each measurement one `python -m bench.compare` run takes (full or --quick)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    idle_count: int  # sequential single submits for the idle latency
    duration_s: float  # seconds per throughput point
    concurrencies: tuple[int, ...]  # concurrent submitters per throughput point
    e2e_workers: tuple[int, ...]  # worker processes per end-to-end row
    e2e_jobs: int  # jobs per end-to-end row
    rq_fork_jobs: int  # RQ's fork-per-job worker is slow: fewer jobs keep the run short
    kills: int  # leader kills for the failover figure (replicated systems)


FULL = Settings(
    idle_count=300,
    duration_s=3.0,
    concurrencies=(16, 64, 256),
    e2e_workers=(2, 4),
    e2e_jobs=3000,
    rq_fork_jobs=300,
    kills=5,
)
QUICK = Settings(
    idle_count=30,
    duration_s=1.0,
    concurrencies=(16, 64),
    e2e_workers=(2,),
    e2e_jobs=300,
    rq_fork_jobs=100,
    kills=1,
)

"""The runtime's counters and the fsync latency histogram, rendered by /metrics.

`FsyncHistogram.observe` runs on the storage thread and `snapshot` on the event loop; each
bucket update is a single list-item increment under the GIL, and a scrape that races an
observation is off by one sample at most, which a monotonic counter tolerates.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

from .api_runtime import HistogramSnapshot

FSYNC_BUCKETS_S: Final = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class FsyncHistogram:
    def __init__(self, bounds: tuple[float, ...] = FSYNC_BUCKETS_S) -> None:
        assert list(bounds) == sorted(bounds) and bounds
        self.bounds = bounds
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)
        if i < len(self._counts):
            self._counts[i] += 1
        self.count += 1
        self.sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        cumulative, total = [], 0
        for bound, n in zip(self.bounds, self._counts, strict=True):
            total += n
            cumulative.append((bound, total))
        return HistogramSnapshot(buckets=tuple(cumulative), count=self.count, sum=self.sum)


@dataclass
class Counters:
    """Proposal outcomes (RuntimeMetrics.proposals_total keys) and other event counts."""

    proposals: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("committed", "refused", "overloaded", "outcome_unknown", "not_leader"), 0
        )
    )
    ticks_proposed: int = 0
    entries_applied: int = 0
    snapshots_taken: int = 0

    def count(self, outcome: str) -> None:
        self.proposals[outcome] += 1

"""The leader's entry stamps: the median of a quorum's wall clocks, never backwards (SPEC §4).

Theory of operation. Every scheduler entry carries the wall time (ms) of the leader that
proposed it; leases, delays and cron fire against the largest stamp applied. If the leader
used only its own clock, one wrong clock (the leader's) would move every deadline. So the
leader estimates each voter's clock from the transport's ping/pong samples (offset = peer
wall - our wall at receive, corrected by half the round trip) and stamps the median of its
own clock and the fresh estimates. With a majority of correct clocks the median lies between
two correct clocks whatever the others say. With fewer fresh samples than a quorum (just
elected, peers unreachable) it falls back to its own clock: it cannot commit anything without
a quorum anyway, and the state machine bounds how far one entry may move its clock.

Stamps never go backwards on one leader (`max` with the last one handed out); across leaders
the state machine's max rule does the same. `skew_ms` (our clock minus the median) is the
metric an operator watches to find a node with a bad clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from .wall_clock import wall_ms


class ClockSampleLike(Protocol):
    """What the transport measures per peer (raftsched/server/transport.py ClockSample)."""

    @property
    def offset_ms(self) -> float: ...

    @property
    def rtt_ms(self) -> float: ...

    @property
    def age_s(self) -> float: ...


def median_low(values: list[float]) -> float:
    """The lower median: for an even count, the smaller middle value (deterministic)."""
    assert values, "the median of nothing"
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


class QuorumClock:
    def __init__(
        self, *, node_id: int, max_sample_age_s: float, wall_ms: Callable[[], float] = wall_ms
    ) -> None:
        assert max_sample_age_s > 0
        self.node_id = node_id
        self.max_sample_age_s = max_sample_age_s
        self._wall_ms = wall_ms
        self._last_stamp_ms = 0
        self.skew_ms = 0.0  # our wall clock minus the median at the last stamp
        self.fallbacks = 0  # stamps taken from our clock alone (no quorum of samples)

    def stamp_ms(self, voters: Collection[int], samples: Mapping[int, ClockSampleLike]) -> int:
        """The stamp for the next entry this leader proposes."""
        own = self._wall_ms()
        values = [own]
        for peer in voters:
            if peer == self.node_id:
                continue
            sample = samples.get(peer)
            if sample is not None and sample.age_s <= self.max_sample_age_s:
                values.append(own + sample.offset_ms)
        quorum = len(voters) // 2 + 1 if voters else 1
        if len(values) >= quorum:
            median = median_low(values)
        else:
            median = own
            self.fallbacks += 1
        self.skew_ms = own - median
        stamp = max(self._last_stamp_ms, int(median))
        assert stamp >= self._last_stamp_ms
        self._last_stamp_ms = stamp
        return stamp

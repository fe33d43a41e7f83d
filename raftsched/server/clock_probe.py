"""Clock samples of one peer from ping/pong round trips, sans-I/O.

Theory of operation. About once a second the dialing side of a connection sends Ping(seq) and
remembers when (monotonic). The peer answers Pong(seq, wall_ms) with its wall clock at the
moment it answered. Assuming the answer was taken half-way through the round trip (the NTP
assumption; the error is at most rtt/2), the peer's clock is ahead of ours by

    offset_ms = peer_wall_ms - (local_wall_ms_at_receive - rtt_ms / 2)

Only one ping is outstanding: a pong for an older ping (late, after a newer ping was sent) is
ignored, so a sample's rtt always belongs to its own ping. Times are passed in, never read
here, so the arithmetic is tested without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    """The latest clock comparison with one peer: the peer's wall clock minus ours, the round
    trip it was measured over, and how long ago it was measured."""

    offset_ms: float
    rtt_ms: float
    age_s: float


class ClockProbe:
    __slots__ = (
        "_offset_ms",
        "_outstanding_seq",
        "_rtt_ms",
        "_sample_mono_s",
        "_sent_mono_s",
        "_seq",
    )

    def __init__(self) -> None:
        self._seq = 0
        self._outstanding_seq: int | None = None
        self._sent_mono_s = 0.0
        self._offset_ms = 0.0
        self._rtt_ms: float | None = None
        self._sample_mono_s = 0.0

    def next_ping(self, now_mono_s: float) -> int:
        """The sequence number of a new ping sent at `now_mono_s` (replaces any outstanding)."""
        self._seq += 1
        self._outstanding_seq = self._seq
        self._sent_mono_s = now_mono_s
        return self._seq

    def on_pong(self, seq: int, peer_wall_ms: int, now_mono_s: float, now_wall_ms: float) -> bool:
        """Records a sample if `seq` answers the outstanding ping; False for a stale pong."""
        if seq != self._outstanding_seq:
            return False
        self._outstanding_seq = None
        rtt_ms = max(0.0, (now_mono_s - self._sent_mono_s) * 1000.0)
        self._rtt_ms = rtt_ms
        self._offset_ms = peer_wall_ms - (now_wall_ms - rtt_ms / 2.0)
        self._sample_mono_s = now_mono_s
        return True

    @property
    def last_rtt_ms(self) -> float | None:
        return self._rtt_ms

    def sample(self, now_mono_s: float) -> ClockSample | None:
        if self._rtt_ms is None:
            return None
        return ClockSample(
            offset_ms=self._offset_ms,
            rtt_ms=self._rtt_ms,
            age_s=max(0.0, now_mono_s - self._sample_mono_s),
        )

"""The simulator's virtual clock: a single-threaded discrete-event loop.

Theory of operation: every future happening (a message arriving, an fsync completing, the
next tick of a node, a client's timeout, a fault starting) is a callback scheduled at a
virtual time. `run_until` pops them in (time, sequence) order, so two events at the same
time run in the order they were scheduled and a run depends on nothing but the seed. Time is
measured in `units`; one Raft tick is `UNITS_PER_TICK` units, so network delays and fsyncs
can be shorter than a tick.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

UNITS_PER_TICK = 10
"""Virtual time units per Raft tick (a tick stands for ~10 ms, a unit for ~1 ms)."""

Callback = Callable[[], None]


class EventLoop:
    """A heap of (time, seq, callback). Never goes backwards in time."""

    __slots__ = ("_heap", "_seq", "now", "processed_events")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callback]] = []
        self._seq = 0
        self.now = 0
        self.processed_events = 0

    def call_at(self, at: int, callback: Callback) -> None:
        assert at >= self.now, f"cannot schedule in the past ({at} < {self.now})"
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, callback))

    def call_later(self, delay: int, callback: Callback) -> None:
        assert delay >= 0, "delays are non-negative"
        self.call_at(self.now + delay, callback)

    def run_until(self, end: int, stop: Callable[[], bool] | None = None) -> None:
        """Run every event due at or before `end`, then set the clock to `end`.
        `stop` is polled after each event; when it returns True the loop returns early."""
        heap = self._heap
        while heap and heap[0][0] <= end:
            at, _, callback = heapq.heappop(heap)
            assert at >= self.now, "the event heap went back in time"
            self.now = at
            callback()
            self.processed_events += 1
            if stop is not None and stop():
                return
        self.now = max(self.now, end)

    def pending(self) -> int:
        return len(self._heap)

"""Logical Raft ticks from a monotonic timer, without catch-up bursts.

Theory of operation. The core counts time in ticks (election timeout, heartbeat interval).
The ticker calls `on_tick` once every `interval_s` of monotonic time, scheduled at absolute
deadlines so small delays do not accumulate into drift. When the loop was blocked for longer
than a tick (a long GC pause, a slow apply, SIGSTOP), the missed ticks are NOT replayed in a
burst: a burst would make a follower campaign at once instead of first hearing the leader's
messages waiting in its socket. The next deadline restarts from now, and `late_ticks` counts
what was skipped (a metric: a loop that is often late is overloaded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Ticker:
    def __init__(
        self, *, loop: asyncio.AbstractEventLoop, interval_s: float, on_tick: Callable[[], None]
    ) -> None:
        assert interval_s > 0
        self._loop = loop
        self.interval_s = interval_s
        self._on_tick = on_tick
        self._handle: asyncio.TimerHandle | None = None
        self._next_at = 0.0
        self.ticks = 0
        self.late_ticks = 0  # ticks skipped because the loop was late

    def start(self) -> None:
        assert self._handle is None, "the ticker is already running"
        self._next_at = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(self._next_at, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = self._loop.time()
        self._next_at += self.interval_s
        if now >= self._next_at:  # a whole tick or more was missed: no catch-up
            self.late_ticks += int((now - self._next_at) / self.interval_s) + 1
            self._next_at = now + self.interval_s
        self._handle = self._loop.call_at(self._next_at, self._fire)
        self.ticks += 1
        self._on_tick()

"""A tiny driver for the state machine: each command gets the next log index and a stamp."""

from __future__ import annotations

import dataclasses
from typing import Any

from raftsched.sched import Command, Ok, Refused, Result, SchedulerState, Tick
from raftsched.sched.limits import Limits

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


class Driver:
    def __init__(
        self, limits: Limits | None = None, start_ms: int = T0, *, bound_clock: bool = False
    ) -> None:
        """`bound_clock` False lifts the per-entry clock step bound: most tests jump days in
        one entry; the clock tests opt in."""
        limits = limits or Limits()
        if not bound_clock:
            limits = dataclasses.replace(limits, max_clock_step_ms=2**53)
        self.state = SchedulerState(limits)
        self.index = 0
        self.now_ms = start_ms

    def apply(self, cmd: Command, at_ms: int | None = None) -> Result:
        """Apply with the next index; `at_ms` sets the stamp (default: the current time)."""
        if at_ms is not None:
            self.now_ms = at_ms
        self.index += 1
        return self.state.apply(cmd, self.index, self.now_ms)

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def ok(self, cmd: Command, at_ms: int | None = None) -> Any:
        result = self.apply(cmd, at_ms)
        assert isinstance(result, Ok), result
        return result.value

    def refused(self, cmd: Command, code: str, at_ms: int | None = None) -> Refused:
        """Apply, expect a refusal with `code`, and check that it changed nothing."""
        check = at_ms is None and cmd.idempotency_key is None
        if check and self.state.clock_ms != self.now_ms:
            self.apply(Tick())  # bring the clock and due work up to date first
        before = self.state.snapshot() if check else b""
        result = self.apply(cmd, at_ms)
        assert isinstance(result, Refused), result
        assert result.error.code == code, result.error
        if check:  # same stamp: no due work either; only last_index may differ
            self.state.last_index -= 1
            try:
                assert self.state.snapshot() == before, "a refusal changed the state"
            finally:
                self.state.last_index += 1
        return result

    def settle(self, max_entries: int = 100_000) -> int:
        """Apply Ticks while the state has due work (what the leader does); returns how many."""
        ticks = 0
        while self.state.has_due_work(self.now_ms):
            assert ticks < max_entries, "due work never finished"
            self.apply(Tick())
            ticks += 1
        return ticks

    def job(self, job_id: str) -> dict[str, Any]:
        doc = self.state.get_job(job_id)
        assert doc is not None, f"no job {job_id}"
        return doc

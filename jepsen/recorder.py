"""Stamps and appends history events: the runner's one door to jepsen/history.py.

Every event gets `time_ns` (monotonic, since the test started) and `wall_ms` when it is
recorded; HistoryWriter.record appends under its lock, so the line order is the order of
these calls. Process numbers come from one counter: a client process that got an "info"
is retired and its slot continues under `new_process()` (Jepsen's rule, interfaces.md).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from .history import FINAL_PROCESS, NEMESIS_PROCESS, HistoryWriter, Op, OpType, Process


class Recorder:
    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer
        self.t0_ns = time.monotonic_ns()
        self._processes = itertools.count()
        self.counts: dict[str, int] = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}
        # Called synchronously after each recorded client completion (a nemesis that
        # strikes right after an acknowledgement needs to act before anything else runs).
        self.on_completion: list[Callable[[Op], None]] = []

    def elapsed_s(self) -> float:
        return (time.monotonic_ns() - self.t0_ns) / 1e9

    def new_process(self) -> int:
        return next(self._processes)

    def event(
        self,
        *,
        type: OpType,
        process: Process,
        f: str,
        value: Any,
        node: int | None = None,
        error: str | None = None,
    ) -> Op:
        if isinstance(process, int):
            self.counts[type] += 1  # client operations only (the progress display)
        op = self.writer.record(
            type=type,
            process=process,
            f=f,
            value=value,
            time_ns=time.monotonic_ns() - self.t0_ns,
            wall_ms=time.time_ns() // 1_000_000,
            node=node,
            error=error,
        )
        if type != "invoke" and isinstance(process, int):
            for hook in list(self.on_completion):
                hook(op)
        return op

    def nemesis(self, f: str, value: Any) -> Op:
        return self.event(type="info", process=NEMESIS_PROCESS, f=f, value=value)

    def final(self, type: OpType, f: str, value: Any, **kw: Any) -> Op:
        return self.event(type=type, process=FINAL_PROCESS, f=f, value=value, **kw)

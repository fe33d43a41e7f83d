"""The jepsen history: one JSON object per line, in the order events happened.

Theory of operation. Every client operation is recorded twice: an "invoke" when the client
starts it and one completion when it ends -- "ok" (it happened, with its result), "fail" (it
certainly did not happen) or "info" (unknown: it may or may not have happened, at any time
after the invoke). A client process runs one operation at a time; after an "info" the
process is retired and the client continues under a new process number (Jepsen's rule).
Fault events come from the process "nemesis", always with type "info". The end-of-test reads
come from the process "final".

The recorder appends under one lock, so the order of lines is the real-time order: event A
happened before event B iff A's line comes first. `index` is the line number (from 0);
`time_ns` is monotonic ns since the test started, `wall_ms` is time.time() in ms.

Format (see /work/notes/interfaces.md, agreed between the runner and the checkers):
  {"index": 0, "type": "invoke", "process": 3, "f": "submit", "value": {...},
   "time_ns": 123456789, "wall_ms": 1764000000000, "node": 2, "error": null}
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "FINAL_PROCESS",
    "NEMESIS_PROCESS",
    "OP_TYPES",
    "HistoryError",
    "HistoryWriter",
    "Op",
    "OpType",
    "Process",
    "op_from_json",
    "op_to_json",
    "pair_ops",
    "read_history",
]

OpType = Literal["invoke", "ok", "fail", "info"]
OP_TYPES: tuple[OpType, ...] = ("invoke", "ok", "fail", "info")
Process = int | str
NEMESIS_PROCESS = "nemesis"
FINAL_PROCESS = "final"
# The keys of every line, in the order they are written.
FIELDS = ("index", "type", "process", "f", "value", "time_ns", "wall_ms", "node", "error")


class HistoryError(ValueError):
    """A malformed history: the message names the line (1-based) and what is wrong."""


@dataclass(frozen=True, slots=True)
class Op:
    """One line of the history: an invoke or a completion."""

    index: int  # position in the history, from 0
    type: OpType
    process: Process  # client process id, "nemesis" or "final"
    f: str  # submit, lease, heartbeat, complete, fail, read, final-read, state-hash, kill, ...
    value: Any  # invoke: the arguments; ok: the result; fail/info: whatever was known
    time_ns: int  # monotonic ns since the test started
    wall_ms: int  # wall clock, ms since the epoch
    node: int | None = None  # the node the request went to, when known
    error: str | None = None  # why it failed or is indeterminate

    @property
    def is_client(self) -> bool:
        """A client operation (not the nemesis)."""
        return self.process != NEMESIS_PROCESS


def op_to_json(op: Op) -> dict[str, Any]:
    return {
        "index": op.index,
        "type": op.type,
        "process": op.process,
        "f": op.f,
        "value": op.value,
        "time_ns": op.time_ns,
        "wall_ms": op.wall_ms,
        "node": op.node,
        "error": op.error,
    }


def _require_int(obj: dict[str, Any], name: str, *, optional: bool = False) -> int | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HistoryError(f"field {name!r} must be an integer, got {value!r}")
    return value


def op_from_json(obj: object) -> Op:
    """Parse one decoded line; HistoryError (without a line number) when malformed."""
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [name for name in ("index", "type", "process", "f", "time_ns") if name not in obj]
    if missing:
        raise HistoryError(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise HistoryError(f"unknown field(s) {', '.join(unknown)}")
    op_type = obj["type"]
    if op_type not in OP_TYPES:
        raise HistoryError(f"type must be one of {', '.join(OP_TYPES)}, got {op_type!r}")
    process = obj["process"]
    if isinstance(process, bool) or not isinstance(process, int | str):
        raise HistoryError(f"process must be an integer or a string, got {process!r}")
    f = obj["f"]
    if not isinstance(f, str) or not f:
        raise HistoryError(f"f must be a non-empty string, got {f!r}")
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        raise HistoryError(f"error must be a string or null, got {error!r}")
    index = _require_int(obj, "index")
    time_ns = _require_int(obj, "time_ns")
    wall_ms = _require_int(obj, "wall_ms", optional=True)
    node = _require_int(obj, "node", optional=True)
    assert index is not None and time_ns is not None
    return Op(
        index=index,
        type=op_type,
        process=process,
        f=f,
        value=obj.get("value"),
        time_ns=time_ns,
        wall_ms=wall_ms if wall_ms is not None else 0,
        node=node,
        error=error,
    )


def validate(ops: Sequence[Op]) -> None:
    """Raise HistoryError unless the ops form a well-formed history.

    Checks: indexes are 0, 1, 2, ... (the line order); time_ns never goes back; nemesis
    events are "info"; every client completion matches an outstanding invoke of the same
    process and f; a process has at most one op in flight and issues nothing after an info.
    """
    outstanding: dict[Process, Op] = {}
    retired: dict[Process, Op] = {}
    last_time_ns: int | None = None
    for position, op in enumerate(ops):
        where = f"line {position + 1}"
        if op.index != position:
            raise HistoryError(f"{where}: index {op.index}, expected {position}")
        if last_time_ns is not None and op.time_ns < last_time_ns:
            raise HistoryError(
                f"{where}: time_ns {op.time_ns} goes back (previous line {last_time_ns})"
            )
        last_time_ns = op.time_ns
        if op.process == NEMESIS_PROCESS:
            if op.type != "info":
                raise HistoryError(f"{where}: nemesis events have type info, got {op.type}")
            continue
        if op.process in retired:
            raise HistoryError(
                f"{where}: process {op.process!r} issues {op.f} after its info at line "
                f"{retired[op.process].index + 1}; a new process number must be used"
            )
        if op.type == "invoke":
            if op.process in outstanding:
                first = outstanding[op.process]
                raise HistoryError(
                    f"{where}: process {op.process!r} invokes {op.f} while its {first.f} "
                    f"(line {first.index + 1}) is still in flight"
                )
            outstanding[op.process] = op
            continue
        invoke = outstanding.pop(op.process, None)
        if invoke is None:
            raise HistoryError(
                f"{where}: {op.type} {op.f} on process {op.process!r} without an invoke"
            )
        if invoke.f != op.f:
            raise HistoryError(
                f"{where}: completion f={op.f!r} does not match its invoke f={invoke.f!r} "
                f"(line {invoke.index + 1})"
            )
        if op.type == "info" and op.process != FINAL_PROCESS:
            retired[op.process] = op


def read_history(path: str | Path, *, check: bool = True) -> list[Op]:
    """Read a history.jsonl; HistoryError naming the line when one is malformed.

    Blank lines are skipped, but a torn last line (a crash while writing) is an error: the
    checkers cannot know what it said.
    """
    ops: list[Op] = []
    with Path(path).open(encoding="utf-8") as stream:
        for line_no, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise HistoryError(f"{path}: line {line_no}: not JSON: {error.msg}") from None
            try:
                ops.append(op_from_json(obj))
            except HistoryError as error:
                raise HistoryError(f"{path}: line {line_no}: {error}") from None
    if check:
        try:
            validate(ops)
        except HistoryError as error:
            raise HistoryError(f"{path}: {error}") from None
    return ops


class HistoryWriter:
    """Appends ops to a history.jsonl, one flushed line each, from any thread.

    `append` writes the caller's Op (with its index). `record` is the convenient form that
    assigns the next index under the same lock, so the line order and the indexes always
    agree with the real-time order of the calls.

    Both keep time_ns non-decreasing: a caller that read the clock, then waited for the lock
    behind a later reading, gets the previous line's time_ns instead of one that goes back
    (the line order is the real-time order; time_ns must not contradict it, or the history
    would be refused as malformed).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        # Appending to an existing history continues its indexes (line numbers) and times.
        existing = 0
        self._last_time_ns = 0
        if self._path.exists():
            with self._path.open(encoding="utf-8") as stream:
                for line in stream:
                    if line.strip():
                        existing += 1
                        last_line = line
            if existing:
                try:
                    last = json.loads(last_line)
                except ValueError:
                    last = None  # a torn last line: read_history will name it
                if isinstance(last, dict) and isinstance(last.get("time_ns"), int):
                    self._last_time_ns = last["time_ns"]
        self._stream: IO[str] | None = self._path.open("a", encoding="utf-8")
        self._next_index = existing

    @property
    def path(self) -> Path:
        return self._path

    def append(self, op: Op) -> None:
        with self._lock:
            if self._stream is None:
                raise ValueError(f"history writer for {self._path} is closed")
            if op.time_ns < self._last_time_ns:
                op = dataclasses.replace(op, time_ns=self._last_time_ns)
            self._stream.write(json.dumps(op_to_json(op), separators=(",", ":")) + "\n")
            self._stream.flush()
            self._last_time_ns = op.time_ns
            self._next_index = max(self._next_index, op.index + 1)

    def record(
        self,
        *,
        type: OpType,
        process: Process,
        f: str,
        value: Any,
        time_ns: int,
        wall_ms: int,
        node: int | None = None,
        error: str | None = None,
    ) -> Op:
        """Build the op with the next index and append it, atomically; returns the op.

        time_ns and wall_ms are the caller's, read just before calling; the lock makes the
        line order the call order, and time_ns is raised to the previous line's if needed.
        """
        with self._lock:
            if self._stream is None:
                raise ValueError(f"history writer for {self._path} is closed")
            op = Op(
                index=self._next_index,
                type=type,
                process=process,
                f=f,
                value=value,
                time_ns=max(time_ns, self._last_time_ns),
                wall_ms=wall_ms,
                node=node,
                error=error,
            )
            self._stream.write(json.dumps(op_to_json(op), separators=(",", ":")) + "\n")
            self._stream.flush()
            self._last_time_ns = op.time_ns
            self._next_index += 1
            return op

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pair_ops(ops: Iterable[Op]) -> list[tuple[Op, Op | None]]:
    """Each client invoke with its completion (None if it never completed), in invoke order.

    Nemesis events are not paired (they are single "info" events); use `nemesis_events`.
    A completion without an invoke raises HistoryError.
    """
    pairs: list[tuple[Op, Op | None]] = []
    slot_of: dict[Process, int] = {}
    for op in ops:
        if op.process == NEMESIS_PROCESS:
            continue
        if op.type == "invoke":
            slot_of[op.process] = len(pairs)
            pairs.append((op, None))
            continue
        slot = slot_of.pop(op.process, None)
        if slot is None:
            raise HistoryError(
                f"line {op.index + 1}: {op.type} {op.f} on process {op.process!r} without an invoke"
            )
        pairs[slot] = (pairs[slot][0], op)
    return pairs


def nemesis_events(ops: Iterable[Op]) -> list[Op]:
    """The fault events, in order."""
    return [op for op in ops if op.process == NEMESIS_PROCESS]

"""jepsen/history.py: the JSON-lines format, its validation and the thread-safe writer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from jepsen.history import (
    HistoryError,
    HistoryWriter,
    Op,
    OpType,
    nemesis_events,
    pair_ops,
    read_history,
)


def _line(**fields: object) -> str:
    base: dict[str, object] = {
        "index": 0,
        "type": "invoke",
        "process": 0,
        "f": "submit",
        "value": {"job_id": "a", "queue": "q"},
        "time_ns": 0,
        "wall_ms": 1,
        "node": 1,
        "error": None,
    }
    base.update(fields)
    return json.dumps(base)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_round_trip_through_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        first = writer.record(
            type="invoke", process=0, f="submit", value={"job_id": "a"}, time_ns=5, wall_ms=9
        )
        writer.record(
            type="info", process="nemesis", f="kill", value={"nodes": [1]}, time_ns=6, wall_ms=9
        )
        writer.record(
            type="ok", process=0, f="submit", value={"job_id": "a"}, time_ns=7, wall_ms=10, node=2
        )
    ops = read_history(path)
    assert [op.index for op in ops] == [0, 1, 2]
    assert ops[0] == first
    assert ops[2].node == 2
    assert [op.f for op in nemesis_events(ops)] == ["kill"]
    pairs = pair_ops(ops)
    assert len(pairs) == 1
    assert pairs[0][0] == ops[0] and pairs[0][1] == ops[2]


def test_writer_is_thread_safe_and_indexes_follow_line_order(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    threads_count, per_thread = 8, 50
    with HistoryWriter(path) as writer:

        def client(process: int) -> None:
            for step in range(per_thread):
                kind: OpType = "invoke" if step % 2 == 0 else "ok"
                writer.record(
                    type=kind, process=process, f="read", value=None, time_ns=0, wall_ms=0
                )

        threads = [threading.Thread(target=client, args=(p,)) for p in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    ops = read_history(path)
    assert len(ops) == threads_count * per_thread
    assert [op.index for op in ops] == list(range(len(ops)))


def test_append_writes_the_given_op(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    op = Op(
        index=0, type="invoke", process=1, f="read", value={"job_id": "x"}, time_ns=1, wall_ms=2
    )
    with HistoryWriter(path) as writer:
        writer.append(op)
    assert read_history(path) == [op]


def test_reopened_writer_continues_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.record(type="invoke", process=1, f="read", value=None, time_ns=0, wall_ms=0)
    with HistoryWriter(path) as writer:
        op = writer.record(type="ok", process=1, f="read", value=None, time_ns=1, wall_ms=0)
    assert op.index == 1
    assert [op.index for op in read_history(path)] == [0, 1]


def test_writer_keeps_time_from_going_back(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.record(type="invoke", process=1, f="read", value=None, time_ns=50, wall_ms=0)
        # a caller that read the clock earlier but got the lock later
        late = writer.record(type="invoke", process=2, f="read", value=None, time_ns=40, wall_ms=0)
        writer.append(
            Op(index=2, type="ok", process=1, f="read", value=None, time_ns=30, wall_ms=0)
        )
    assert late.time_ns == 50
    assert [op.time_ns for op in read_history(path)] == [50, 50, 50]
    with HistoryWriter(path) as writer:  # reopened: continues from the last line's time
        op = writer.record(type="ok", process=2, f="read", value=None, time_ns=1, wall_ms=0)
    assert (op.index, op.time_ns) == (3, 50)


def test_closed_writer_refuses(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.record(type="invoke", process=1, f="read", value=None, time_ns=0, wall_ms=0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "line 1: not JSON"),
        ([_line(), "[1, 2]"], "line 2: expected a JSON object"),
        ([_line(type="done")], "line 1: type must be one of"),
        ([_line(time_ns="x")], "line 1: field 'time_ns' must be an integer"),
        ([_line(process=True)], "line 1: process must be"),
        ([_line(surprise=1)], "line 1: unknown field"),
        ([json.dumps({"index": 0})], "line 1: missing field"),
        ([_line(index=3)], "line 1: index 3, expected 0"),
        ([_line(), _line(index=1, time_ns=-1, type="ok")], "line 2: time_ns -1 goes back"),
        ([_line(type="ok")], "line 1: ok submit on process 0 without an invoke"),
        ([_line(), _line(index=1)], "line 2: process 0 invokes submit while"),
        ([_line(), _line(index=1, type="ok", f="read")], "line 2: completion f='read'"),
        (
            [_line(), _line(index=1, type="info"), _line(index=2)],
            "line 3: process 0 issues submit after its info at line 2",
        ),
        ([_line(process="nemesis", type="ok")], "line 1: nemesis events have type info"),
    ],
)
def test_malformed_histories_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = _write(tmp_path / "h.jsonl", lines)
    with pytest.raises(HistoryError, match=message):
        read_history(path)


def test_blank_lines_are_skipped_and_incomplete_ops_pair_with_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.jsonl", [_line(), ""])
    ops = read_history(path)
    assert pair_ops(ops) == [(ops[0], None)]


def test_pair_ops_refuses_a_completion_without_invoke() -> None:
    op = Op(index=0, type="ok", process=1, f="read", value=None, time_ns=0, wall_ms=0)
    with pytest.raises(HistoryError, match="without an invoke"):
        pair_ops([op])

"""The report directory of a jepsen run: results.json and a self-contained index.html.

Theory of operation. `write_report(out_dir, ops, check_report, meta)` derives everything from
the history and the checkers' report; it starts no process and reads no clock.
  - results.json: meta, the checks (verdicts, messages, details), op counts by f and type,
    latency percentiles per f (ok operations), the fault windows and the summary verdict.
  - index.html: the verdict and every check at the top (green / red / amber for unknown),
    then a timeline of operations per process, a latency plot and a throughput plot, each
    with the nemesis fault windows shaded. Everything is inline (SVG, or PNG as data URIs),
    so the file can be mailed or attached to an issue alone.
Plots: the timeline is always SVG (one row per process, one bar per operation, with a hover
title). Latency and throughput are PNG via matplotlib when it is installed (the bench extra;
also written next to index.html) and SVG drawn here otherwise.

Fault windows pair the nemesis events: kill..start/restart, pause..resume, partition..heal,
skew..unskew, remove-member..add-member (see `WINDOW_END`); a heal with {"kind": "all"}
ends every open window; a window still open at the end runs to the end of the history;
nemesis events of other kinds are drawn as instants.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepsen.history import NEMESIS_PROCESS, Op, Process, pair_ops

__all__ = [
    "FaultWindow",
    "fault_windows",
    "flagged_ops",
    "latency_stats",
    "op_counts",
    "write_report",
]

# A fault-starting nemesis f -> the fs that end its window.
WINDOW_END: dict[str, tuple[str, ...]] = {
    "kill": ("start", "restart"),
    "pause": ("resume",),
    "partition": ("heal",),
    "skew": ("unskew", "reset-clock"),
    "clock-skew": ("unskew", "reset-clock"),
    "remove-member": ("add-member",),  # a member replaced: one node fewer until added
}
# The timeline draws at most this many operations (all non-ok ones first, ok ones sampled).
TIMELINE_OPS_MAX = 4000
PERCENTILES = (50, 90, 99)
# Throughput is counted in about this many buckets of a round width, at least 10 ms each.
THROUGHPUT_BUCKETS = 60
THROUGHPUT_BUCKET_S_MIN = 0.01
COLORS = {"ok": "#3a9a4a", "fail": "#d9534f", "info": "#f0ad4e", "open": "#999999"}
SERIES_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
FLAGGED_STROKE = "#000000"
# How many linearizability explanations the page spells out (all are in results.json).
EXPLANATIONS_SHOWN_MAX = 3
ALL_COLOR = "#000000"  # the total throughput line
FAULT_COLORS = {
    "kill": "#d62728",
    "pause": "#9467bd",
    "partition": "#1f77b4",
    "remove-member": "#2ca02c",
}
FAULT_COLOR_OTHER = "#7f7f7f"


@dataclass(frozen=True, slots=True)
class FaultWindow:
    kind: str  # the starting f: kill, pause, partition, ...
    start_s: float
    end_s: float | None  # None: an instant (a nemesis event that opens no window)
    value: Any
    closed: bool  # False: still open at the end of the history


def _seconds(time_ns: int) -> float:
    return time_ns / 1e9


def fault_windows(ops: Sequence[Op]) -> list[FaultWindow]:
    """Pair nemesis start/stop events into windows (see the module docstring)."""
    end_s = _seconds(ops[-1].time_ns) if ops else 0.0
    open_windows: dict[str, list[Op]] = defaultdict(list)
    windows: list[FaultWindow] = []
    ends = {stop: kind for kind, stops in WINDOW_END.items() for stop in stops}
    for op in ops:
        if op.process != NEMESIS_PROCESS:
            continue
        heal_all = op.f == "heal" and isinstance(op.value, dict) and op.value.get("kind") == "all"
        if op.f in WINDOW_END:
            open_windows[op.f].append(op)
        elif heal_all or (op.f in ends and open_windows[ends[op.f]]):
            # A stop ends every open window of its kind (heal heals all partitions); the
            # runner's final {"kind": "all"} heal ends every window.
            kinds = list(open_windows) if heal_all else [ends[op.f]]
            closing = [start for kind in kinds for start in open_windows.pop(kind, [])]
            for start in closing:
                windows.append(
                    FaultWindow(
                        kind=start.f,
                        start_s=_seconds(start.time_ns),
                        end_s=_seconds(op.time_ns),
                        value=start.value,
                        closed=True,
                    )
                )
        else:
            windows.append(
                FaultWindow(
                    kind=op.f, start_s=_seconds(op.time_ns), end_s=None, value=op.value, closed=True
                )
            )
    for starts in open_windows.values():
        for start in starts:
            windows.append(
                FaultWindow(
                    kind=start.f,
                    start_s=_seconds(start.time_ns),
                    end_s=end_s,
                    value=start.value,
                    closed=False,
                )
            )
    return sorted(windows, key=lambda window: window.start_s)


def op_counts(ops: Sequence[Op]) -> dict[str, dict[str, int]]:
    """f -> {invoke, ok, fail, info, open (never completed)} for client operations."""
    counts: dict[str, dict[str, int]] = {}
    for invoke, done in pair_ops(ops):
        row = counts.setdefault(invoke.f, {"invoke": 0, "ok": 0, "fail": 0, "info": 0, "open": 0})
        row["invoke"] += 1
        row["open" if done is None else done.type] += 1
    return dict(sorted(counts.items()))


def _percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values."""
    assert sorted_values, "percentile of nothing"
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(ops: Sequence[Op]) -> dict[str, dict[str, float]]:
    """f -> {count, p50_ms, p90_ms, p99_ms, max_ms, mean_ms} over ok operations."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for invoke, done in pair_ops(ops):
        if done is not None and done.type == "ok":
            latencies[invoke.f].append((done.time_ns - invoke.time_ns) / 1e6)
    stats: dict[str, dict[str, float]] = {}
    for f, values in sorted(latencies.items()):
        values.sort()
        row: dict[str, float] = {"count": len(values)}
        for percent in PERCENTILES:
            row[f"p{percent}_ms"] = round(_percentile(values, percent), 3)
        row["max_ms"] = round(values[-1], 3)
        row["mean_ms"] = round(sum(values) / len(values), 3)
        stats[f] = row
    return stats


# ---------------------------------------------------------------------------------------------
# SVG drawing: a plot area mapping data to pixels, with axes and fault shading.


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int
    height: int
    x_max: float
    y_min: float
    y_max: float
    log_y: bool = False
    left: int = 60
    right: int = 20
    top: int = 10
    bottom: int = 30

    def x(self, seconds: float) -> float:
        span = self.width - self.left - self.right
        return self.left + span * (seconds / self.x_max if self.x_max > 0 else 0.0)

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        low, high, v = self.y_min, self.y_max, value
        if self.log_y:
            low, high, v = math.log10(low), math.log10(high), math.log10(max(value, self.y_min))
        fraction = (v - low) / (high - low) if high > low else 0.0
        return self.height - self.bottom - span * fraction


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _axes_svg(frame: _Frame, *, y_label: str) -> list[str]:
    parts = [
        f'<line x1="{frame.left}" y1="{frame.height - frame.bottom}" '
        f'x2="{frame.width - frame.right}" y2="{frame.height - frame.bottom}" stroke="#333"/>',
        f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" '
        f'y2="{frame.height - frame.bottom}" stroke="#333"/>',
        f'<text x="{frame.width / 2}" y="{frame.height - 4}" font-size="11" '
        f'text-anchor="middle">time (s)</text>',
        f'<text x="12" y="{frame.height / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {frame.height / 2})">{html.escape(y_label)}</text>',
    ]
    for tick in _ticks(0.0, frame.x_max):
        x = frame.x(tick)
        parts.append(
            f'<text x="{x:.1f}" y="{frame.height - frame.bottom + 13}" font-size="10" '
            f'text-anchor="middle">{tick:g}</text>'
        )
    if frame.log_y:
        low, high = math.floor(math.log10(frame.y_min)), math.ceil(math.log10(frame.y_max))
        y_ticks = [10.0**k for k in range(low, high + 1)]
    else:
        y_ticks = _ticks(frame.y_min, frame.y_max, 4)
    for tick in y_ticks:
        if not frame.y_min <= tick <= frame.y_max:
            continue
        y = frame.y(tick)
        parts.append(
            f'<text x="{frame.left - 4}" y="{y + 3:.1f}" font-size="10" '
            f'text-anchor="end">{tick:g}</text>'
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}" '
            f'y2="{y:.1f}" stroke="#eee"/>'
        )
    return parts


def _faults_svg(frame: _Frame, windows: Sequence[FaultWindow]) -> list[str]:
    parts: list[str] = []
    for window in windows:
        color = FAULT_COLORS.get(window.kind, FAULT_COLOR_OTHER)
        title = html.escape(f"{window.kind} {json.dumps(window.value)}")
        x0 = frame.x(window.start_s)
        if window.end_s is None:
            parts.append(
                f'<line class="fault" x1="{x0:.1f}" y1="{frame.top}" x2="{x0:.1f}" '
                f'y2="{frame.height - frame.bottom}" stroke="{color}" stroke-dasharray="3,3">'
                f"<title>{title}</title></line>"
            )
            continue
        width = max(1.0, frame.x(window.end_s) - x0)
        parts.append(
            f'<rect class="fault" x="{x0:.1f}" y="{frame.top}" width="{width:.1f}" '
            f'height="{frame.height - frame.top - frame.bottom}" fill="{color}" '
            f'fill-opacity="0.12"><title>{title}</title></rect>'
        )
    return parts


def _svg(frame: _Frame, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{frame.width}" '
        f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}">'
        + "".join(body)
        + "</svg>"
    )


def _process_order(process: Process) -> tuple[int, int, str]:
    if isinstance(process, int):
        return (0, process, "")
    return (1, 0, process)


def flagged_ops(check_report: dict[str, Any]) -> set[int]:
    """History indexes the failing checks name (every "ops" list in their details)."""
    found: set[int] = set()

    def walk(value: Any, *, under_ops: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, under_ops=key in ("ops", "unlinearizable_ops"))
        elif isinstance(value, list):
            for item in value:
                walk(item, under_ops=under_ops)
        elif under_ops and isinstance(value, int) and not isinstance(value, bool):
            found.add(value)

    for check in check_report.get("checks", {}).values():
        if isinstance(check, dict) and check.get("valid") is False:
            walk(check.get("details", {}), under_ops=False)
    return found


def timeline_svg(
    ops: Sequence[Op],
    windows: Sequence[FaultWindow],
    *,
    width: int = 1100,
    flagged: frozenset[int] | set[int] = frozenset(),
) -> tuple[str, int, int]:
    """Operations per process as bars, the ops in `flagged` (history indexes of an invoke or
    completion) outlined; returns (svg, ops drawn, ops in total)."""
    pairs = pair_ops(ops)
    end_s = _seconds(ops[-1].time_ns) if ops else 1.0

    def is_flagged(pair: tuple[Op, Op | None]) -> bool:
        invoke, done = pair
        return invoke.index in flagged or (done is not None and done.index in flagged)

    keep = [pair for pair in pairs if pair[1] is None or pair[1].type != "ok" or is_flagged(pair)]
    oks = [
        pair
        for pair in pairs
        if pair[1] is not None and pair[1].type == "ok" and not is_flagged(pair)
    ]
    room = max(0, TIMELINE_OPS_MAX - len(keep))
    stride = max(1, math.ceil(len(oks) / room)) if room else len(oks) + 1
    drawn = keep[:TIMELINE_OPS_MAX] + oks[::stride][:room]
    processes = sorted({invoke.process for invoke, _ in pairs}, key=_process_order)
    row_of = {process: row for row, process in enumerate(processes)}
    row_h = max(3.0, min(16.0, 700 / max(1, len(processes))))
    frame = _Frame(
        width=width,
        height=int(len(processes) * row_h) + 45,
        x_max=max(end_s, 1e-9),
        y_min=0.0,
        y_max=float(max(1, len(processes))),
        left=70,
    )
    body = _faults_svg(frame, windows)
    for invoke, done in drawn:
        outcome = "open" if done is None else done.type
        x0 = frame.x(_seconds(invoke.time_ns))
        x1 = frame.x(_seconds(done.time_ns) if done is not None else end_s)
        y = frame.top + row_of[invoke.process] * row_h
        title = f"#{invoke.index} p{invoke.process} {invoke.f} {json.dumps(invoke.value)}"
        if done is not None:
            title += f" -> {done.type} {json.dumps(done.value)}"
            if done.error:
                title += f" ({done.error})"
        outline = ""
        if is_flagged((invoke, done)):
            title = "FLAGGED by a check: " + title
            outline = f' stroke="{FLAGGED_STROKE}" stroke-width="2"'
        body.append(
            f'<rect class="op {outcome}" x="{x0:.1f}" y="{y:.1f}" '
            f'width="{max(1.0, x1 - x0):.1f}" height="{max(1.0, row_h - 1):.1f}" '
            f'fill="{COLORS[outcome]}"{outline}><title>{html.escape(title)}</title></rect>'
        )
    if row_h >= 8:
        for process, row in row_of.items():
            y = frame.top + row * row_h + row_h - 3
            body.append(
                f'<text x="{frame.left - 4}" y="{y:.1f}" font-size="{min(10.0, row_h):.0f}" '
                f'text-anchor="end">p{html.escape(str(process))}</text>'
            )
    body.extend(_axes_svg(frame, y_label="")[:3])
    for tick in _ticks(0.0, frame.x_max):
        body.append(
            f'<text x="{frame.x(tick):.1f}" y="{frame.height - frame.bottom + 13}" '
            f'font-size="10" text-anchor="middle">{tick:g}</text>'
        )
    return _svg(frame, body), len(drawn), len(pairs)


def _latency_points(ops: Sequence[Op]) -> dict[str, list[tuple[float, float]]]:
    """f -> (completion time s, latency ms) of ok operations."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for invoke, done in pair_ops(ops):
        if done is not None and done.type == "ok":
            latency_ms = max((done.time_ns - invoke.time_ns) / 1e6, 1e-3)
            points[invoke.f].append((_seconds(invoke.time_ns), latency_ms))
    return dict(sorted(points.items()))


def _bucket_s(duration_s: float) -> float:
    """A round bucket width giving about THROUGHPUT_BUCKETS buckets over the run."""
    raw = max(duration_s / THROUGHPUT_BUCKETS, THROUGHPUT_BUCKET_S_MIN)
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def _throughput_series(ops: Sequence[Op]) -> dict[str, list[tuple[float, float]]]:
    """f (and "all") -> (bucket middle s, ok completions per second) of client processes;
    the last bucket is cut at the end of the history, so its rate is not diluted by time
    that never happened."""
    end_s = _seconds(ops[-1].time_ns) if ops else 0.0
    bucket_s = _bucket_s(end_s)
    buckets: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for invoke, done in pair_ops(ops):
        # The workload's clients only: the end-of-test reads ("final") would dwarf them.
        if done is not None and done.type == "ok" and isinstance(invoke.process, int):
            bucket = int(_seconds(done.time_ns) // bucket_s)
            buckets[invoke.f][bucket] += 1
            buckets["all"][bucket] += 1
    series: dict[str, list[tuple[float, float]]] = {}
    last = int(end_s // bucket_s)
    for f, counts in sorted(buckets.items()):
        rows: list[tuple[float, float]] = []
        for bucket in range(last + 1):
            start = bucket * bucket_s
            width = min(bucket_s, end_s - start)
            if width <= bucket_s / 10:
                continue  # a sliver at the very end: its rate would be noise
            rows.append((start + width / 2, counts.get(bucket, 0) / width))
        series[f] = rows
    return series


def _legend_svg(frame: _Frame, names: Sequence[str]) -> list[str]:
    parts: list[str] = []
    for position, name in enumerate(names):
        x = frame.left + 10 + position * 95
        color = ALL_COLOR if name == "all" else SERIES_COLORS[position % len(SERIES_COLORS)]
        parts.append(
            f'<rect x="{x}" y="{frame.top + 2}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{frame.top + 11}" font-size="11">{html.escape(name)}</text>'
        )
    return parts


def latency_svg(ops: Sequence[Op], windows: Sequence[FaultWindow], *, width: int = 1100) -> str:
    points = _latency_points(ops)
    values = [latency for series in points.values() for _, latency in series] or [1.0]
    frame = _Frame(
        width=width,
        height=320,
        x_max=max(_seconds(ops[-1].time_ns) if ops else 1.0, 1e-9),
        y_min=10 ** math.floor(math.log10(min(values))),
        y_max=10 ** math.ceil(math.log10(max(values) * 1.0001)),
        log_y=True,
    )
    body = _faults_svg(frame, windows) + _axes_svg(frame, y_label="latency (ms)")
    for position, series in enumerate(points.values()):
        color = SERIES_COLORS[position % len(SERIES_COLORS)]
        stride = max(1, len(series) // 3000)
        for at_s, latency in series[::stride]:
            body.append(
                f'<circle cx="{frame.x(at_s):.1f}" cy="{frame.y(latency):.1f}" r="1.6" '
                f'fill="{color}" fill-opacity="0.6"/>'
            )
    body.extend(_legend_svg(frame, list(points)))
    return _svg(frame, body)


def throughput_svg(ops: Sequence[Op], windows: Sequence[FaultWindow], *, width: int = 1100) -> str:
    series = _throughput_series(ops)
    peak = max((rate for rows in series.values() for _, rate in rows), default=1.0)
    frame = _Frame(
        width=width,
        height=260,
        x_max=max(_seconds(ops[-1].time_ns) if ops else 1.0, 1e-9),
        y_min=0.0,
        y_max=max(peak * 1.1, 1.0),
    )
    body = _faults_svg(frame, windows) + _axes_svg(frame, y_label="ok ops/s")
    for position, (name, rows) in enumerate(series.items()):
        color = SERIES_COLORS[position % len(SERIES_COLORS)]
        points = " ".join(f"{frame.x(at):.1f},{frame.y(rate):.1f}" for at, rate in rows)
        stroke_px = 1.0
        if name == "all":
            color, stroke_px = ALL_COLOR, 1.8
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{stroke_px}"/>'
        )
    body.extend(_legend_svg(frame, list(series)))
    return _svg(frame, body)


# ---------------------------------------------------------------------------------------------
# matplotlib (optional)


def _matplotlib_pngs(ops: Sequence[Op], windows: Sequence[FaultWindow]) -> dict[str, bytes] | None:
    """latency.png and throughput.png, or None when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415 (optional dependency: the bench extra)

        matplotlib.use("Agg")
        from matplotlib import pyplot  # noqa: PLC0415
    except ImportError:
        return None

    def shade(axes: Any) -> None:
        for window in windows:
            color = FAULT_COLORS.get(window.kind, FAULT_COLOR_OTHER)
            if window.end_s is None:
                axes.axvline(window.start_s, color=color, linestyle="--", linewidth=0.8)
            else:
                axes.axvspan(window.start_s, window.end_s, color=color, alpha=0.12, linewidth=0)

    images: dict[str, bytes] = {}
    figure, axes = pyplot.subplots(figsize=(11, 3.2), dpi=100)
    shade(axes)
    for f, series in _latency_points(ops).items():
        axes.scatter([p[0] for p in series], [p[1] for p in series], s=3, alpha=0.6, label=f)
    axes.set_yscale("log")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("latency (ms)")
    axes.legend(loc="upper right", fontsize=8, markerscale=3)
    images["latency.png"] = _png(figure)
    pyplot.close(figure)
    figure, axes = pyplot.subplots(figsize=(11, 2.6), dpi=100)
    shade(axes)
    for f, rows in _throughput_series(ops).items():
        style = {"color": "black", "linewidth": 1.5} if f == "all" else {"linewidth": 0.9}
        axes.plot([r[0] for r in rows], [r[1] for r in rows], label=f, **style)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("ok ops/s")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right", fontsize=8)
    images["throughput.png"] = _png(figure)
    pyplot.close(figure)
    return images


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The files

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.verdict { padding: .6em 1em; border-radius: 6px; font-size: 1.3em; color: white; }
.valid { background: #3a9a4a; } .invalid { background: #c9302c; } .unknown { background: #e0a030; }
table { border-collapse: collapse; margin: .8em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: .9em; }
td.valid { background: #dff0d8; } td.invalid { background: #f2dede; }
td.unknown { background: #fcf8e3; }
details pre { max-height: 24em; overflow: auto; background: #f7f7f7; padding: .5em; }
.legend span { display: inline-block; margin-right: 1em; }
"""


def _check_rows(check_report: dict[str, Any]) -> str:
    rows = []
    for name, check in check_report.get("checks", {}).items():
        verdict = str(check.get("verdict", "unknown"))
        raw = check.get("details", {})
        details = html.escape(json.dumps(raw, indent=1, default=str))
        # Multi-line explanations (the linearizability search's) read better as text.
        failures = raw.get("failures", []) if isinstance(raw, dict) else []
        explained = "".join(
            f"<pre>{html.escape(str(item['explanation']))}</pre>"
            for item in failures[:EXPLANATIONS_SHOWN_MAX]
            if isinstance(item, dict) and "explanation" in item
        )
        rows.append(
            f'<tr><td class="{html.escape(verdict)}">{html.escape(verdict)}</td>'
            f"<td>{html.escape(name)}</td><td>{html.escape(str(check.get('message', '')))}"
            f"{explained}"
            f"<details><summary>details</summary><pre>{details}</pre></details></td></tr>"
        )
    return "<table><tr><th>verdict</th><th>check</th><th>result</th></tr>" + "".join(rows)


def _table(rows: dict[str, dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("f", *columns))
    body = "".join(
        f"<tr><td>{html.escape(f)}</td>"
        + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns)
        + "</tr>"
        for f, row in rows.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(name: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{name}" src="data:image/png;base64,{encoded}"/>'


def _title(meta: dict[str, Any]) -> str:
    """meta["name"], else what the runner's options say (workload, nodes, nemesis, seed)."""
    if "name" in meta:
        return str(meta["name"])
    options = meta.get("options")
    if isinstance(options, dict):
        parts = [f"jepsen {options.get('workload', '')}".strip()]
        for key in ("nodes", "nemesis", "unsafe", "seed"):
            if options.get(key) not in (None, [], ""):
                parts.append(f"{key} {options[key]}")
        return ", ".join(parts)
    return "jepsen run"


def write_report(
    out_dir: str | Path,
    ops: Sequence[Op],
    check_report: dict[str, Any],
    meta: dict[str, Any],
    *,
    use_matplotlib: bool = True,
) -> dict[str, Path]:
    """Write results.json and index.html (and PNGs with matplotlib); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    windows = fault_windows(ops)
    counts = op_counts(ops)
    latencies = latency_stats(ops)
    verdict = str(check_report.get("verdict", "valid" if check_report.get("valid") else "invalid"))
    results = {
        "valid": bool(check_report.get("valid")),
        "verdict": verdict,
        "meta": meta,
        "checks": check_report.get("checks", {}),
        "op_counts": counts,
        "latency_ms": latencies,
        "faults": [
            {
                "kind": w.kind,
                "start_s": round(w.start_s, 6),
                "end_s": None if w.end_s is None else round(w.end_s, 6),
                "closed": w.closed,
                "value": w.value,
            }
            for w in windows
        ],
        "history": {
            "lines": len(ops),
            "duration_s": round(_seconds(ops[-1].time_ns), 6) if ops else 0.0,
        },
    }
    written: dict[str, Path] = {}
    results_path = out / "results.json"
    results_path.write_text(
        json.dumps(results, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8"
    )
    written["results.json"] = results_path
    pngs = _matplotlib_pngs(ops, windows) if use_matplotlib else None
    if pngs is not None:
        for name, data in pngs.items():
            (out / name).write_bytes(data)
            written[name] = out / name
        latency_html, throughput_html = (
            _img("latency", pngs["latency.png"]),
            _img("throughput", pngs["throughput.png"]),
        )
    else:
        latency_html, throughput_html = latency_svg(ops, windows), throughput_svg(ops, windows)
    flagged = flagged_ops(check_report)
    timeline, drawn, total = timeline_svg(ops, windows, flagged=flagged)
    legend = "".join(
        f'<span><svg width="12" height="10"><rect width="12" height="10" fill="{color}"/></svg> '
        f"{name}</span>"
        for name, color in [*COLORS.items(), *FAULT_COLORS.items()]
    )
    meta_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
        for k, v in meta.items()
    )
    title = html.escape(_title(meta))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}: {html.escape(verdict)}</title>
<style>{_STYLE}</style></head><body>
<div class="verdict {html.escape(verdict)}">{title}: {html.escape(verdict.upper())}</div>
<h2>Checks</h2>
{_check_rows(check_report)}</table>
<h2>Run</h2><table>{meta_rows}</table>
<h2>Timeline</h2>
<p class="legend">{legend}</p>
<p>{drawn} of {total} operations drawn (every failed, indeterminate or flagged one; ok ones
sampled evenly past {TIMELINE_OPS_MAX}). Hover a bar for the operation. Shaded: fault windows.
Outlined in black: the {len(flagged)} history line(s) a failing check names.</p>
{timeline}
<h2>Latency (ok operations)</h2>
{latency_html}
{_table(latencies, ["count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"])}
<h2>Throughput</h2>
{throughput_html}
<h2>Operations</h2>
{_table(counts, ["invoke", "ok", "fail", "info", "open"])}
<h2>Faults</h2>
{
        _table(
            {
                f"{w.kind} @{w.start_s:.3f}s": {
                    "end_s": "instant"
                    if w.end_s is None
                    else f"{w.end_s:.3f}" + ("" if w.closed else " (open)"),
                    "value": json.dumps(w.value),
                }
                for w in windows
            },
            ["end_s", "value"],
        )
    }
</body></html>
"""
    index_path = out / "index.html"
    index_path.write_text(page, encoding="utf-8")
    written["index.html"] = index_path
    return written

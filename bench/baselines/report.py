"""The comparison's outputs: a Markdown table, a PNG plot, a rich table on the terminal, and
`problems()`, the sanity check the CI smoke test runs on a result (and shows failing on a
doctored one)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER_CLASS_SHORT = {"rq.SimpleWorker": "SimpleWorker", "rq.Worker": "Worker, fork per job"}
MAX_ERROR_FRACTION = 0.01


def _num(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.0f}"


def _e2e_cell(res: dict[str, Any], workers: int) -> str:
    parts = []
    for row in res["e2e"]:
        if row["workers"] != workers:
            continue
        cls = row.get("worker_class")
        parts.append(
            f"{_num(row['jobs_per_s'])}" + (f" ({WORKER_CLASS_SHORT[cls]})" if cls else "")
        )
    return ", ".join(parts) or "n/a"


def _failover_cell(fo: dict[str, Any] | None) -> str:
    if fo is None:
        return "n/a (1 node)"
    text = f"{fo['median_s']:.3f} ({len(fo['all_s'])} kills)" if fo["all_s"] else ""
    if fo.get("failed"):
        text += f" FAILED {fo['failed']}"
    return text.strip()


def _replicas_cell(rep: dict[str, Any] | None) -> str:
    if rep is not None and rep.get("unreachable"):
        return f"not checked: {rep['unreachable']} node(s) not answering"
    if rep is None or not rep.get("checked"):
        return "not checked here"
    return "yes" if rep.get("agree") else "NO: states differ"


def cpu_ms_per_job(row: dict[str, Any]) -> float:
    """CPU of the servers (nodes or redis-server) plus the workers (with their children)
    per job: unlike jobs/s, other load on the machine barely changes it."""
    server = row.get("nodes_cpu_ms_per_job", row.get("server_cpu_ms_per_job", 0.0))
    return float(server) + float(row["workers_cpu_ms_per_job"])


def _cpu_cell(res: dict[str, Any], workers: int) -> str:
    parts = []
    for row in res["e2e"]:
        if row["workers"] == workers:
            cls = row.get("worker_class")
            tag = f" ({WORKER_CLASS_SHORT[cls]})" if cls else ""
            parts.append(f"{cpu_ms_per_job(row):.2f}{tag}")
    return ", ".join(parts) or "n/a"


def columns(doc: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The concurrencies and worker counts measured in this run."""
    settings = doc["meta"]["settings"]
    return list(settings["concurrencies"]), list(settings["e2e_workers"])


def rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells, shared by the Markdown and the rich table."""
    concs, workers = columns(doc)
    header = [
        "system",
        "replication, durability",
        "idle submit p50 / p99 ms",
        *[f"submits/s c={c} (p50 ms)" for c in concs],
        "batch jobs/s (100/request, 8 concurrent)",
        *[f"end-to-end jobs/s, {w} workers" for w in workers],
        f"CPU ms per job, all processes, {workers[0]} workers",
        "failover median s",
        "replicas agree after the run",
        "load 1m start-end",
    ]
    out = []
    for sysdoc in doc["systems"]:
        res = sysdoc.get("result")
        if res is None:
            why = f"skipped: {sysdoc['skipped']}" if "skipped" in sysdoc else "FAILED (below)"
            out.append([sysdoc["label"], sysdoc["durability"], why] + [""] * (len(header) - 3))
            continue
        fo = res.get("failover")
        out.append(
            [
                sysdoc["label"],
                sysdoc["durability"],
                f"{res['idle']['p50_ms']:.2f} / {res['idle']['p99_ms']:.2f}",
                *[f"{_num(t['per_s'])} ({t['p50_ms']:.1f})" for t in res["throughput"]],
                _num(res["batch"]["per_s"]),
                *[_e2e_cell(res, w) for w in workers],
                _cpu_cell(res, workers[0]),
                "n/a (not replicated)" if sysdoc["kind"] == "rq" else _failover_cell(fo),
                _replicas_cell(res.get("replicas")),
                f"{res['load_start']:.1f}-{res['load_end']:.1f}",
            ]
        )
    return header, out


def render_markdown(doc: dict[str, Any], notes: list[str]) -> str:
    meta = doc["meta"]
    header, cells = rows(doc)
    lines = [
        "# raftsched vs baselines, one run on one machine",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Python: {meta['python']}  ",
        f"Revision: {meta.get('revision', 'not recorded')}  ",
        f"Date: {meta['date']}  ",
        f"Load average (1 min) at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}"
        " (the machine is shared: figures taken at load above ~1 are noisy and low)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * 2 + "---:|" * (len(header) - 2),
        *["| " + " | ".join(c) + " |" for c in cells],
        "",
        "![raftsched vs baselines](compare.png)",
        "",
        "## What each figure is",
        "",
        *[f"- {n}" for n in notes],
    ]
    failures = [(s["label"], s["failed"]) for s in doc["systems"] if "failed" in s]
    if failures:
        lines += ["", "## Systems whose run failed", ""]
        lines += [f"- {label}: {why}" for label, why in failures]
    alarmed = [s for s in doc["systems"] if (s.get("result") or {}).get("alarms")]
    if alarmed:
        lines += ["", "## Alarms in the node logs (lines with Traceback or diverged)", ""]
        for s in alarmed:
            found = s["result"]["alarms"]
            lines.append(f"- {s['label']}: {len(found)} lines, the first: `{found[0]}`")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (optional dependency, imported only to plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    measured = [s for s in doc["systems"] if s.get("result") is not None]
    concs, workers = columns(doc)
    c_mid = 64 if 64 in concs else concs[-1]
    w0 = workers[0]

    def at_c_mid(res: dict[str, Any]) -> float:
        return float(next(t["per_s"] for t in res["throughput"] if t["concurrency"] == c_mid))

    def batch(res: dict[str, Any]) -> float:
        return float(res["batch"]["per_s"])

    def best_e2e(res: dict[str, Any]) -> float:
        return max((float(r["jobs_per_s"]) for r in res["e2e"] if r["workers"] == w0), default=0)

    def least_cpu(res: dict[str, Any]) -> float:
        return min((cpu_ms_per_job(r) for r in res["e2e"] if r["workers"] == w0), default=0)

    panels: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        (f"single submits/s, {c_mid} concurrent", at_c_mid),
        ("batch submit jobs/s (100 per request)", batch),
        (f"end-to-end jobs/s, {w0} workers", best_e2e),
        (f"CPU ms per job, {w0} workers (lower: better)", least_cpu),
    ]
    labels = [s["label"] for s in measured]
    colors = [
        {"raftsched": "tab:blue", "pysyncobj": "tab:orange", "rq": "tab:green"}[s["kind"]]
        for s in measured
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(19, 0.5 * len(measured) + 2), sharey=True)
    for ax, (title, value) in zip(axes, panels, strict=True):
        ax.barh(labels, [value(s["result"]) for s in measured], color=colors)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # the y axis is shared: once puts the first system on top
    meta = doc["meta"]
    fig.suptitle(
        f"{meta['date']}, {meta['machine'].split(',')[0]}, load {meta['load_start']:.1f}-"
        f"{meta['load_end']:.1f} (shared machine: noisy)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_rich(doc: dict[str, Any]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    header, cells = rows(doc)
    table = Table(title=f"raftsched vs baselines ({doc['meta']['date']})", show_lines=True)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for c in cells:
        table.add_row(*c)
    Console(width=200).print(table)


def problems(doc: dict[str, Any]) -> list[str]:
    """What makes a result not worth publishing: missing context, a non-positive rate, an
    inverted percentile, more than 1% errors, a failed failover. Empty when sane."""
    out = []
    meta = doc.get("meta", {})
    for key in ("command", "machine", "python", "date", "load_start", "load_end", "settings"):
        if key not in meta:
            out.append(f"meta: no {key}")
    measured = [s for s in doc.get("systems", []) if s.get("result") is not None]
    if not measured:
        out.append("no system was measured")
    out += [
        f"{s['key']}: run failed: {s['failed']}" for s in doc.get("systems", []) if "failed" in s
    ]
    for s in measured:
        res, name = s["result"], s["key"]
        idle = res["idle"]
        if not 0 < idle["p50_ms"] <= idle["p99_ms"]:
            out.append(f"{name}: idle p50 {idle['p50_ms']} / p99 {idle['p99_ms']}")
        for t in [*res["throughput"], res["batch"]]:
            if t["per_s"] <= 0:
                out.append(f"{name}: {t['per_s']}/s at concurrency {t['concurrency']}")
            if t["errors"] > MAX_ERROR_FRACTION * max(1, t["requests"]):
                out.append(f"{name}: {t['errors']} errors at concurrency {t['concurrency']}")
        if not res["e2e"]:
            out.append(f"{name}: no end-to-end row")
        for r in res["e2e"]:
            if r["jobs_per_s"] <= 0:
                out.append(f"{name}: end-to-end {r['jobs_per_s']} jobs/s")
            if cpu_ms_per_job(r) <= 0:
                out.append(f"{name}: end-to-end CPU {cpu_ms_per_job(r)} ms per job")
        fo = res.get("failover")
        # A system that did not recover is a measured outcome (`failed` says how), not an
        # insane figure; a failover that neither finished its kills nor says why is.
        finished = fo is not None and fo["kills"] == len(fo["all_s"]) and fo["median_s"] > 0
        if fo is not None and not finished and not fo.get("failed"):
            out.append(f"{name}: failover {fo}")
    return out

"""`python -m bench`: run raftsched's benchmarks in one go and write a report.

Stage 1 of the product measures its two pure halves (the networked comparisons of SPEC §9
against pysyncobj, RQ and a single node arrive with the cluster):

- the Raft core: committed entries per CPU-second through a simulated 3-node cluster, swept
  over proposal batch sizes (bench/raft_core.py);
- the scheduler state machine: applied submits, leases and completes per CPU-second with a
  million pending jobs, lease cost vs queue depth, memory per million jobs
  (bench/sched_apply.py);
- the durable storage: entries/s and fsyncs/s against the disk's raw fsync floor, bytes per
  entry, open time of a 1M-entry log (bench/storage.py, also bench/results/storage.md);
- raftsched against its baselines on the same workload (bench/compare.py, also
  bench/results/compare.md and compare.png): real clusters of 1, 3 and 5 nodes with fsync
  always and never, a pysyncobj-replicated implementation of the same queue, and RQ on a
  local Redis (installed with apt when missing); skip it with --no-compare.

Each benchmark runs in its own process, so one's heap never distorts another's figures. The
raw JSON, a Markdown table (bench/results/summary.md) and a plot
(bench/results/raft_core_batches.png) land in bench/results/.

    python -m bench            # full run, a few minutes
    python -m bench --quick    # smoke run: smaller sizes, same outputs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_line

RESULTS_DIR = Path(__file__).parent / "results"
RAFT_BATCHES = (1, 16, 64, 256, 1024)
RAFT_TARGET = 200_000


def _run(module: str, args: list[str], *, check: bool = True) -> int:
    cmd = [sys.executable, "-m", module, *args]
    print(f"==> {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, check=check).returncode


def render_summary(
    raft: list[dict[str, Any]], sched: dict[str, Any], machine: str, command: str
) -> str:
    """The Markdown report: what ran, on what, and each figure beside its target."""
    lines = [
        "# raftsched benchmarks (stage 1: Raft core and scheduler state machine)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "## Raft core: committed entries per CPU-second (3 simulated nodes, 16-byte commands)",
        "",
        "| proposal batch | entries/CPU-s | target |",
        "|---:|---:|---:|",
    ]
    for r in raft:
        ok = "met" if r["entries_per_cpu_s"] >= RAFT_TARGET else "NOT met"
        lines.append(f"| {r['batch']} | {r['entries_per_cpu_s']:,} | {RAFT_TARGET:,} ({ok}) |")
    gc_modes = list(sched["results"])
    lines += [
        "",
        f"## Scheduler state machine, {sched['jobs_pending']:,} pending jobs, one core",
        "",
        "Rates per CPU-second of the bench process. gc thresholds: "
        + ", ".join(f"{m} = {tuple(sched['gc_thresholds'][m])}" for m in gc_modes),
        "",
        "| measure | " + " | ".join(f"gc {m}" for m in gc_modes) + " | target |",
        "|---|" + "---:|" * (len(gc_modes) + 1),
    ]
    rows = [
        ("submits/s (1 job per command)", "submits_per_s", ",.0f", "≥ 100,000"),
        (f"jobs/s in batches of {sched['batch_size']}", "batched_jobs_per_s", ",.0f", ""),
        ("leases/s", "leases_per_s", ",.0f", "≥ 50,000"),
        ("completes/s", "completes_per_s", ",.0f", "≥ 50,000"),
        ("lease µs at 10k pending", "lease_us_at_10k", ".2f", ""),
        (f"lease µs at {sched['jobs_pending']:,} pending", "lease_us_at_depth", ".2f", ""),
        ("lease cost ratio (depth / 10k)", "lease_cost_ratio", ".2f", "< 2"),
        ("MiB per million pending jobs", "rss_mib_per_million_jobs", ",.0f", "< 1024"),
    ]
    for label, key, fmt, target in rows:
        cells = " | ".join(format(sched["results"][m][key], fmt) for m in gc_modes)
        lines.append(f"| {label} | {cells} | {target} |")
    return "\n".join(lines) + "\n"


def plot_raft(raft: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (optional dependency, imported only to plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 3.6))
    batches = [r["batch"] for r in raft]
    ax.plot(batches, [r["entries_per_cpu_s"] for r in raft], marker="o", label="raftsched core")
    ax.axhline(RAFT_TARGET, color="grey", linestyle="--", label="target")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("commands per propose_batch")
    ax.set_ylabel("committed entries / CPU-s")
    ax.set_title("Raft core throughput, 3 simulated nodes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 100k scheduler jobs, 50k Raft entries per batch size",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where results go (default: bench/results)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the comparison with the baselines (python -m bench.compare)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    entries = "50000" if args.quick else "400000"

    raft: list[dict[str, Any]] = []
    for batch in RAFT_BATCHES:
        path = out / f"raft_core_batch{batch}.json"
        _run("bench.raft_core", ["--batch", str(batch), "--entries", entries, "--out", str(path)])
        raft.append(json.loads(path.read_text()))
    sched_path = out / "sched_apply.json"
    _run("bench.sched_apply", [*(["--quick"] if args.quick else []), "--out", str(sched_path)])
    sched = json.loads(sched_path.read_text())
    _run("bench.storage", [*(["--quick"] if args.quick else []), "--out-dir", str(out)])

    command = "python -m bench" + (" --quick" if args.quick else "")
    summary = render_summary(raft, sched, machine_line(), command)
    summary += "\n#" + (out / "storage.md").read_text()  # its own section, one level down
    if not args.no_compare:
        # Exit 1 means a figure failed its sanity check (bench/baselines/report.py); the
        # table is still written and says which, so the other sections are kept.
        quick = ["--quick"] if args.quick else []
        if _run("bench.compare", [*quick, "--out-dir", str(out)], check=False) != 0:
            print("bench.compare: see its messages above", file=sys.stderr)
        if (out / "compare.md").exists():
            summary += "\n#" + (out / "compare.md").read_text()
    (out / "summary.md").write_text(summary)
    plot_raft(raft, out / "raft_core_batches.png")
    print()
    print(summary)
    print(f"wrote {out / 'summary.md'} and {out / 'raft_core_batches.png'}")
    failed = [r["batch"] for r in raft if r["batch"] >= 16 and r["entries_per_cpu_s"] < RAFT_TARGET]
    if failed:
        print(f"Raft core below target at batch sizes {failed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

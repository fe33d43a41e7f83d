"""`python -m jepsen run ...`: run one test with a progress bar, print the verdict.

Exit codes: 0 every check passed; 1 a check failed (or was unknown), or the harness saw a
problem (a node crashed, the cluster never converged); 2 bad arguments; 3 the test could
not run (the cluster never came up); 130 interrupted (every node was still stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cluster import UNSAFE_MODES
from .nemesis import VARIANTS, NemesisSpecError, parse_nemesis
from .runner import WORKLOADS, RunError, RunOptions, RunResult, Tick, run_test

STORE: Final = Path(__file__).resolve().parent / "store"

DESCRIPTION = """\
Run a jepsen test against a real raftsched cluster on this machine: N node processes
(every peer link behind a fault-injecting TCP proxy), concurrent clients over HTTP, and
a nemesis injecting faults; the history is checked (linearizability of the queue, no
lost or doubly completed job, one live lease per job, increasing tokens, oldest pending
job leased first, every job terminal after heal, replicas converge; docs/jepsen-checkers.md)
and a report directory is written.
"""

NEMESIS_HELP = (
    "comma-separated faults, each kind[:variant]; a bare kind picks a variant at random "
    "each time. "
    + "; ".join(f"{kind}: {'|'.join(variants)}" for kind, variants in VARIANTS.items())
    + ". kill:all only when named. 'none' for no faults (default: partition,kill,pause)"
)

EPILOG = """\
examples:
  python -m jepsen run --nodes 5 --time 120 --nemesis partition,kill,pause --workload queue
  python -m jepsen run --time 30 --nemesis partition:isolate-leader --unsafe stale_reads
  python -m jepsen run --nemesis kill:all --unsafe ack_before_fsync --power-loss

The report directory (default jepsen/store/<UTC time>/) holds history.jsonl,
results.json, index.html and cluster/ (node configs and logs). See docs/jepsen.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jepsen",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one test",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--nodes", type=int, choices=(3, 5), default=3, help="cluster size")
    run.add_argument(
        "--time", type=float, default=60.0, help="seconds of workload under faults (60)"
    )
    run.add_argument("--nemesis", default="partition,kill,pause", help=NEMESIS_HELP)
    run.add_argument("--workload", choices=WORKLOADS, default="queue", help="what clients do")
    run.add_argument(
        "--unsafe",
        action="append",
        default=[],
        choices=UNSAFE_MODES,
        help="start the nodes in a DELIBERATELY BROKEN mode ([unsafe] in the node config): "
        "the checkers must then report the run invalid. Repeatable",
    )
    run.add_argument(
        "--power-loss",
        action="store_true",
        help="nodes hold unsynced writes in memory (RAFTSCHED_FAILPOINT_POWER_LOSS): kill -9 "
        "loses them like a power cut; with --unsafe ack_before_fsync and kill:all this can "
        "lose acknowledged writes",
    )
    run.add_argument(
        "--fsync-delay-ms",
        type=int,
        default=0,
        help="every fsync of every node first sleeps this long (RAFTSCHED_FAILPOINT_FSYNC_"
        "DELAY_MS): a slow disk, which widens the window --unsafe ack_before_fsync exposes",
    )
    run.add_argument(
        "--fsync-delay-nodes",
        help="comma-separated node ids that get --fsync-delay-ms (default: all). E.g. 2,3: "
        "node 1 has the fast disk, so when it leads, its followers acknowledge entries "
        "they will sync only much later",
    )
    run.add_argument("--seed", type=int, help="random seed of the workload and nemesis choices")
    run.add_argument(
        "--out", type=Path, help="report directory, new or empty (default jepsen/store/<time>)"
    )
    run.add_argument("--clients", type=int, default=5, help="concurrent client processes (5)")
    run.add_argument(
        "--rate",
        type=float,
        default=40.0,
        help="target operations per second over all clients (40); slow answers keep it lower",
    )
    run.add_argument("--queues", type=int, default=3, help="queues the jobs spread over (3)")
    run.add_argument(
        "--lease-ms", type=int, default=1500, help="job lease_ms: short so leases expire"
    )
    run.add_argument(
        "--op-timeout", type=float, default=4.0, help="client timeout per request, s (4)"
    )
    run.add_argument("--fault-s", type=float, default=5.0, help="length of a fault window (5)")
    run.add_argument("--heal-s", type=float, default=5.0, help="healthy time between faults (5)")
    run.add_argument(
        "--keep-data", action="store_true", help="keep the nodes' data dirs in the report"
    )
    return parser


class RichReporter:
    """A progress bar over the run phase, one line per other phase."""

    def __init__(self, console: Console, total_s: float) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.total_s = total_s
        self.phase_started = time.monotonic()
        self.current = ""

    def phase(self, name: str) -> None:
        if self.current and self.current != "running":
            took = time.monotonic() - self.phase_started
            self.console.print(f"  {self.current} ({took:.1f} s)")
        if name == "done":
            self.current = ""
            return
        if name == "running":
            self.progress.start()
            self.task = self.progress.add_task("running", total=self.total_s, detail="")
        elif self.current == "running":
            self.progress.stop()
        self.current = name
        self.phase_started = time.monotonic()

    def tick(self, tick: Tick) -> None:
        if self.task is None:
            return
        c = tick.counts
        detail = (
            f"ok {c.get('ok', 0)} fail {c.get('fail', 0)} info {c.get('info', 0)} | "
            f"faults {tick.faults_applied} now: {tick.fault or 'healthy'}"
        )
        self.progress.update(self.task, completed=tick.elapsed_s, detail=detail)


def summary_table(result: RunResult) -> Table:
    table = Table(title="jepsen: checks", show_lines=False)
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("message", overflow="fold")
    for name, check in result.check_report.get("checks", {}).items():
        verdict = check.get("verdict") or ("valid" if check.get("valid") else "invalid")
        style = {"valid": "green", "invalid": "bold red"}.get(verdict, "yellow")
        table.add_row(name, f"[{style}]{verdict}[/]", str(check.get("message", "")))
    for problem in result.problems:
        table.add_row("harness", "[bold red]problem[/]", problem)
    return table


def stats_table(result: RunResult) -> Table:
    meta = result.meta
    table = Table(title="jepsen: run", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    phases = meta.get("phases", {})
    rows: list[tuple[str, Any]] = [
        ("history events", meta.get("ops")),
        ("jobs submitted", meta.get("jobs_submitted")),
        ("faults applied", meta.get("faults_applied")),
        ("unfinished after drain", meta.get("drain_unfinished")),
        ("final reads missing", meta.get("final_reads_missing")),
        ("distinct state hashes", len({h for h in meta.get("state_hashes", {}).values() if h})),
        ("phases (s)", ", ".join(f"{k} {v}" for k, v in phases.items())),
        ("report", str(result.out_dir / "index.html")),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    return table


def _sigterm_as_sigint(signum: int, frame: FrameType | None) -> None:
    # The same orderly stop as Ctrl-C: asyncio.run's SIGINT handler cancels the run, whose
    # finally blocks stop every node.
    signal.raise_signal(signal.SIGINT)


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the run's arguments (None: nothing)."""
    try:
        parse_nemesis(args.nemesis, nodes=args.nodes)
    except NemesisSpecError as exc:
        return f"--nemesis: {exc}"
    positive = {
        "--time": args.time,
        "--clients": args.clients,
        "--rate": args.rate,
        "--queues": args.queues,
        "--lease-ms": args.lease_ms,
        "--op-timeout": args.op_timeout,
        "--fault-s": args.fault_s,
        "--heal-s": args.heal_s,
    }
    for flag, value in positive.items():
        if not value > 0:
            return f"{flag} must be positive, got {value}"
    if args.fsync_delay_ms < 0:
        return f"--fsync-delay-ms must be >= 0, got {args.fsync_delay_ms}"
    if args.fsync_delay_nodes is not None:
        nodes = parse_node_ids(args.fsync_delay_nodes)
        if nodes is None or not nodes <= set(range(1, args.nodes + 1)):
            return f"--fsync-delay-nodes: ids in 1..{args.nodes}, got {args.fsync_delay_nodes!r}"
    if args.out is not None and (args.out / "history.jsonl").exists():
        return f"--out {args.out} already holds a run (history.jsonl): choose a new directory"
    return None


def parse_node_ids(text: str) -> frozenset[int] | None:
    """ "2,3" -> {2, 3}; None when malformed."""
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        return None


def default_out(seed: int) -> Path:
    """jepsen/store/<UTC time>-seed<seed>, made unique if a run started the same second."""
    base = STORE / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-seed{seed}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def run_command(args: argparse.Namespace, console: Console) -> int:
    problem = argument_problem(args)
    if problem is not None:
        console.print(f"[red]{problem}[/]")
        return 2
    seed = args.seed if args.seed is not None else int(time.time())
    out = args.out or default_out(seed)
    options = RunOptions(
        out_dir=out,
        nodes=args.nodes,
        time_s=args.time,
        nemesis=args.nemesis,
        workload=args.workload,
        unsafe=frozenset(args.unsafe),
        seed=seed,
        clients=args.clients,
        rate=args.rate,
        queues=args.queues,
        lease_ms=args.lease_ms,
        op_timeout_s=args.op_timeout,
        fault_s=args.fault_s,
        heal_s=args.heal_s,
        power_loss=args.power_loss,
        fsync_delay_ms=args.fsync_delay_ms,
        fsync_delay_nodes=(
            parse_node_ids(args.fsync_delay_nodes) if args.fsync_delay_nodes else None
        ),
        keep_data=args.keep_data,
    )
    unsafe = f", UNSAFE {', '.join(sorted(options.unsafe))}" if options.unsafe else ""
    console.print(
        f"jepsen: {options.nodes} nodes, {options.time_s:g} s, nemesis {options.nemesis}, "
        f"workload {options.workload}, seed {seed}{unsafe} -> {out}"
    )
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    try:
        result = asyncio.run(run_test(options, RichReporter(console, options.time_s)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every node was stopped[/]")
        return 130
    except RunError as exc:
        console.print(f"[red]the test could not run: {exc}[/]")
        return 3
    console.print(stats_table(result))
    console.print(summary_table(result))
    if result.valid:
        console.print(f"[bold green]valid[/] (seed {seed})")
        return 0
    console.print(f"[bold red]INVALID[/] (seed {seed}); details in {out / 'index.html'}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    if args.command == "run":
        return run_command(args, console)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m raftsched.sim`: run many seeds, replay one, list the seeded bugs, or a demo.

Theory of operation: each seed is one deterministic `run_seed`; the CLI only loops over
seeds, shows a progress bar, sums the results and, for every failing seed, prints the exact
command that replays it with a readable trace. The exit status is 1 when any seed found a
violation, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .bugs import BUGS, UnknownBugError
from .node_host import HostTimings
from .run import TOPOLOGIES, WORKLOAD_KINDS, RunResult, SimConfig, run_seed

EXIT_VIOLATION = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raftsched.sim",
        description=(
            "Deterministic simulation of a raftsched Raft cluster: a virtual clock, a lossy "
            "partitionable network, disks that lose unsynced writes on crash, pauses, "
            "membership changes, leadership transfers and snapshots, with Raft's safety "
            "properties checked continuously and the client history checked for "
            "linearizability. One seed reproduces a whole run."
        ),
    )
    parser.add_argument(
        "--seeds", type=int, default=100, metavar="N", help="number of seeds to run (default: 100)"
    )
    parser.add_argument(
        "--seed-start",
        type=int,
        default=1,
        metavar="S",
        help="first seed; seeds S, S+1, ..., S+N-1 run (default: 1)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="SEED",
        help="run exactly this one seed (replay); overrides --seeds",
    )
    parser.add_argument(
        "--nodes", type=int, choices=(3, 5), default=3, help="cluster size (default: 3)"
    )
    parser.add_argument(
        "--ticks",
        type=int,
        default=300,
        metavar="T",
        help="length of the safety (fault) phase in Raft ticks (default: 300)",
    )
    parser.add_argument(
        "--bug",
        default=None,
        metavar="NAME",
        help="run with a deliberately seeded bug (see --list-bugs); the run "
        "is expected to find a violation",
    )
    parser.add_argument(
        "--workload",
        choices=WORKLOAD_KINDS,
        default=None,
        help="what the cluster replicates: 'kv', a key-value map checked for "
        "linearizability, or 'sched', the real scheduler state machine "
        "with submitters, workers (some stalling past their leases) and "
        "a leader-side ticker, checked for SPEC section 1's promises (no "
        "acknowledged job lost, fencing tokens, no double completion, "
        "equal replica state hashes, every job terminal after healing). "
        "Default: kv, or the workload a seeded bug needs",
    )
    parser.add_argument("--list-bugs", action="store_true", help="list the seeded bugs and exit")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="with --bug: run every seed instead of stopping at the first violation",
    )
    parser.add_argument(
        "--unordered-links",
        action="store_true",
        help="reorder every message (UDP-like) instead of FIFO links like the "
        "TCP transport; reordering then also happens outside chaos faults",
    )
    parser.add_argument(
        "--serial-host",
        action="store_true",
        help="drive each core with the serial host (a Ready that must be synced blocks "
        "everything until its fsync) instead of the default pipelined host that models "
        "the networked runtime (storage worker, overlapping Readys)",
    )
    parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="mixed",
        help="the founding configuration: all voters, 1 voter + learners, 2 voters + "
        "learners, or mixed (chosen per seed, mostly all voters; default)",
    )
    parser.add_argument(
        "--allow-unknown",
        action="store_true",
        help="do not fail when the linearizability checker gives up on a history (its time "
        "budget); such histories are reported as unknown, never as valid",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the readable event trace of every run (use with --seed)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="a short narrated run on 3 nodes: election, writes, a leader "
        "crash, re-election, a partition, healing, equal replica hashes",
    )
    return parser


def replay_command(
    result: RunResult,
    ticks: int,
    unordered_links: bool = False,
    *,
    serial_host: bool = False,
    topology: str = "mixed",
) -> str:
    """The command that replays `result` with a trace (works outside the venv)."""
    parts = ["scripts/sim", f"--seed {result.seed}", f"--nodes {result.nodes}"]
    if result.workload_kind != "kv":
        parts.append(f"--workload {result.workload_kind}")
    if ticks != 300:
        parts.append(f"--ticks {ticks}")
    if unordered_links:
        parts.append("--unordered-links")
    if serial_host:
        parts.append("--serial-host")
    if topology != "mixed":
        parts.append(f"--topology {topology}")
    if result.bug:
        parts.append(f"--bug {result.bug}")
    parts.append("--verbose")
    return " ".join(parts)


def _distinct(violations: list[str], limit: int) -> list[str]:
    """The first `limit` violations, each told once (the same finding on several nodes
    differs only in numbers: keep the first of each shape)."""
    seen: set[str] = set()
    out: list[str] = []
    for text in violations:
        shape = "".join("#" if c.isdigit() else c for c in text)
        if shape in seen:
            continue
        seen.add(shape)
        out.append(text)
        if len(out) == limit:
            break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)  # replay commands must stay on one line
    if args.list_bugs:
        for bug in BUGS.values():
            console.print(f"{bug.name:24} {bug.description}")
        return 0
    if args.demo:
        from .demo import run_demo  # noqa: PLC0415

        return run_demo(console)
    if args.bug is not None and args.bug not in BUGS:
        console.print(f"error: {UnknownBugError(args.bug)}", style="red")
        return EXIT_USAGE
    if args.bug is not None and args.workload == "kv" and BUGS[args.bug].workload != "kv":
        console.print(
            f"error: bug {args.bug} lives in the {BUGS[args.bug].workload} "
            "workload; drop --workload kv",
            style="red",
        )
        return EXIT_USAGE
    if args.seeds <= 0 or args.ticks <= 0:
        console.print("error: --seeds and --ticks must be positive", style="red")
        return EXIT_USAGE

    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.seed_start, args.seed_start + args.seeds))
    )
    stop_at_first = args.bug is not None and not args.keep_going
    results: list[RunResult] = []
    failures: list[RunResult] = []
    started = time.monotonic()
    sink = console.print if args.verbose else None
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=args.verbose or len(seeds) == 1,
        transient=True,
    ) as progress:
        task = progress.add_task("seeds", total=len(seeds), status="")
        for seed in seeds:
            config = SimConfig(
                seed=seed,
                nodes=args.nodes,
                safety_ticks=args.ticks,
                bug=args.bug,
                fifo_links=not args.unordered_links,
                workload_kind=args.workload,
                timings=HostTimings(pipelined=not args.serial_host),
                topology=args.topology,
            )
            result = run_seed(config, trace_sink=sink)
            results.append(result)
            if not result.ok:
                failures.append(result)
            progress.update(task, advance=1, status=f"{len(failures)} failing")
            if failures and stop_at_first:
                break

    elapsed = time.monotonic() - started
    unknown = [r for r in results if r.unknown]
    faults: dict[str, int] = {}
    for r in results:
        for kind, n in r.faults_by_kind.items():
            faults[kind] = faults.get(kind, 0) + n
    console.print(
        f"seeds {len(results)}  nodes {args.nodes}  bug {args.bug or 'none'}  "
        f"operations {sum(r.operations for r in results)}  "
        f"elections {sum(r.elections for r in results)}  "
        f"faults {sum(r.faults_injected for r in results)}  "
        f"membership changes {sum(r.membership_changes for r in results)}  "
        f"violations {len(failures)}  unknown {len(unknown)}  ({elapsed:.1f}s)"
    )
    sched = [r.sched for r in results if r.sched is not None]
    if sched:
        console.print(
            f"scheduler: submits acknowledged {sum(c.jobs_submitted for c in sched)}  "
            # A submit whose answer was lost may still have taken effect, so more jobs can
            # complete than were acknowledged.
            f"jobs completed {sum(c.jobs_completed for c in sched)}  "
            f"leases {sum(c.leases_granted for c in sched)}  "
            f"stale tokens refused {sum(c.stale_refused for c in sched)}  "
            f"lagging stamps {sum(c.lagging_stamps for c in sched)}"
        )
        console.print(
            f"scheduler: reads checked {sum(c.reads for c in sched)}  "
            f"bad tokens refused {sum(c.bad_tokens_refused for c in sched)}  "
            f"reused keys refused {sum(c.key_reuses_refused for c in sched)}  "
            f"queue reconfigurations {sum(c.queue_configs for c in sched)}  "
            f"backfills {sum(c.backfills for c in sched)}  "
            f"cron fires {sum(c.cron_fires for c in sched)}"
        )
    campaigns: dict[str, dict[str, int]] = {}
    for r in results:
        for phase, counts in r.campaigns.items():
            total = campaigns.setdefault(phase, {"votes": 0, "pre-votes": 0})
            for kind, n in counts.items():
                total[kind] += n
    if campaigns:
        console.print(
            "campaigns by phase: "
            + ", ".join(
                f"{phase} {c['votes']} elections / {c['pre-votes']} pre-votes"
                for phase, c in campaigns.items()
            )
        )
    if faults:
        console.print("faults by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    if len(seeds) == 1:
        console.print(f"trace hash {results[0].trace_hash}")

    def replay(r: RunResult) -> str:
        return replay_command(
            r,
            args.ticks,
            args.unordered_links,
            serial_host=args.serial_host,
            topology=args.topology,
        )

    for r in failures:
        console.print(f"[red]VIOLATION[/red] seed {r.seed}:")
        for text in _distinct(r.violations, 5):
            console.print(f"  - {text}")
        console.print(f"  replay: {replay(r)}")
    for r in unknown:
        console.print(
            f"[yellow]UNKNOWN[/yellow] seed {r.seed}: the linearizability checker gave up "
            f"(not counted as valid)  replay: {replay(r)}"
        )
    if failures:
        return EXIT_VIOLATION
    if unknown and not args.allow_unknown:
        console.print(
            f"{len(unknown)} histories unknown: failing (pass --allow-unknown to accept them)"
        )
        return EXIT_VIOLATION
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the scheduler state machine's apply, on one core, without Raft or I/O.

Measures, on a state machine holding `--jobs` pending jobs (default 1,000,000):
- submits/s: SubmitJobs commands of one job each (`--batch` > 1 also shows batched submits);
- leases/s and completes/s: Lease of one job each, then Complete of each leased job;
- lease cost at 10k pending vs at `--jobs` pending (must be within 2x: the pending index is a
  heap, so a lease costs O(log n));
- memory per million pending jobs: RSS growth while the jobs were submitted (commands are built
  and dropped in chunks, so only what the state keeps is counted), scaled to 1M. The shallow
  state of the depth comparison is measured and freed first, so the big one may reuse up to its
  ~25 MiB: the figure can be low by that much.

Commands are built before the clock starts (parsing and decoding are not apply); every apply
gets a fresh index and a stamp that advances 1 ms per 100 commands. The garbage collector stays
on; everything is measured twice, with Python's default collection thresholds and with the
thresholds the runtime should use (GC_MODES). Rates are per CPU second of this process
(time.process_time), so other processes sharing the machine distort them less; wall-clock rates
are recorded too.
Prints a table and writes bench/results/sched_apply.json.

    python -m bench.sched_apply            # 1M jobs, a minute or two
    python -m bench.sched_apply --quick    # 100k jobs, smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.machine import cpu_name
from raftsched.sched import (
    Complete,
    JobSpec,
    Lease,
    Ok,
    SchedulerState,
    SubmitJobs,
    WorkerHeartbeat,
)
from raftsched.sched.limits import Limits

CHUNK = 10_000
IN_FLIGHT = 1_000
LEASE_SAMPLE = 20_000
RESULTS = Path(__file__).parent / "results" / "sched_apply.json"
START_MS = 1_700_000_000_000


class Driver:
    """Feeds commands with increasing indexes and stamps, like committed Raft entries."""

    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        self.index = 0
        self.wall_s = 0.0  # wall time of all runs, for the record

    def run(self, commands: list[Any],
            extract: Callable[[Any], Any] = lambda r: None) -> tuple[float, list[Any]]:
        """Apply all; returns (CPU seconds, [extract(result)...]).

        Results are held only for one window of `IN_FLIGHT` commands, like a server that
        answers its requests and forgets them; `extract` runs outside the timed part."""
        apply = self.state.apply
        elapsed, kept = 0.0, list[Any]()
        for start in range(0, len(commands), IN_FLIGHT):
            index = self.index
            window = []
            w0, t0 = time.perf_counter(), time.process_time()
            for cmd in commands[start:start + IN_FLIGHT]:
                index += 1
                window.append(apply(cmd, index, START_MS + index // 100))
            elapsed += time.process_time() - t0
            self.wall_s += time.perf_counter() - w0
            self.index = index
            kept.extend(extract(r) for r in window)
        return elapsed, kept


def submit_chunks(total: int, batch: int, prefix: str) -> Iterator[list[SubmitJobs]]:
    n = 0
    while n < total:
        chunk = []
        for _ in range(min(CHUNK, total - n) // batch or 1):
            chunk.append(SubmitJobs(jobs=tuple(
                JobSpec(id=f"{prefix}{n + k}", queue="q", payload={"n": n + k})
                for k in range(batch))))
            n += batch
        yield chunk


def rss_bytes() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


def fill(driver: Driver, total: int, batch: int, prefix: str) -> tuple[float, int]:
    """Submit `total` jobs; returns (apply seconds, jobs submitted)."""
    seconds, count = 0.0, 0
    for chunk in submit_chunks(total, batch, prefix):
        elapsed, oks = driver.run(chunk, lambda r: isinstance(r, Ok))
        assert all(oks)
        seconds += elapsed
        count += len(chunk) * batch
    return seconds, count


def lease_and_complete(driver: Driver, count: int) -> tuple[float, float]:
    """`count` single-job leases then their completes; returns (lease s, complete s)."""
    driver.run([WorkerHeartbeat(worker_id="bench", capacity=10**9, ttl_ms=10**12)])
    lease_s, grants = driver.run([Lease(queue="q", worker_id="bench") for _ in range(count)],
                                 lambda r: r.value["leases"])
    completes = []
    for granted in grants:
        assert len(granted) == 1, granted
        completes.append(Complete(job_id=granted[0]["job_id"], token=granted[0]["token"]))
    complete_s, oks = driver.run(completes, lambda r: isinstance(r, Ok))
    assert all(oks)
    return lease_s, complete_s


GC_MODES = {
    # Python's defaults (700, 10, 10): a young collection every ~700 container allocations.
    "default": (700, 10, 10),
    # What the runtime should set (with gc.freeze() after loading a snapshot): the state holds
    # millions of long-lived objects and no reference cycles, so frequent young collections
    # only re-walk survivors; fewer, larger ones cost a third as much per apply.
    "tuned": (50_000, 20, 100),
}


def measure(total: int, batch: int, gc_mode: str) -> dict[str, float]:
    gc.collect()
    gc.set_threshold(*GC_MODES[gc_mode])
    sample = min(LEASE_SAMPLE, total // 5)
    limits = Limits(max_jobs_per_queue=10 * total + 100_000)
    # 1. leases on a shallow queue (10k pending), alone in memory, for the depth comparison.
    small = Driver(SchedulerState(limits))
    fill(small, 10_000 + sample, 1, "s")
    lease_small_s, _ = lease_and_complete(small, sample)
    del small
    gc.collect()
    # 2. submits, one job per command, into a fresh state; RSS growth = memory of the state.
    big = Driver(SchedulerState(limits))
    rss0 = rss_bytes()
    submit_s, submitted = fill(big, total, 1, "j")
    submit_wall_s = big.wall_s
    rss_per_million = (rss_bytes() - rss0) * 1_000_000 / submitted
    # 3. leases and completes at full depth.
    lease_big_s, complete_big_s = lease_and_complete(big, sample)
    # 4. batched submits (same state, more jobs).
    batch_s, batched = fill(big, min(total, 200_000), batch, "b")
    del big
    gc.set_threshold(*GC_MODES["default"])
    return {
        "submits_per_s": submitted / submit_s,
        "submits_per_wall_s": submitted / submit_wall_s,
        "batched_jobs_per_s": batched / batch_s,
        "leases_per_s": sample / lease_big_s,
        "completes_per_s": sample / complete_big_s,
        "lease_us_at_10k": lease_small_s / sample * 1e6,
        "lease_us_at_depth": lease_big_s / sample * 1e6,
        "lease_cost_ratio": lease_big_s / lease_small_s,
        "rss_mib_per_million_jobs": rss_per_million / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100k jobs")
    parser.add_argument("--batch", type=int, default=100, help="jobs per batched submit")
    parser.add_argument("--gc", choices=[*GC_MODES, "both"], default="both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.jobs < 20_000 or args.batch <= 0:
        parser.error("--jobs must be at least 20000 and --batch positive")
    total = 100_000 if args.quick else args.jobs
    modes = list(GC_MODES) if args.gc == "both" else [args.gc]
    results = {mode: measure(total, args.batch, mode) for mode in modes}
    load_average = os.getloadavg()
    machine: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(),
               "python": platform.python_version(), "platform": platform.platform(),
               "load_average": load_average}
    print(f"scheduler apply, {total:,} pending jobs, one core ({machine['cpu']}, "
          f"load average {load_average[0]:.1f})")
    print(f"  {'gc thresholds':<34}" + "".join(f"{GC_MODES[m]!s:>18}" for m in modes))
    lines = [
        ("submits/s (1 job per command)", "submits_per_s", ",.0f"),
        ("  per wall-clock s", "submits_per_wall_s", ",.0f"),
        (f"jobs/s in batches of {args.batch}", "batched_jobs_per_s", ",.0f"),
        ("leases/s", "leases_per_s", ",.0f"),
        ("completes/s", "completes_per_s", ",.0f"),
        ("lease us at 10k pending", "lease_us_at_10k", ".2f"),
        (f"lease us at {total:,} pending", "lease_us_at_depth", ".2f"),
        ("  ratio (must be < 2)", "lease_cost_ratio", ".2f"),
        ("MiB per million pending jobs", "rss_mib_per_million_jobs", ",.0f"),
    ]
    for label, key, fmt in lines:
        print(f"  {label:<34}" + "".join(f"{results[m][key]:>18{fmt}}" for m in modes))
    out = {"jobs_pending": total, "batch_size": args.batch,
           "rates_are_per": "CPU second of this process (time.process_time), one core",
           "gc_thresholds": {m: GC_MODES[m] for m in modes}, "results": results,
           "machine": machine}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

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

Then the worst single apply (wall-clock ms of one entry, issue 7: the goal is none over 10 ms at
1M jobs), under the runtime's GC policy (raftsched/server/gc_policy.py, called after every
entry): first while `--jobs` pending jobs are submitted one per entry (the job table's growth:
a Python dict copies its table when it grows), then on that state for each burst of due work
and each pathological shape the old code had: 300,000 jobs sharing one run_at, 100,000 leases
and 100 workers' leases expiring together, 200,000 cancelled jobs before the next lease (stale
heaps), 50 fire_all schedules after a 30-day outage (cron catch-up), 100,000 retained jobs
removed at once, keyed commands on a full-ish idempotency table. Each burst is applied the way
the leader would: one entry, then Ticks while `has_due_work`; the entries it took are reported
too. Burst sizes shrink with `--jobs` (never above it). Columns: wall ms (inflated by other
processes on a shared machine), CPU ms of the apply (with the policy's collections and
freezes), and CPU ms minus the garbage collections that ran inside it. At the end, one thaw
(unfreeze and a full collection) reports what the freezing leaked and what a thaw costs.

Commands are built before the clock starts (parsing and decoding are not apply); every apply
gets a fresh index and a stamp that advances 1 ms per 100 commands. The garbage collector stays
on; the rates are measured twice, with Python's default collector and under the runtime's
policy (GC_MODES). Rates are per CPU second of this process
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
    AcceptClockJump,
    Cancel,
    Complete,
    DeleteSchedule,
    JobSpec,
    JobTemplate,
    Lease,
    Ok,
    PutSchedule,
    SchedulerState,
    SubmitJobs,
    Tick,
    WorkerHeartbeat,
)
from raftsched.sched.limits import Limits
from raftsched.server.gc_policy import DEFAULT_THRESHOLDS, GcPolicy

CHUNK = 10_000
IN_FLIGHT = 1_000
LEASE_SAMPLE = 20_000
RESULTS = Path(__file__).parent / "results" / "sched_apply.json"
START_MS = 1_700_000_000_000


def _nothing(_apply_s: float) -> None:
    pass


class Driver:
    """Feeds commands with increasing indexes and stamps, like committed Raft entries."""

    def __init__(self, state: SchedulerState, policy: GcPolicy | None = None) -> None:
        self.state = state
        self.index = 0
        self.wall_s = 0.0  # wall time of all runs, for the record
        # The runtime calls the policy after each slice of applied entries (timed: its cost
        # is part of apply's).
        self.after_slice = policy.after_apply if policy is not None else _nothing

    def run(
        self, commands: list[Any], extract: Callable[[Any], Any] = lambda r: None
    ) -> tuple[float, list[Any]]:
        """Apply all; returns (CPU seconds, [extract(result)...]).

        Results are held only for one window of `IN_FLIGHT` commands, like a server that
        answers its requests and forgets them; `extract` runs outside the timed part."""
        apply = self.state.apply
        elapsed, kept = 0.0, list[Any]()
        for start in range(0, len(commands), IN_FLIGHT):
            index = self.index
            window = []
            w0, t0 = time.perf_counter(), time.process_time()
            for cmd in commands[start : start + IN_FLIGHT]:
                index += 1
                window.append(apply(cmd, index, START_MS + index // 100))
            self.after_slice(time.process_time() - t0)
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
            chunk.append(
                SubmitJobs(
                    jobs=tuple(
                        JobSpec(id=f"{prefix}{n + k}", queue="q", payload={"n": n + k})
                        for k in range(batch)
                    )
                )
            )
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
    lease_s, grants = driver.run(
        [Lease(queue="q", worker_id="bench") for _ in range(count)], lambda r: r.value["leases"]
    )
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
    # The runtime's policy (raftsched/server/gc_policy.py): its thresholds, and the survivors
    # of each middle collection frozen after the next slice of applied entries.
    "runtime": DEFAULT_THRESHOLDS,
}


def measure(total: int, batch: int, gc_mode: str) -> dict[str, float]:
    gc.collect()
    policy = GcPolicy(GC_MODES[gc_mode]) if gc_mode == "runtime" else None
    if policy is not None:
        policy.install()
    else:
        gc.set_threshold(*GC_MODES[gc_mode])
    sample = min(LEASE_SAMPLE, total // 5)
    limits = Limits(max_jobs_per_queue=10 * total + 100_000)
    # 1. leases on a shallow queue (10k pending), alone in memory, for the depth comparison.
    small = Driver(SchedulerState(limits), policy)
    fill(small, 10_000 + sample, 1, "s")
    lease_small_s, _ = lease_and_complete(small, sample)
    del small
    gc.collect()
    # 2. submits, one job per command, into a fresh state; RSS growth = memory of the state.
    big = Driver(SchedulerState(limits), policy)
    rss0 = rss_bytes()
    submit_s, submitted = fill(big, total, 1, "j")
    submit_wall_s = big.wall_s
    rss_per_million = (rss_bytes() - rss0) * 1_000_000 / submitted
    # 3. leases and completes at full depth.
    lease_big_s, complete_big_s = lease_and_complete(big, sample)
    # 4. batched submits (same state, more jobs).
    batch_s, batched = fill(big, min(total, 200_000), batch, "b")
    del big
    if policy is not None:
        policy.uninstall()
    gc.set_threshold(*GC_MODES["default"])
    gc.unfreeze()
    gc.collect()
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


class Worst:
    """Applies entries one at a time, timing each (wall clock: one apply is short and the
    question is how long a replica's event loop is held)."""

    def __init__(self, state: SchedulerState, now_ms: int, policy: GcPolicy) -> None:
        self.state = state
        self.policy = policy
        self.index = state.last_index
        self.now_ms = now_ms
        self.worst_ms = 0.0
        self.worst_cpu_ms = 0.0
        self.worst_no_gc_ms = 0.0  # CPU of the apply minus the garbage collections inside it
        self._gc_ms = 0.0
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.process_time()
        else:
            self._gc_ms += (time.process_time() - self._gc_start) * 1000

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def apply(self, cmd: Any) -> Any:
        self.index += 1
        self._gc_ms = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        result = self.state.apply(cmd, self.index, self.now_ms)
        # The runtime calls it after each slice of entries (here: each entry, the worst case).
        self.policy.after_apply(time.process_time() - c0)
        cpu_ms = (time.process_time() - c0) * 1000
        self.worst_cpu_ms = max(self.worst_cpu_ms, cpu_ms)
        self.worst_no_gc_ms = max(self.worst_no_gc_ms, cpu_ms - self._gc_ms)
        self.worst_ms = max(self.worst_ms, (time.perf_counter() - t0) * 1000)
        return result

    def settle(self) -> int:
        ticks = 0
        while self.state.has_due_work(self.now_ms):
            self.apply(Tick())
            ticks += 1
        return ticks

    def burst(
        self, setup: Callable[[Worst], None], trigger: Callable[[Worst], None]
    ) -> dict[str, float]:
        """Run `setup` (not timed), then `trigger` and the Ticks it needs (timed)."""
        setup(self)
        self.settle()
        # No collect or freeze here: the runtime's GC policy runs throughout, as on a node.
        self.worst_ms = self.worst_cpu_ms = self.worst_no_gc_ms = 0.0
        t0 = time.perf_counter()
        first = self.index
        trigger(self)
        self.settle()
        entries = self.index - first  # the trigger's entries and the Ticks after them
        return {
            "worst_apply_ms": self.worst_ms,
            "worst_apply_cpu_ms": self.worst_cpu_ms,
            "worst_apply_cpu_ms_without_gc": self.worst_no_gc_ms,
            "entries": entries,
            "total_s": time.perf_counter() - t0,
        }


def _submit_many(w: Worst, n: int, prefix: str, queue: str, **kw: Any) -> None:
    for start in range(0, n, 1_000):
        w.apply(
            SubmitJobs(
                jobs=tuple(
                    JobSpec(id=f"{prefix}{i}", queue=queue, **kw)
                    for i in range(start, min(n, start + 1_000))
                )
            )
        )


def worst_applies(total: int) -> dict[str, dict[str, Any]]:
    limits = Limits(max_jobs_per_queue=10 * total + 10**6, max_batch_jobs=1_000)
    policy = GcPolicy()
    policy.install()
    w = Worst(SchedulerState(limits), START_MS, policy)
    out: dict[str, dict[str, Any]] = {}

    def background(w: Worst) -> None:
        # The background, `total` pending jobs, one per entry: also the worst apply while the
        # job table grows (a dict doubles its table at 2/3 full: one apply pays the copy).
        for i in range(total):
            w.apply(SubmitJobs(jobs=(JobSpec(id=f"bg{i}", queue="bulk"),)))

    out["growth_to_total_single_submits"] = w.burst(lambda w: None, background)
    scale = min(1.0, total / 1_000_000)
    n_run_at, n_leases = int(300_000 * scale), int(100_000 * scale)
    n_stale, n_retained = int(200_000 * scale), int(100_000 * scale)

    def run_at_setup(w: Worst) -> None:
        _submit_many(w, n_run_at, "r", "burst", run_at_ms=w.now_ms + 1_000)

    def run_at_trigger(w: Worst) -> None:
        w.now_ms += 1_000
        w.apply(Tick())

    out["promote_one_run_at"] = w.burst(run_at_setup, run_at_trigger)

    def leases_setup(w: Worst) -> None:
        _submit_many(w, n_leases, "l", "exp", lease_ms=5_000)
        for k in range(max(1, n_leases // 1_000)):
            w.apply(WorkerHeartbeat(worker_id=f"big{k}", capacity=1_000, ttl_ms=10**12))
            w.apply(Lease(queue="exp", worker_id=f"big{k}", max_jobs=1_000))

    def leases_trigger(w: Worst) -> None:
        w.now_ms += 5_000
        w.apply(Tick())

    out["lease_expiry_together"] = w.burst(leases_setup, leases_trigger)

    def workers_setup(w: Worst) -> None:
        _submit_many(w, 100 * 1_000, "wk", "wq", lease_ms=10**9)
        for k in range(100):
            w.apply(WorkerHeartbeat(worker_id=f"w{k}", capacity=1_000, ttl_ms=2_000))
            w.apply(Lease(queue="wq", worker_id=f"w{k}", max_jobs=1_000))

    def workers_trigger(w: Worst) -> None:
        w.now_ms += 2_000
        w.apply(Tick())

    out["worker_expiry_100x1000"] = w.burst(workers_setup, workers_trigger)

    def stale_setup(w: Worst) -> None:
        _submit_many(w, n_stale, "st", "stale")
        _submit_many(w, 1, "live", "stale")
        for i in range(n_stale):
            w.apply(Cancel(job_id=f"st{i}"))

    def stale_trigger(w: Worst) -> None:
        w.apply(Lease(queue="stale", worker_id="x", max_jobs=1))

    out["lease_after_cancels"] = w.burst(stale_setup, stale_trigger)

    def cron_setup(w: Worst) -> None:
        for k in range(50):
            w.apply(
                PutSchedule(
                    name=f"c{k}",
                    cron="* * * * *",
                    template=JobTemplate(queue="cron"),
                    misfire="fire_all",
                    misfire_cap=1_000,
                )
            )

    def cron_trigger(w: Worst) -> None:
        w.now_ms += 30 * 86_400_000  # the cluster was down for 30 days; an admin accepts it
        w.apply(AcceptClockJump(to_ms=w.now_ms))

    out["cron_catch_up_50_fire_all"] = w.burst(cron_setup, cron_trigger)
    for k in range(50):  # or they keep firing through the next bursts
        w.apply(DeleteSchedule(name=f"c{k}"))

    def retained_setup(w: Worst) -> None:
        _submit_many(w, n_retained, "rt", "ret")
        for i in range(n_retained):
            w.apply(Cancel(job_id=f"rt{i}"))

    def retained_trigger(w: Worst) -> None:
        w.now_ms += w.state.limits.retention_ms + 1
        w.apply(Tick())

    out["retention_removal"] = w.burst(retained_setup, retained_trigger)

    def keyed_setup(w: Worst) -> None:
        _submit_many(w, 10_000, "k", "keyed", payload="x" * 1_000)

    def keyed_trigger(w: Worst) -> None:
        for i in range(10_000):
            w.apply(
                SubmitJobs(jobs=(JobSpec(id=f"kk{i}", queue="keyed2"),), idempotency_key=f"s{i}")
            )
        for i in range(10):
            w.apply(
                Lease(queue="keyed", worker_id=f"kw{i}", max_jobs=1_000, idempotency_key=f"l{i}")
            )
            w.apply(
                Lease(queue="keyed", worker_id=f"kw{i}", max_jobs=1_000, idempotency_key=f"l{i}")
            )

    out["keyed_commands"] = w.burst(keyed_setup, keyed_trigger)
    w.close()
    # What the policy's freezing leaked (cycles frozen while alive: none expected from the
    # state machine) and what a thaw costs at this size (the runtime thaws only where it
    # already pauses as long: loading a snapshot).
    leaked = policy.thaw()
    stats = policy.stats
    out["gc"] = {
        "collections": stats.collections,
        "max_pause_ms": [p * 1000 for p in stats.max_pause_s],
        "freezes": stats.freezes,
        "leaked_objects_found_by_thaw": leaked,
        "thaw_objects": stats.last_thaw_objects,
        "thaw_ms": stats.last_thaw_s * 1000,
    }
    policy.uninstall()
    gc.unfreeze()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    worst = worst_applies(total)
    gc_stats = worst.pop("gc")
    load_average = os.getloadavg()
    machine: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average,
    }
    print(
        f"scheduler apply, {total:,} pending jobs, one core ({machine['cpu']}, "
        f"load average {load_average[0]:.1f})"
    )
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
    print(f"worst single apply on {total:,} pending jobs (runtime gc policy; goal: under 10 ms)")
    print(f"  {'burst':<30}{'wall ms':>9}{'cpu ms':>9}{'no gc':>9}{'entries':>11}{'total s':>9}")
    for name, row in worst.items():
        print(
            f"  {name:<30}{row['worst_apply_ms']:>9.2f}{row['worst_apply_cpu_ms']:>9.2f}"
            f"{row['worst_apply_cpu_ms_without_gc']:>9.2f}{row['entries']:>11,.0f}"
            f"{row['total_s']:>9.2f}"
        )
    pauses = ", ".join(f"{ms:.1f}" for ms in gc_stats["max_pause_ms"])
    print(
        f"  gc under the runtime policy: collections {gc_stats['collections']}, longest pause "
        f"per generation {pauses} ms, {gc_stats['freezes']} freezes; a thaw at this size "
        f"took {gc_stats['thaw_ms']:.0f} ms and found {gc_stats['leaked_objects_found_by_thaw']}"
        " leaked objects"
    )
    out = {
        "jobs_pending": total,
        "batch_size": args.batch,
        "rates_are_per": "CPU second of this process (time.process_time), one core",
        "gc_thresholds": {m: GC_MODES[m] for m in modes},
        "results": results,
        "worst_single_apply": worst,
        "gc_policy": gc_stats,
        "machine": machine,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Linearizability of the queue with leases, checked job by job.

Theory of operation. raftsched/sim/linearizability.py (Wing & Gong's search with Lowe's
memo, INFO operations handled soundly) runs once per job on that job's sub-history, with the
per-job model of jepsen/models.py (a set of possible job states, closed under lease expiry
and the end of backoff).

Which partition is sound. Herlihy & Wing's locality says a history is linearizable iff each
object's sub-history is, when every operation touches exactly one object. Most queue
operations name their job (submit, heartbeat, complete, fail, read, and a lease that
returned a job). Two do not:
  - a lease answered "no work" touches the whole queue: it claims no job was leasable. Per
    job we cannot check that (nor should we naively: a worker at its capacity, a queue at
    max_in_flight or a job in backoff all give "no work" legitimately). Such leases are left
    out. Leaving operations out only removes constraints, so every violation still found is
    real; what is lost is detecting a "no work" answer while a job was certainly pending.
  - an indeterminate lease (info, or never completed) may have leased any one job of its
    queue, or none. It is put into EVERY job partition of its queue as an indeterminate
    lease with an unknown token. Each partition may use it or not, independently; in reality
    one lease (max_jobs 1) takes at most one job, so this too only relaxes: sound, slightly
    less complete. All indeterminate leases of a queue look identical in a partition (their
    input is empty), so the search tries only the earliest unused one (its twin rule). One
    invoked after its job was certainly terminal is left out of that job (`_terminal_from`).
Soundness in one line: a linearization of the whole history, projected on job J, is a legal
run of J's model (which allows everything the real queue allows for J), so a job found not
linearizable proves the whole history is not.

Not checked here: the order in which a queue hands out jobs (priority, then oldest first),
"no work" answers, max_in_flight and worker capacity; the other checkers cover tokens, double
completion, lost jobs and convergence directly.

final-read operations are reads (they are linearizable GETs too) and are checked with the
rest. FAIL operations certainly did not happen and are dropped. Each job's search has a time
limit; a job that runs out makes the verdict unknown, never a wrong answer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from jepsen.history import Op
from jepsen.models import TERMINAL_STATES, JobModel
from raftsched.sim.history import Event, EventType
from raftsched.sim.linearizability import check_history

from .jobs import Pair, pairs_of
from .result import CheckResult

__all__ = ["check_linearizable", "job_events"]

# Budget for the whole check, and for any one job (a job can never take the whole budget).
TIME_LIMIT_S = 60.0
JOB_TIME_LIMIT_S = 10.0
# How many failing jobs the details spell out (all are counted).
FAILURES_SHOWN_MAX = 10

_CHECKED_FS = frozenset({"submit", "lease", "heartbeat", "complete", "fail", "read", "final-read"})
# Client ops that are not about jobs: not counted as left out.
_NOT_MODELLED_QUIETLY = frozenset({"state-hash"})


def _has_state(pair: Pair) -> bool:
    """An ok read's answer must say the state (null for not found); anything else is a
    recording mistake the model must not read as "not found"."""
    return (
        pair.done is not None and isinstance(pair.done.value, dict) and ("state" in pair.done.value)
    )


def _invoke_value(pair: Pair) -> tuple[Any, ...]:
    """The model's invoke value (see jepsen/models.py for the shapes)."""
    f = pair.f
    if f == "submit":
        max_attempts = pair.arg("max_attempts")
        return (max_attempts if isinstance(max_attempts, int) else 0,)
    if f in ("heartbeat", "complete"):
        return (pair.token if pair.token is not None else -1,)
    if f == "fail":
        retryable = pair.arg("retryable")
        return (pair.token if pair.token is not None else -1, retryable is not False)
    return ()  # lease, read


def _ok_value(pair: Pair) -> tuple[Any, ...]:
    if pair.f == "lease":
        attempt = pair.result("attempt")
        valid_attempt = isinstance(attempt, int) and not isinstance(attempt, bool)
        return (
            pair.token if pair.token is not None else -1,
            attempt if valid_attempt else -1,
        )
    if pair.f in ("read", "final-read"):
        state = pair.result("state")
        token = pair.result("token")
        attempts = pair.result("attempts")
        return (
            state if isinstance(state, str) else None,
            token if isinstance(token, int) else 0,
            attempts if isinstance(attempts, int) else 0,
        )
    return ()


def _events_of(pair: Pair, *, job_id: str) -> list[tuple[int, Event]]:
    """The pair as the search's events, keyed by history index. Each operation gets its own
    process number (its invoke index): the search needs one op per process at a time, and
    real-time order comes from event positions, not processes."""
    f = "read" if pair.f == "final-read" else pair.f
    process = pair.invoke.index
    events = [
        (
            pair.invoke.index,
            Event(
                process=process,
                type=EventType.INVOKE,
                f=f,
                key=job_id,
                value=_invoke_value(pair),
                time=pair.invoke.time_ns,
            ),
        )
    ]
    done = pair.done
    if done is not None and done.type == "ok":
        events.append(
            (
                done.index,
                Event(
                    process=process,
                    type=EventType.OK,
                    f=f,
                    key=job_id,
                    value=_ok_value(pair),
                    time=done.time_ns,
                ),
            )
        )
    # info and never-completed: the invoke alone (the search treats both the same way).
    return events


def _terminal_from(pairs: Sequence[Pair]) -> dict[str, int]:
    """job -> the first history index by which it was certainly terminal: the return of an
    ok complete (first or repeated: either way the job succeeded) or of an ok read showing a
    terminal state. An indeterminate lease invoked later cannot have leased that job in any
    linearization (the model has no way out of succeeded or dead), so leaving it out of the
    job's partition loses nothing; it only saves the search work. (An ok non-retryable fail
    does not count: it may be a repeat of a retryable fail, acknowledged with no change.)"""
    ended: dict[str, int] = {}
    for pair in pairs:
        job, end = pair.job_id, pair.end
        if job is None or end is None or not pair.ok:
            continue
        final = pair.f == "complete" or (
            pair.f in ("read", "final-read") and pair.result("state") in TERMINAL_STATES
        )
        if final and end < ended.get(job, end + 1):
            ended[job] = end
    return ended


def job_events(ops: Sequence[Op]) -> tuple[dict[str, list[Event]], dict[str, int]]:
    """Each job's sub-history for the search, and counts of what was left out and why."""
    dropped: dict[str, int] = defaultdict(int)
    pairs: list[Pair] = []
    for pair in pairs_of(ops):
        if pair.f not in _CHECKED_FS:
            if pair.f not in _NOT_MODELLED_QUIETLY:
                dropped[f"f={pair.f} not in the model"] += 1
            continue
        if pair.ok and pair.f in ("read", "final-read") and not pair.has_state:
            dropped["read answer without a state field"] += 1
            continue
        pairs.append(pair)
    queue_of: dict[str, str] = {}
    for pair in pairs:
        queue = pair.arg("queue")
        if pair.f == "submit" and pair.job_id is not None and isinstance(queue, str):
            queue_of.setdefault(pair.job_id, queue)
    per_job: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    unknown_leases: list[Pair] = []
    for pair in pairs:
        if pair.outcome == "fail":
            dropped["failed (certainly did not happen)"] += 1
            continue
        if pair.f == "lease" and not pair.ok:
            unknown_leases.append(pair)
            continue
        job = pair.job_id
        if job is None:
            reason = "lease answered no work" if pair.f == "lease" else f"{pair.f} without job"
            dropped[reason] += 1
            continue
        per_job[job].extend(_events_of(pair, job_id=job))
    ended_at = _terminal_from(pairs)
    for lease in unknown_leases:
        queue = lease.arg("queue")
        for job, items in per_job.items():
            if queue_of.get(job, queue) != queue:
                continue
            if lease.start > ended_at.get(job, len(ops)):
                dropped["indeterminate lease after its job ended"] += 1
                continue
            items.extend(_events_of(lease, job_id=job))
    events = {
        job: [event for _, event in sorted(items, key=lambda item: item[0])]
        for job, items in per_job.items()
    }
    return events, dict(dropped)


def check_linearizable(
    ops: Sequence[Op],
    *,
    time_limit_s: float = TIME_LIMIT_S,
    job_time_limit_s: float = JOB_TIME_LIMIT_S,
) -> CheckResult:
    """Is the history linearizable, job by job? See the module docstring."""
    started = time.monotonic()
    events, dropped = job_events(ops)
    model = JobModel()
    invalid: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    skipped: list[str] = []
    for job in sorted(events):
        left_s = time_limit_s - (time.monotonic() - started)
        if left_s <= 0:
            skipped.append(job)
            continue
        result = check_history(events[job], model, time_limit_s=min(job_time_limit_s, left_s))
        if result.ok is None:
            unknown.append({"job_id": job, "message": result.explanation})
        elif not result.ok:
            # The search's process numbers are the ops' invoke indexes in the history.
            invalid.append(
                {
                    "job_id": job,
                    "explanation": result.explanation,
                    "ops": sorted(
                        {op.process for op in (*result.unlinearizable, *result.longest_prefix)}
                    ),
                    "unlinearizable_ops": [op.process for op in result.unlinearizable],
                }
            )
    elapsed_s = time.monotonic() - started
    details: dict[str, Any] = {
        "jobs": len(events),
        "operations": sum(
            1 for job_events_ in events.values() for e in job_events_ if e.type is EventType.INVOKE
        ),
        "left_out": dropped,
        "elapsed_s": round(elapsed_s, 3),
        "time_limit_s": time_limit_s,
        "invalid_jobs": len(invalid),
        "failures": invalid[:FAILURES_SHOWN_MAX],
        "unknown_jobs": [item["job_id"] for item in unknown] + skipped,
        "unknown": unknown[:FAILURES_SHOWN_MAX],
        "not_checked": [
            "queue order (priority, oldest first)",
            "'no work' lease answers",
            "max_in_flight and worker capacity",
        ],
    }
    if invalid:
        jobs = ", ".join(item["job_id"] for item in invalid[:FAILURES_SHOWN_MAX])
        first = invalid[0]["explanation"].splitlines()
        return CheckResult(
            valid=False,
            message=f"{len(invalid)} job(s) not linearizable: {jobs}; first: {first[0]}",
            details=details,
        )
    if unknown or skipped:
        return CheckResult(
            valid=None,
            message=(
                f"unknown: {len(unknown) + len(skipped)} of {len(events)} job(s) not decided "
                f"within the time limit ({time_limit_s}s total, {job_time_limit_s}s per job)"
            ),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"linearizable: {len(events)} job(s) checked in {elapsed_s:.2f}s",
        details=details,
    )

"""A queue hands out its oldest pending job first (SPEC §4: highest priority, then oldest).

The linearizability check splits the queue by job, so it cannot see the order between jobs;
this check looks at it directly, conservatively. It only judges jobs submitted without a
priority, a run time, a delay or dependencies (the queue workload's), which all share one
priority, so the rule is: a lease takes the pending job with the smallest creation `seq`.

For an ok lease L of queue q that returned job J2, a job J1 of q is certainly older and
certainly pending at L's linearization point when:
  - J1's submit returned ok before J2's submit was invoked (so seq(J1) < seq(J2): a job's seq
    is its creation order, and J1's creation was applied first), and before L was invoked
    (J1 existed and was pending before L's point: it was never leased yet, see next);
  - no ok lease naming J1 was invoked before L returned (J1 was not leased before L's point,
    so it was still pending -- nothing else takes a pending job away in this workload).
Indeterminate leases of q invoked before L returned may each have taken one such J1 unseen.
So if more candidates J1 exist than those indeterminate leases, at least one older job was
pending when L took J2: a violation, with L and the older jobs named.

Not judged: "no work" answers (a worker at capacity or a queue at max_in_flight explains
them, and the history does not show either), jobs with priorities or delays.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from jepsen.history import Op

from .jobs import Pair, pairs_of
from .result import CheckResult

__all__ = ["check_queue_order"]

SHOWN_MAX = 20
# Submit fields that change a job's place in its queue: such jobs are not judged.
ORDER_FIELDS = ("priority", "run_at", "delay_ms", "depends_on")


def _plain_submit(pair: Pair) -> bool:
    return all(pair.arg(name) in (None, 0, []) for name in ORDER_FIELDS)


def check_queue_order(ops: Sequence[Op]) -> CheckResult:
    pairs = pairs_of(ops)
    submits: dict[str, Pair] = {}  # job -> its first ok submit
    plain: dict[str, bool] = {}
    queue_of: dict[str, str] = {}
    for pair in pairs:
        if pair.f != "submit" or pair.job_id is None:
            continue
        queue = pair.arg("queue")
        if isinstance(queue, str):
            queue_of.setdefault(pair.job_id, queue)
        plain[pair.job_id] = plain.get(pair.job_id, True) and _plain_submit(pair)
        if pair.ok:
            submits.setdefault(pair.job_id, pair)
    first_submit_invoke: dict[str, int] = {}
    for pair in pairs:
        if pair.f == "submit" and pair.job_id is not None:
            first_submit_invoke.setdefault(pair.job_id, pair.start)
    leases = [p for p in pairs if p.f == "lease" and p.outcome != "fail"]
    ok_leases_of: dict[str, list[Pair]] = defaultdict(list)
    unknown_by_queue: dict[str, list[Pair]] = defaultdict(list)
    for lease in leases:
        if lease.ok and lease.job_id is not None:
            ok_leases_of[lease.job_id].append(lease)
        elif not lease.ok:
            unknown_by_queue[str(lease.arg("queue"))].append(lease)
    jobs_by_queue: dict[str, list[str]] = defaultdict(list)
    for job, queue in queue_of.items():
        if job in submits and plain.get(job, False):
            jobs_by_queue[queue].append(job)
    violations: list[dict[str, Any]] = []
    judged = 0
    for lease in leases:
        taken = lease.job_id
        if not lease.ok or taken is None or not plain.get(taken, False):
            continue
        queue = str(lease.arg("queue"))
        taken_invoked = first_submit_invoke.get(taken)
        end = lease.end
        assert end is not None
        if taken_invoked is None:
            continue
        judged += 1
        older = []
        for job in jobs_by_queue.get(queue, []):
            submit = submits[job]
            submit_end = submit.end
            assert submit_end is not None
            if job == taken or submit_end > taken_invoked or submit_end > lease.start:
                continue
            if any(other.start < end for other in ok_leases_of[job]):
                continue  # it may have been leased before L's point
            older.append(job)
        unseen = [u for u in unknown_by_queue.get(queue, []) if u.start < end]
        if len(older) > len(unseen):
            older.sort(key=lambda job: submits[job].start)
            violations.append(
                {
                    "queue": queue,
                    "job_id": taken,
                    "kind": "a younger job leased while an older one was pending",
                    "older_pending": older[:SHOWN_MAX],
                    "ops": lease.ops() + submits[older[0]].ops(),
                    "why": f"{lease.describe()} while {len(older)} older job(s) were pending "
                    f"(first {older[0]}, {submits[older[0]].describe()}) and only "
                    f"{len(unseen)} indeterminate lease(s) could have taken them",
                }
            )
    details: dict[str, Any] = {
        "ok_leases_judged": judged,
        "violations": violations[:SHOWN_MAX],
        "violation_count": len(violations),
        "not_checked": "'no work' answers; jobs with priority, run_at, delay or dependencies",
    }
    if violations:
        return CheckResult(
            valid=False,
            message=f"{len(violations)} lease(s) took a younger job while an older one was "
            f"pending: " + "; ".join(str(v["why"]) for v in violations[:3]),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"{judged} ok lease(s): none took a younger job while an older one was "
        "certainly pending",
        details=details,
    )

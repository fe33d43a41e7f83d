"""Fencing tokens strictly increase (SPEC §1 promise 3: tokens only grow).

A token is the Raft log index of the Lease entry that granted it. Real-time order is then
enough to order tokens:
  - per job: of two ok leases of J where the first returned before the second was invoked,
    the second's token must be strictly greater (a job's leases are distinct entries);
  - across jobs: the same holds for any two ok leases, of any jobs: the first's entry was
    committed before it returned, and the second's entry was appended after the second was
    invoked, at a larger index (committed entries are never overwritten, Raft §5.4).
Tokens must also be positive integers (index 0 is never an entry).
The sweep keeps the largest token of the leases that returned so far, so it is
O(n log n) rather than comparing all pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jepsen.history import Op

from .jobs import Pair, pairs_of
from .result import CheckResult

__all__ = ["check_tokens_increase"]

SHOWN_MAX = 20


def _sweep(leases: Sequence[Pair]) -> list[tuple[Pair, Pair]]:
    """(earlier, later) pairs where `later` was invoked after `earlier` returned yet got a
    token not above it; for each later lease, the culprit is the largest earlier token."""
    events: list[tuple[int, int, Pair]] = []
    for lease in leases:
        events.append((lease.start, 1, lease))  # invoke
        assert lease.end is not None
        events.append((lease.end, 0, lease))  # ok
    events.sort(key=lambda item: (item[0], item[1]))
    best: Pair | None = None  # the returned lease with the largest token so far
    best_at_invoke: dict[int, Pair | None] = {}
    bad: list[tuple[Pair, Pair]] = []
    for _, kind, lease in events:
        if kind == 1:
            best_at_invoke[lease.start] = best
            continue
        earlier = best_at_invoke.get(lease.start)
        if earlier is not None and (lease.token or 0) <= (earlier.token or 0):
            bad.append((earlier, lease))
        if best is None or (lease.token or 0) > (best.token or 0):
            best = lease
    return bad


def check_tokens_increase(ops: Sequence[Op]) -> CheckResult:
    leases = [p for p in pairs_of(ops) if p.f == "lease" and p.ok and p.job_id is not None]
    violations: list[dict[str, Any]] = []
    for lease in leases:
        if lease.token is None or lease.token <= 0:
            violations.append(
                {
                    "job_id": lease.job_id,
                    "kind": "not a positive integer",
                    "ops": lease.ops(),
                    "why": f"{lease.describe()}: token {lease.result('token')!r}",
                }
            )
    valid_leases = [lease for lease in leases if lease.token is not None and lease.token > 0]
    per_job: dict[str, list[Pair]] = {}
    for lease in valid_leases:
        assert lease.job_id is not None
        per_job.setdefault(lease.job_id, []).append(lease)
    flagged: set[tuple[int, int]] = set()
    for job, job_leases in sorted(per_job.items()):
        for earlier, later in _sweep(job_leases):
            flagged.add((earlier.start, later.start))
            violations.append(
                {
                    "job_id": job,
                    "kind": "per job",
                    "ops": earlier.ops() + later.ops(),
                    "why": f"{earlier.describe()} returned before {later.describe()} began",
                }
            )
    for earlier, later in _sweep(valid_leases):
        if (earlier.start, later.start) in flagged:
            continue
        violations.append(
            {
                "job_id": later.job_id,
                "kind": "across jobs (log order)",
                "ops": earlier.ops() + later.ops(),
                "why": f"{earlier.describe()} returned before {later.describe()} began",
            }
        )
    details: dict[str, Any] = {
        "ok_leases": len(leases),
        "jobs": len(per_job),
        "violations": violations[:SHOWN_MAX],
        "violation_count": len(violations),
    }
    if violations:
        return CheckResult(
            valid=False,
            message=f"{len(violations)} token(s) not above an earlier lease's token: "
            + "; ".join(str(v["why"]) for v in violations[:3]),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"{len(leases)} ok lease token(s) strictly increase in real-time order",
        details=details,
    )

"""No job is completed twice (SPEC §1 promise 3: at most one completion per job).

A job's ok completes must all quote one token: a repeated complete with the same token is
answered ok again by design (nothing changes), but ok completes with two different tokens
mean two attempts both succeeded. The final state must agree: a job with an ok complete must
be read at the end as succeeded with that token; an attempt acknowledged both as completed
and as failed (ok complete and ok fail with one token) is also a double outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jepsen.history import Op

from .jobs import by_job, final_reads, pairs_of
from .result import CheckResult

__all__ = ["check_no_double_completion"]

SHOWN_MAX = 20


def check_no_double_completion(ops: Sequence[Op]) -> CheckResult:
    pairs = pairs_of(ops)
    finals, _ = final_reads(pairs)
    violations: list[dict[str, Any]] = []
    completed = 0
    for job, job_pairs in sorted(by_job(pairs).items()):
        completes = [p for p in job_pairs if p.f == "complete" and p.ok]
        if not completes:
            continue
        completed += 1
        tokens = sorted({p.token for p in completes if p.token is not None})
        if len(tokens) > 1:
            violations.append(
                {
                    "job_id": job,
                    "kind": "completed twice",
                    "ops": [i for p in completes for i in p.ops()],
                    "why": f"ok completes with tokens {tokens}: "
                    + "; ".join(p.describe() for p in completes),
                }
            )
        fails = [p for p in job_pairs if p.f == "fail" and p.ok and p.token in tokens]
        if fails:
            violations.append(
                {
                    "job_id": job,
                    "kind": "completed and failed",
                    "ops": [i for p in completes + fails for i in p.ops()],
                    "why": "one attempt acknowledged as completed and as failed: "
                    + "; ".join(p.describe() for p in completes + fails),
                }
            )
        final = finals.get(job)
        if final is not None and (
            final.result("state") != "succeeded" or final.result("token") not in tokens
        ):
            violations.append(
                {
                    "job_id": job,
                    "kind": "final state disagrees",
                    "ops": [i for p in completes for i in p.ops()] + final.ops(),
                    "why": f"{completes[0].describe()} but finally {final.describe()}",
                }
            )
    details: dict[str, Any] = {
        "jobs_completed": completed,
        "violations": violations[:SHOWN_MAX],
        "violation_count": len(violations),
    }
    if violations:
        jobs = sorted({str(v["job_id"]) for v in violations})
        kinds = sorted({str(v["kind"]) for v in violations})
        return CheckResult(
            valid=False,
            message=f"{len(jobs)} job(s) with a double outcome ({', '.join(kinds)}): "
            + ", ".join(jobs[:SHOWN_MAX]),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"{completed} job(s) completed, each exactly once and finally succeeded",
        details=details,
    )

"""No acknowledged job is lost (SPEC §1: a 2xx means committed on a majority).

Every job whose submit was answered ok must exist when it is read: any ok read (during the
test or the final one after heal) whose invoke came after the submit's ok and that answers
"not found" (state null) is a violation -- at the final read the job is lost; during the
test it may have been a stale read that a later read contradicts, which breaks promise 1
or 2 all the same (the details say which kind). A job with no ok final-read cannot be confirmed:
the verdict is unknown for it (the runner could not read it), never valid by default.
"""

from __future__ import annotations

from collections.abc import Sequence

from jepsen.history import Op

from .jobs import acknowledged_submits, final_reads, pairs_of, precedes
from .result import CheckResult

__all__ = ["check_no_lost_jobs"]

SHOWN_MAX = 20


def check_no_lost_jobs(ops: Sequence[Op]) -> CheckResult:
    pairs = pairs_of(ops)
    acked = acknowledged_submits(pairs)
    finals, attempted = final_reads(pairs)
    lost: list[dict[str, object]] = []
    for pair in pairs:
        if pair.f not in ("read", "final-read") or not pair.has_state or pair.job_id is None:
            continue
        submit = acked.get(pair.job_id)
        if submit is None or not precedes(submit, pair):
            continue
        if pair.result("state") is None:
            kind = "final read: not found" if pair.f == "final-read" else "read: not found"
            lost.append(
                {
                    "job_id": pair.job_id,
                    "kind": kind,
                    "ops": submit.ops() + pair.ops(),
                    "why": f"{submit.describe()} then {pair.describe()}: not found",
                }
            )
    unconfirmed = sorted(job for job in acked if job not in finals)
    details: dict[str, object] = {
        "acknowledged": len(acked),
        "final_reads": len(finals),
        "lost": lost[:SHOWN_MAX],
        "lost_count": len(lost),
        "unconfirmed": unconfirmed[:SHOWN_MAX],
        "unconfirmed_count": len(unconfirmed),
    }
    if lost:
        jobs = sorted({str(item["job_id"]) for item in lost})
        gone = sorted(
            {str(item["job_id"]) for item in lost if str(item["kind"]).startswith("final")}
        )
        message = (
            f"{len(jobs)} acknowledged job(s) read as not found: {', '.join(jobs[:SHOWN_MAX])}"
        )
        message += (
            f"; {len(gone)} still missing at the final read"
            if gone
            else "; found again later "
            "(a stale read of a missing job: the read or the acknowledgement lied)"
        )
        return CheckResult(valid=False, message=message, details=details)
    if not attempted and acked:
        return CheckResult(
            valid=None, message="no final reads in the history: cannot confirm", details=details
        )
    if unconfirmed:
        return CheckResult(
            valid=None,
            message=(
                f"{len(unconfirmed)} of {len(acked)} acknowledged job(s) have no ok final read"
            ),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"all {len(acked)} acknowledged job(s) found by the final reads",
        details=details,
    )

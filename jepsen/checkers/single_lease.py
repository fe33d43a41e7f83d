"""At most one live lease per job at any time (SPEC §1 promise 3, fencing).

Definitions. Lease L of job J with token t is live from its grant (the apply of its Lease
entry, some instant between the lease op's invoke and ok) until its attempt ends: complete,
fail, expiry (the state machine's clock passes lease_expires_at) or its worker's expiry.
Liveness is one interval: the state machine's clock never goes back, and only a live lease
can be heartbeated, so a dead lease never comes back.

What is certain, without knowing the state machine's clock (the leader stamps it; clocks may
be skewed by the nemesis, so client times prove nothing about expiry):
  - tokens are Raft indexes, so of two ok leases of J, the one with the smaller token was
    granted first (the tokens checker validates tokens against real time separately);
  - an ok heartbeat/complete/fail quoting token t was applied at an instant in its
    [invoke, ok] window while t was J's current token (a repeated complete or fail is answered
    ok again only while t is still current: complete after success, fail until the next
    lease) -- so no later lease of J had been granted at that instant.
Violation (certain): ok leases L1 (t1) < L2 (t2) of J, and an ok heartbeat/complete/fail
quoting t1 whose invoke comes after L2's ok: L2 was granted before that op was applied, yet
t1 was still accepted -- either L1 was still live while L2 was granted (two live leases) or a
stale token was honoured. Also: two ok leases of J with the same token given to different
workers (one grant handed to two holders).

Not flagged (not certain): overlapping windows where the older holder never got an ok after
the newer grant -- its lease may have expired; timing-based expiry arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jepsen.history import Op

from .jobs import TOKEN_FS, by_job, pairs_of, precedes
from .result import CheckResult

__all__ = ["check_single_live_lease"]

SHOWN_MAX = 20


def check_single_live_lease(ops: Sequence[Op]) -> CheckResult:
    pairs = pairs_of(ops)
    violations: list[dict[str, Any]] = []
    leases_checked = 0
    for job, job_pairs in sorted(by_job(pairs).items()):
        leases = sorted(
            (p for p in job_pairs if p.f == "lease" and p.ok and p.token is not None),
            key=lambda p: (p.token or 0, p.start),
        )
        leases_checked += len(leases)
        if len(leases) < 2:
            continue
        uses = [p for p in job_pairs if p.f in TOKEN_FS and p.ok and p.token is not None]
        for position, newer in enumerate(leases):
            for older in leases[:position]:
                if older.token == newer.token:
                    if older.arg("worker_id") != newer.arg("worker_id"):
                        violations.append(
                            {
                                "job_id": job,
                                "kind": "one grant, two holders",
                                "ops": older.ops() + newer.ops(),
                                "why": f"{older.describe()} and {newer.describe()} "
                                f"(workers {older.arg('worker_id')!r}, "
                                f"{newer.arg('worker_id')!r})",
                            }
                        )
                    continue
                for use in uses:
                    if use.token == older.token and precedes(newer, use):
                        violations.append(
                            {
                                "job_id": job,
                                "kind": "older lease honoured after a newer grant",
                                "ops": older.ops() + newer.ops() + use.ops(),
                                "why": f"{newer.describe()} returned before "
                                f"{use.describe()} began, which quotes the older "
                                f"{older.describe()}",
                            }
                        )
    details: dict[str, Any] = {
        "ok_leases": leases_checked,
        "violations": violations[:SHOWN_MAX],
        "violation_count": len(violations),
        "not_checked": "expiry timing (the state machine clock is not the client's)",
    }
    if violations:
        jobs = sorted({str(v["job_id"]) for v in violations})
        return CheckResult(
            valid=False,
            message=f"{len(jobs)} job(s) had two live leases or honoured a stale token: "
            + ", ".join(jobs[:SHOWN_MAX]),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"{leases_checked} ok lease(s): no older lease honoured after a newer grant",
        details=details,
    )

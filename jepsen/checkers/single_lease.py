"""At most one live lease per job at any time (SPEC §1 promise 3, fencing).

Definitions. Lease L of job J with token t is live from its grant (the apply of its Lease
entry, some instant between the lease op's invoke and ok) until its attempt ends: complete,
fail, expiry (the state machine's clock passes lease_expires_at) or its worker's expiry.
Liveness is one interval: the state machine's clock never goes back, and only a live lease
can be heartbeated, so a dead lease never comes back. Tokens are Raft indexes, so of two ok
leases of J the one with the smaller token was granted first (the tokens checker validates
tokens against real time separately).

Rule 1, fencing (needs no clock). An ok heartbeat/complete/fail quoting token t was applied
at an instant in its [invoke, ok] window while t was J's current token (a repeated complete
or fail is answered ok again only while t is still current). So: ok leases L1 (t1) < L2
(t2) of J, and an ok heartbeat/complete/fail quoting t1 invoked after L2's ok -- L2 was
granted before that op was applied, yet t1 was still accepted: either L1 was still live
while L2 was granted (two live leases) or a stale token was honoured. Also: two ok leases of
J with the same token given to different workers (one grant handed to two holders).

Rule 2, expiry (needs the nodes' clocks to be the runner's: one machine, no clock nemesis).
The state machine's clock is the largest leader stamp applied; a stamp is the wall time of
proposal (a median of a quorum's clocks), so at L1's grant it was at least L1's invoke wall
time, and it does not run ahead of the wall clock (one entry may move it only a bounded
step: it can only lag) beyond the leader's estimation error. L1 then cannot expire before
invoke_wall(L1) + lease_ms, nor before invoke_wall(h) + lease_ms for an ok heartbeat h of
t1 (a heartbeat extends by lease_ms by default), and its worker's registration (refreshed
by the lease) lasts WORKER_TTL_MS_DEFAULT. If L2's ok came before that bound less a
generous margin (`_margin_ms`: half the lease, at least 250 ms), and no complete or fail
quoting t1 (ok, indeterminate or unanswered) was invoked before L2's ok, then L1 was live
when L2 was granted. This is the rule that catches one job leased to two workers at once
when neither holder uses its token afterwards (the model lets a lease expire at any
moment). lease_ms comes from the job's submit (the workload records it); without it, or
when the history has a clock nemesis event (`CLOCK_NEMESIS_WORDS`), rule 2 is off.

Not flagged (not certain): overlaps that depend on expiry when rule 2 is off, or within the
margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jepsen.history import NEMESIS_PROCESS, Op

from .jobs import TOKEN_FS, Pair, by_job, pairs_of, precedes
from .result import CheckResult

__all__ = ["check_single_live_lease"]

SHOWN_MAX = 20
# Slack for the clocks in rule 2: the leader estimates its peers' clocks from ping round
# trips, so a stamp may run ahead of the wall clock by up to half a round trip (more under
# load or a pause in flight). Rule 2 flags only a grant earlier than the bound by at least
# max(LEASE_CLOCK_MARGIN_MS, lease_ms * LEASE_CLOCK_MARGIN_FRACTION).
LEASE_CLOCK_MARGIN_MS = 250
LEASE_CLOCK_MARGIN_FRACTION = 0.5
# The cluster's default worker registration ttl (raftsched/sched/limits.py): a lease
# registers or refreshes its worker, and an expired registration releases its leases.
WORKER_TTL_MS_DEFAULT = 30_000
# A nemesis event whose f contains one of these words turns rule 2 off.
CLOCK_NEMESIS_WORDS = ("clock", "skew", "time")


def _fencing(job: str, leases: Sequence[Pair], uses: Sequence[Pair]) -> list[dict[str, Any]]:
    """Rule 1 (see the module docstring)."""
    violations: list[dict[str, Any]] = []
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
                            "why": f"{newer.describe()} returned before {use.describe()} "
                            f"began, which quotes the older {older.describe()}",
                        }
                    )
    return violations


def _expiry(
    job: str, leases: Sequence[Pair], job_pairs: Sequence[Pair], lease_ms: int
) -> list[dict[str, Any]]:
    """Rule 2 (see the module docstring)."""
    violations: list[dict[str, Any]] = []
    for position, newer in enumerate(leases):
        assert newer.done is not None
        granted_by_ms = newer.done.wall_ms
        for older in leases[:position]:
            if older.token == newer.token:
                continue
            ended = [
                p
                for p in job_pairs
                if p.f in ("complete", "fail")
                and p.token == older.token
                and p.outcome != "fail"
                and p.start < newer.done.index
            ]
            if ended:
                continue  # an attempt end may have been applied before the newer grant
            beats = [
                p.invoke.wall_ms
                for p in job_pairs
                if p.f == "heartbeat" and p.ok and p.token == older.token
            ]
            live_from_ms = max([older.invoke.wall_ms, *beats])
            live_until_ms = min(
                live_from_ms + lease_ms, older.invoke.wall_ms + WORKER_TTL_MS_DEFAULT
            )
            if granted_by_ms < live_until_ms - _margin_ms(lease_ms):
                violations.append(
                    {
                        "job_id": job,
                        "kind": "granted while the older lease was certainly live",
                        "ops": older.ops() + newer.ops(),
                        "why": f"{newer.describe()} returned at wall {granted_by_ms} ms, "
                        f"but {older.describe()} (lease_ms {lease_ms}) could not expire "
                        f"before {live_until_ms} ms and no complete/fail of it was sent",
                    }
                )
    return violations


def _margin_ms(lease_ms: int) -> int:
    return max(LEASE_CLOCK_MARGIN_MS, int(lease_ms * LEASE_CLOCK_MARGIN_FRACTION))


def _lease_ms_of(job_pairs: Sequence[Pair]) -> int | None:
    for pair in job_pairs:
        if pair.f == "submit":
            value = pair.arg("lease_ms")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_single_live_lease(ops: Sequence[Op], *, use_expiry: bool = True) -> CheckResult:
    pairs = pairs_of(ops)
    clock_faults = sorted(
        {
            op.f
            for op in ops
            if op.process == NEMESIS_PROCESS and any(word in op.f for word in CLOCK_NEMESIS_WORDS)
        }
    )
    expiry_on = use_expiry and not clock_faults
    violations: list[dict[str, Any]] = []
    leases_checked = 0
    expiry_jobs = 0
    for job, job_pairs in sorted(by_job(pairs).items()):
        leases = sorted(
            (p for p in job_pairs if p.f == "lease" and p.ok and p.token is not None),
            key=lambda p: (p.token or 0, p.start),
        )
        leases_checked += len(leases)
        if len(leases) < 2:
            continue
        uses = [p for p in job_pairs if p.f in TOKEN_FS and p.ok and p.token is not None]
        violations.extend(_fencing(job, leases, uses))
        lease_ms = _lease_ms_of(job_pairs)
        if expiry_on and lease_ms is not None:
            expiry_jobs += 1
            violations.extend(_expiry(job, leases, job_pairs, lease_ms))
    details: dict[str, Any] = {
        "ok_leases": leases_checked,
        "violations": violations[:SHOWN_MAX],
        "violation_count": len(violations),
        "expiry_rule": (
            f"on for {expiry_jobs} job(s) with 2+ leases and a known lease_ms"
            if expiry_on
            else "off ("
            + ("clock nemesis: " + ", ".join(clock_faults) if clock_faults else "disabled")
            + ")"
        ),
        "margin": f"max({LEASE_CLOCK_MARGIN_MS} ms, lease_ms x {LEASE_CLOCK_MARGIN_FRACTION})",
    }
    if violations:
        jobs = sorted({str(v["job_id"]) for v in violations})
        kinds = sorted({str(v["kind"]) for v in violations})
        return CheckResult(
            valid=False,
            message=f"{len(jobs)} job(s) with two live leases or a stale token honoured "
            f"({'; '.join(kinds)}): " + ", ".join(jobs[:SHOWN_MAX]),
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"{leases_checked} ok lease(s): none granted while another was certainly live, "
        "no older lease honoured after a newer grant",
        details=details,
    )

"""Every job reaches a terminal state after the faults heal (liveness, SPEC §8).

After the nemesis healed everything and the workers drained the queue, the runner reads
every job it knows of ("final-read", process "final"). Every job whose submit was
acknowledged must be read as terminal (succeeded, dead, cancelled). A job whose submit was
indeterminate may not exist (read "not found"), but if it exists it must be terminal too.
A job with no ok final read cannot be judged: unknown, not valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jepsen.history import Op
from jepsen.models import TERMINAL_STATES

from .jobs import acknowledged_submits, final_reads, pairs_of
from .result import CheckResult

__all__ = ["check_terminal_after_heal"]

SHOWN_MAX = 20


def check_terminal_after_heal(ops: Sequence[Op]) -> CheckResult:
    pairs = pairs_of(ops)
    acked = acknowledged_submits(pairs)
    finals, attempted = final_reads(pairs)
    not_terminal: list[dict[str, Any]] = []
    states: dict[str, int] = {}
    for job, final in sorted(finals.items()):
        state = final.result("state")
        states[str(state)] = states.get(str(state), 0) + 1
        if state is None and job not in acked:
            continue  # an indeterminate submit that never happened
        if state not in TERMINAL_STATES:
            not_terminal.append(
                {"job_id": job, "state": state, "ops": final.ops(), "why": final.describe()}
            )
    unread = sorted(job for job in acked if job not in finals)
    details: dict[str, Any] = {
        "final_states": states,
        "not_terminal": not_terminal[:SHOWN_MAX],
        "not_terminal_count": len(not_terminal),
        "unread": unread[:SHOWN_MAX],
        "unread_count": len(unread),
    }
    if not_terminal:
        return CheckResult(
            valid=False,
            message=f"{len(not_terminal)} job(s) not terminal after heal: "
            + ", ".join(f"{v['job_id']} ({v['state']})" for v in not_terminal[:SHOWN_MAX]),
            details=details,
        )
    if not attempted:
        return CheckResult(
            valid=None if acked else True,
            message="no final reads in the history" if acked else "no jobs submitted",
            details=details,
        )
    if unread:
        return CheckResult(
            valid=None,
            message=f"{len(unread)} acknowledged job(s) have no ok final read",
            details=details,
        )
    return CheckResult(
        valid=True,
        message=f"all {len(finals)} job(s) read after heal are terminal",
        details=details,
    )

"""The checkers of a jepsen history: each is ops -> CheckResult; `check_all` runs them all.

Report shape (agreed in /work/notes/interfaces.md, results.json "checks"):
  {"valid": bool, "verdict": "valid"|"invalid"|"unknown",
   "checks": {name: {"valid": true|false|null, "verdict", "message", "details"}}}
The top-level "valid" is True only when every check is valid: an unknown check (a search
that hit its time limit, missing final reads) does not pass a run. "verdict" says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from jepsen.history import Op, validate

from .convergence import check_convergence
from .double_complete import check_no_double_completion
from .linearizable import check_linearizable
from .lost import check_no_lost_jobs
from .queue_order import check_queue_order
from .result import CheckResult, Verdict, verdict_of
from .single_lease import check_single_live_lease
from .terminal import check_terminal_after_heal
from .tokens import check_tokens_increase

__all__ = [
    "CHECKERS",
    "CheckResult",
    "check_all",
    "check_convergence",
    "check_linearizable",
    "check_no_double_completion",
    "check_no_lost_jobs",
    "check_queue_order",
    "check_single_live_lease",
    "check_terminal_after_heal",
    "check_tokens_increase",
    "combine",
    "verdict_of",
]

Checker = Callable[[Sequence[Op]], CheckResult]

CHECKERS: dict[str, Checker] = {
    "linearizable": check_linearizable,
    "no-lost-jobs": check_no_lost_jobs,
    "no-double-completion": check_no_double_completion,
    "single-live-lease": check_single_live_lease,
    "tokens-increase": check_tokens_increase,
    "queue-order": check_queue_order,
    "terminal-after-heal": check_terminal_after_heal,
    "replicas-converge": check_convergence,
}


def combine(results: dict[str, CheckResult]) -> Verdict:
    valids = [result.valid for result in results.values()]
    if any(valid is False for valid in valids):
        return "invalid"
    if any(valid is None for valid in valids):
        return "unknown"
    return "valid"


def check_all(
    ops: Sequence[Op],
    *,
    checkers: dict[str, Checker] | None = None,
) -> dict[str, Any]:
    """Run every checker (a malformed history raises HistoryError before any runs)."""
    validate(ops)
    results: dict[str, CheckResult] = {}
    elapsed: dict[str, float] = {}
    for name, checker in (CHECKERS if checkers is None else checkers).items():
        started = time.monotonic()
        results[name] = checker(ops)
        elapsed[name] = round(time.monotonic() - started, 3)
    verdict = combine(results)
    return {
        "valid": verdict == "valid",
        "verdict": verdict,
        "checks": {
            name: {**result.to_json(), "elapsed_s": elapsed[name]}
            for name, result in results.items()
        },
    }

"""Views of a history the checkers share: operations paired, by job, final reads.

Theory of operation. A checker reasons about whole operations: an invoke with its completion
(ok / fail / info, or none when the history ended first). `Pair` carries both and the
derived facts every checker needs: the job it names (from the invoke value, or for a lease
from its ok value), its token, and its outcome. Real-time order: operation A certainly
precedes B iff A's completion line comes before B's invoke line (`precedes`), since the
history's line order is the order events happened.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jepsen.history import Op, pair_ops

__all__ = [
    "READ_FS",
    "TOKEN_FS",
    "Pair",
    "acknowledged_submits",
    "by_job",
    "final_reads",
    "pairs_of",
    "precedes",
]

TOKEN_FS = ("heartbeat", "complete", "fail")
READ_FS = ("read", "final-read")


@dataclass(frozen=True, slots=True)
class Pair:
    """One client operation: its invoke and its completion (None: never completed)."""

    invoke: Op
    done: Op | None

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def outcome(self) -> str:
        """ "ok", "fail", or "info" (indeterminate, including never completed)."""
        if self.done is None:
            return "info"
        return self.done.type

    @property
    def ok(self) -> bool:
        return self.done is not None and self.done.type == "ok"

    @property
    def start(self) -> int:
        """History index of the invoke."""
        return self.invoke.index

    @property
    def end(self) -> int | None:
        """History index of a definite completion (ok/fail); None for indeterminate."""
        if self.done is None or self.done.type == "info":
            return None
        return self.done.index

    def arg(self, name: str) -> Any:
        value = self.invoke.value
        return value.get(name) if isinstance(value, dict) else None

    def result(self, name: str) -> Any:
        if self.done is None or not isinstance(self.done.value, dict):
            return None
        return self.done.value.get(name)

    @property
    def has_state(self) -> bool:
        """An ok read whose answer says the job's state (null: not found). Anything else is
        a recording mistake that no checker may take for "not found"."""
        if self.done is None or self.done.type != "ok":
            return False
        value = self.done.value
        return isinstance(value, dict) and "state" in value

    @property
    def job_id(self) -> str | None:
        """The job this operation is about: the invoke's job_id, or the job an ok lease got."""
        job = self.result("job_id") if self.f == "lease" else self.arg("job_id")
        return job if isinstance(job, str) else None

    @property
    def token(self) -> int | None:
        """The lease token: granted (ok lease) or quoted (heartbeat/complete/fail)."""
        token = self.result("token") if self.f == "lease" else self.arg("token")
        return token if isinstance(token, int) and not isinstance(token, bool) else None

    def ops(self) -> list[int]:
        """History indexes of its lines, for details."""
        return [self.invoke.index] + ([] if self.done is None else [self.done.index])

    def describe(self) -> str:
        """`#12 p3 complete job=j7 token=40 -> ok` (index of the invoke line)."""
        parts = [f"#{self.invoke.index} p{self.invoke.process} {self.f}"]
        if self.job_id is not None:
            parts.append(f"job={self.job_id}")
        if self.token is not None:
            parts.append(f"token={self.token}")
        text = " ".join(parts) + f" -> {self.outcome}"
        if self.ok and self.f in READ_FS:
            text += f" state={self.result('state')} token={self.result('token')}"
            text += f" attempts={self.result('attempts')}"
        return text


def precedes(first: Pair, second: Pair) -> bool:
    """`first` certainly ended before `second` began (real-time order)."""
    end = first.end
    return end is not None and end < second.start


def pairs_of(ops: Iterable[Op]) -> list[Pair]:
    """Every client operation, in invoke order."""
    return [Pair(invoke=invoke, done=done) for invoke, done in pair_ops(ops)]


def by_job(pairs: Iterable[Pair]) -> dict[str, list[Pair]]:
    """The operations naming each job, in invoke order."""
    jobs: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        job = pair.job_id
        if job is not None:
            jobs[job].append(pair)
    return dict(jobs)


def acknowledged_submits(pairs: Sequence[Pair]) -> dict[str, Pair]:
    """job id -> its first ok submit."""
    acked: dict[str, Pair] = {}
    for pair in pairs:
        if pair.f == "submit" and pair.ok and pair.job_id is not None:
            acked.setdefault(pair.job_id, pair)
    return acked


def final_reads(pairs: Sequence[Pair]) -> tuple[dict[str, Pair], bool]:
    """job id -> its last ok final-read; and whether any final-read was attempted.

    Final reads run after the faults healed (process "final"); the last ok one per job is
    the job's final state (the runner may poll until jobs are terminal).
    """
    last: dict[str, Pair] = {}
    attempted = False
    for pair in pairs:
        if pair.f != "final-read":
            continue
        attempted = True
        if pair.has_state and pair.job_id is not None:
            last[pair.job_id] = pair
    return last, attempted

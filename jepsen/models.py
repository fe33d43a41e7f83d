"""The sequential model of one job of the queue with leases, for the linearizability search.

Theory of operation. raftsched/sim/linearizability.py searches for a legal order of a
history's operations given a deterministic model (`init`, `step`). A job is not
deterministic as the client sees it: its lease may expire at any moment (the state
machine's clock, stamped by the leader, is not the client's), a retry backoff may end at any
moment, and a job's `max_attempts` may not be known to the checker. So the model's state is
the SET of concrete job states the operations so far allow (a powerset construction):
`step` maps every member through the operation, keeps the results where the operation was
legal (and the answer matches), and closes the set under the internal moves (expiry,
promotion). The operation is legal iff the set stays non-empty. The sets stay tiny (at most
a handful of members), and frozensets compare by value, as Lowe's memo needs.

A concrete state is `Job(state, token, token_known, attempts, closed, max_attempts)`:
  state         "new" (not submitted yet) | "pending" | "scheduled" | "leased" | "succeeded" |
                "dead" -- the job states of docs/api.md that the queue workload can reach
                (no dependencies, no cancel, no dead-letter requeue);
  token         the fencing token of the last lease, 0 before the first. When token_known is
                False the last lease's answer was lost (an indeterminate lease): its token is
                some integer > token, fixed by the first later operation that names it;
  attempts      the number of leases so far (each lease starts an attempt);
  closed        how the last attempt ended: "" (still leased / never leased), "completed",
                "failed", "expired" -- it decides whether a repeated complete/fail is
                acknowledged again (the server does that, see raftsched/sched/leases.py);
  max_attempts  from the submit's value when the workload sends it, else 0 = unknown (then
                an ended attempt may lead to a retry or to dead).

Internal moves (may happen between any two operations, so every state set is closed under
them): a leased job's lease expires (-> scheduled or pending with closed "expired", or dead
when attempts are exhausted); a scheduled job's backoff ends (-> pending).

Operations (invoke value -> ok value, as jepsen/history.py records them; the conversion to
the checker's events is in jepsen/checkers/linearizable.py):
  submit               -> creates the job pending; a repeated submit of an existing job is
                          acknowledged and changes nothing (same id, same spec)
  lease (names J, T)   legal iff J is pending and T > J's previous token (and the grant's
                       attempt number, when recorded, is attempts + 1); J becomes leased
  lease (indeterminate)  may have leased J with an unknown token (see token_known)
  heartbeat(T)         legal iff J is leased with token T; changes nothing (expiry is free)
  complete(T)          leased with T -> succeeded; or a repeat: already succeeded with T
  fail(T, retryable)   leased with T -> retry (scheduled/pending) or dead; or a repeat: the
                       attempt with T already failed and the job was not leased since
  read -> {state, token, attempts}   must match a member exactly (state null: not found)

`unknown_effect`: reads and heartbeats change nothing -> NONE (the search leaves them out when
indeterminate); everything else DEPENDS.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from raftsched.sim.history import Event
from raftsched.sim.models import (
    FrozenList,
    FrozenObject,
    HistoryError,
    JsonBool,
    Operation,
    UnknownEffect,
)

__all__ = ["NEW", "TERMINAL_STATES", "Job", "JobModel", "JobStates"]

NEW = "new"
PENDING = "pending"
SCHEDULED = "scheduled"
LEASED = "leased"
SUCCEEDED = "succeeded"
DEAD = "dead"
TERMINAL_STATES = frozenset({SUCCEEDED, DEAD, "cancelled"})

CLOSED_NONE = ""
CLOSED_COMPLETED = "completed"
CLOSED_FAILED = "failed"
CLOSED_EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Job:
    """One concrete state of a job (see the module docstring)."""

    state: str
    token: int = 0
    token_known: bool = True
    attempts: int = 0
    closed: str = CLOSED_NONE
    max_attempts: int = 0  # 0: unknown

    def describe(self) -> str:
        token = str(self.token) if self.token_known else f">{self.token}"
        text = f"{self.state} token={token} attempts={self.attempts}"
        if self.closed:
            text += f" closed={self.closed}"
        return text


JobStates = frozenset[Job]


# ---------------------------------------------------------------------------------------------
# Operation inputs and outputs as the checker's events carry them (frozen by the checker).
#
# The conversion (jepsen/checkers/linearizable.py) builds event values as plain tuples, so
# they freeze to FrozenList and index like tuples here:
#   submit    invoke (max_attempts,)           ok ignored
#   lease     invoke ()                        ok (token, attempt or -1) -- naming this job
#   heartbeat invoke (token,)                  ok ignored
#   complete  invoke (token,)                  ok ignored
#   fail      invoke (token, retryable)        ok ignored
#   read      invoke ()                        ok (state or None, token, attempts)
# A lease invoke carries nothing but the job's key: every indeterminate lease of a queue is
# then identical in each job's partition, and the search tries only the earliest unused one.


def _int_at(value: Hashable, position: int, *, what: str) -> int:
    if not isinstance(value, FrozenList | tuple) or len(value) <= position:
        raise HistoryError(f"{what}: expected a value with {position + 1} item(s), got {value!r}")
    item = value[position]
    if isinstance(item, JsonBool) or not isinstance(item, int):
        raise HistoryError(f"{what}: item {position} must be an integer, got {item!r}")
    return item


def _bool_at(value: Hashable, position: int) -> bool:
    assert isinstance(value, FrozenList | tuple)
    item = value[position]
    return item.value if isinstance(item, JsonBool) else bool(item)


def _token_matches(job: Job, token: int) -> Job | None:
    """The job with its token fixed to `token` if that can be its current token, else None."""
    if job.token_known:
        return job if job.token == token else None
    if token > job.token:  # the indeterminate lease's token: now we know it
        return Job(
            state=job.state,
            token=token,
            token_known=True,
            attempts=job.attempts,
            closed=job.closed,
            max_attempts=job.max_attempts,
        )
    return None


def _end_attempt(job: Job, *, closed: str, retryable: bool) -> Iterable[Job]:
    """A leased attempt ended without success: retried (scheduled or pending) or dead."""
    exhausted_known = job.max_attempts > 0 and job.attempts >= job.max_attempts
    may_retry = retryable and not exhausted_known
    may_die = (not retryable) or exhausted_known or job.max_attempts == 0
    if may_retry:
        for state in (SCHEDULED, PENDING):
            yield Job(
                state=state,
                token=job.token,
                token_known=job.token_known,
                attempts=job.attempts,
                closed=closed,
                max_attempts=job.max_attempts,
            )
    if may_die:
        yield Job(
            state=DEAD,
            token=job.token,
            token_known=job.token_known,
            attempts=job.attempts,
            closed=closed,
            max_attempts=job.max_attempts,
        )


def close_internal(jobs: Iterable[Job]) -> JobStates:
    """Every state reachable by internal moves (lease expiry, end of backoff)."""
    seen: set[Job] = set()
    todo = list(jobs)
    while todo:
        job = todo.pop()
        if job in seen:
            continue
        seen.add(job)
        if job.state == LEASED:
            todo.extend(_end_attempt(job, closed=CLOSED_EXPIRED, retryable=True))
        elif job.state == SCHEDULED:
            todo.append(
                Job(
                    state=PENDING,
                    token=job.token,
                    token_known=job.token_known,
                    attempts=job.attempts,
                    closed=job.closed,
                    max_attempts=job.max_attempts,
                )
            )
    return frozenset(seen)


def _with(job: Job, *, state: str, closed: str | None = None) -> Job:
    return Job(
        state=state,
        token=job.token,
        token_known=job.token_known,
        attempts=job.attempts,
        closed=job.closed if closed is None else closed,
        max_attempts=job.max_attempts,
    )


def step_job(job: Job, op: Operation) -> list[Job]:
    """The states `op` can lead to from `job` (empty: illegal there)."""
    f = op.f
    if f == "submit":
        if job.state != NEW:
            return [job]  # the same job submitted again: acknowledged, nothing changes
        max_attempts = _int_at(op.input, 0, what="submit input")
        return [Job(state=PENDING, max_attempts=max(0, max_attempts))]
    if f == "lease":
        if job.state != PENDING:
            return []
        if not op.known:
            return [
                Job(
                    state=LEASED,
                    token=job.token,
                    token_known=False,
                    attempts=job.attempts + 1,
                    max_attempts=job.max_attempts,
                )
            ]
        token = _int_at(op.output, 0, what="lease output")
        attempt = _int_at(op.output, 1, what="lease output")
        # The new token is a later log index: above the previous one, known or not. The
        # grant's attempt number (when recorded, else -1) counts this lease.
        if token <= job.token or attempt not in (-1, job.attempts + 1):
            return []
        return [
            Job(
                state=LEASED,
                token=token,
                attempts=job.attempts + 1,
                max_attempts=job.max_attempts,
            )
        ]
    if f == "heartbeat":
        token = _int_at(op.input, 0, what="heartbeat input")
        if job.state != LEASED:
            return []
        held = _token_matches(job, token)
        return [] if held is None else [held]
    if f == "complete":
        token = _int_at(op.input, 0, what="complete input")
        held = _token_matches(job, token)
        if held is None:
            return []
        if held.state == LEASED:
            return [_with(held, state=SUCCEEDED, closed=CLOSED_COMPLETED)]
        if held.state == SUCCEEDED and held.closed == CLOSED_COMPLETED:
            return [held]  # a repeated complete is answered again
        return []
    if f == "fail":
        token = _int_at(op.input, 0, what="fail input")
        retryable = _bool_at(op.input, 1)
        held = _token_matches(job, token)
        if held is None:
            return []
        if held.state == LEASED:
            return list(_end_attempt(held, closed=CLOSED_FAILED, retryable=retryable))
        if held.closed == CLOSED_FAILED:
            return [held]  # a repeated fail is acknowledged again until the next lease
        return []
    if f == "read":
        if not op.known:
            return [job]
        output = op.output
        assert isinstance(output, FrozenList | tuple) and len(output) == 3
        state = output[0]
        if state is None:
            return [job] if job.state == NEW else []
        token = _int_at(output, 1, what="read output")
        attempts = _int_at(output, 2, what="read output")
        if job.state != state or job.attempts != attempts:
            return []
        held = _token_matches(job, token)
        return [] if held is None else [held]
    raise HistoryError(f"job model does not know operation f={f!r}")


class JobModel:
    """The per-job model for raftsched.sim.linearizability.check_history (see the docstring).

    The checker calls check_history once per job with that job's events, so `partition`
    returns one part: the split by job is done by jepsen/checkers/linearizable.py, which is
    where the soundness argument lives.
    """

    def init(self) -> JobStates:
        return frozenset({Job(state=NEW)})

    def step(self, state: JobStates, op: Operation) -> tuple[bool, JobStates]:
        nexts: list[Job] = []
        for job in state:
            nexts.extend(step_job(job, op))
        if not nexts:
            return False, state
        return True, close_internal(nexts)

    def partition(self, events: Sequence[Event]) -> Mapping[str, Sequence[Event]]:
        keys = {event.key for event in events}
        if len(keys) > 1:
            raise HistoryError(f"job model checks one job at a time, got keys {sorted(keys)}")
        return {next(iter(keys)) if keys else "": list(events)}

    def unknown_effect(self, op: Operation) -> UnknownEffect:
        if op.f in ("read", "heartbeat"):
            return UnknownEffect.NONE
        return UnknownEffect.DEPENDS

    def describe_op(self, op: Operation) -> str:
        return describe_operation(op)

    def describe_state(self, state: JobStates) -> str:
        members = sorted(job.describe() for job in state)
        return "{" + " | ".join(members) + "}"


def describe_operation(op: Operation) -> str:
    """A one-line human form: `lease -> token 17 attempt 1`, `read -> ? (indeterminate)`.

    The checker prints it after "process N": jepsen/checkers/linearizable.py numbers each
    operation's process with its invoke's history index, so N points at line N+1 of
    history.jsonl."""
    args = _plain(op.input)
    text = op.f
    if op.f in ("heartbeat", "complete", "fail") and args:
        text += f"(token={args[0]}" + (f", retryable={args[1]}" if op.f == "fail" else "") + ")"
    if not op.known:
        return text + " -> ? (indeterminate)"
    out = _plain(op.output)
    if op.f == "lease" and out:
        return text + f" -> token {out[0]}" + (f" attempt {out[1]}" if out[1] != -1 else "")
    if op.f == "read" and out:
        return text + f" -> state={out[0]} token={out[1]} attempts={out[2]}"
    return text + " -> ok"


def _plain(value: Hashable) -> list[object]:
    if isinstance(value, FrozenList | tuple):
        return [item.value if isinstance(item, JsonBool) else item for item in value]
    if isinstance(value, FrozenObject):
        return [item for _, item in value]
    return []

"""The checkers against the REAL state machine: histories recorded from raftsched.sched.

The model of jepsen/models.py and the rules of the direct checkers are written from the
docs and the code; a mismatch with what the server really does would show up as a false
alarm on a correct cluster. Here a random script drives `SchedulerState` itself (the pure
state machine every replica runs), one command per log index, with a wall clock that jumps
forward so leases expire, backoffs end and due work runs for real; each client operation is
recorded as a runner would record it (answers sometimes lost: info, sometimes before the
command was applied at all). The state machine is correct by assumption here, so every
safety checker must accept every such history.

Wall time: the recorded wall_ms of an operation is the stamp of its entry, the same clock
the state machine runs on, as on the harness's single machine -- so single-live-lease's
expiry rule is exercised against real lease expiry too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jepsen.checkers import (
    check_linearizable,
    check_no_double_completion,
    check_no_lost_jobs,
    check_queue_order,
    check_single_live_lease,
    check_tokens_increase,
)
from jepsen.history import Op, OpType, Process
from raftsched.sched import (
    Backoff,
    Command,
    Complete,
    Fail,
    HeartbeatLease,
    JobSpec,
    Lease,
    Ok,
    SchedulerState,
    SubmitJobs,
    Tick,
)

T0_MS = 1_700_000_000_000
LEASE_MS = 1_000
MAX_ATTEMPTS = 3
WORKERS = ("w0", "w1", "w2")

Action = tuple[int, int, int]


class Recorder:
    """Sequential history of what clients saw, with the state machine's clock as wall time."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.state = SchedulerState()
        self.index = 0
        self.now_ms = T0_MS
        self.process = 0
        self.jobs: list[str] = []
        self.tokens: list[tuple[str, int]] = []

    def _line(
        self, *, type: OpType, process: Process, f: str, value: Any, error: str | None = None
    ) -> None:
        self.ops.append(
            Op(
                index=len(self.ops),
                type=type,
                process=process,
                f=f,
                value=value,
                time_ns=(self.now_ms - T0_MS) * 1_000_000 + len(self.ops),
                wall_ms=self.now_ms,
                node=1,
                error=error,
            )
        )

    def apply(self, command: Command) -> Any:
        self.index += 1
        return self.state.apply(command, self.index, self.now_ms)

    def operation(
        self, f: str, value: dict[str, Any], command: Command | None, *, lost: int
    ) -> Any:
        """Invoke, apply (unless lost before sending), complete; returns the Ok value or None.

        lost: 0 answered; 1 applied but the answer lost (info); 2 never applied (info)."""
        self.process += 1
        process = self.process
        self._line(type="invoke", process=process, f=f, value=value)
        if lost == 2:
            self._line(type="info", process=process, f=f, value=value, error="timeout")
            return None
        if command is None:  # a read
            doc = self.state.get_job(str(value["job_id"]))
            answer: Any = (
                {"state": None, "token": None, "attempts": None}
                if doc is None
                else {"state": doc["state"], "token": doc["token"], "attempts": doc["attempts"]}
            )
            ok = True
        else:
            result = self.apply(command)
            ok = isinstance(result, Ok)
            answer = result.value if isinstance(result, Ok) else None
        if lost == 1:
            self._line(type="info", process=process, f=f, value=value, error="timeout")
            return None
        if not ok:
            self._line(type="fail", process=process, f=f, value=None, error="409")
            return None
        self._line(type="ok", process=process, f=f, value=self._recorded(f, value, answer))
        return answer

    def _recorded(self, f: str, value: dict[str, Any], answer: Any) -> Any:
        if f == "submit":
            return {"job_id": value["job_id"]}
        if f == "lease":
            leases = answer["leases"]
            if not leases:
                return {"job_id": None}
            grant = leases[0]
            return {"job_id": grant["job_id"], "token": grant["token"], "attempt": grant["attempt"]}
        if f == "read":
            return answer
        return {}

    def run(self, action: Action) -> None:
        code, arg, coin = action
        lost = 1 if coin < 8 else 2 if coin < 12 else 0
        if code == 0 or not self.jobs:
            job_id = f"j{len(self.jobs) + 1}"
            spec = JobSpec(
                id=job_id,
                queue="q",
                lease_ms=LEASE_MS,
                max_attempts=MAX_ATTEMPTS,
                backoff=Backoff(initial_ms=200, multiplier=1.0, max_ms=200),
            )
            submit = {
                "job_id": job_id,
                "queue": "q",
                "lease_ms": LEASE_MS,
                "max_attempts": MAX_ATTEMPTS,
            }
            self.jobs.append(job_id)
            self.operation("submit", submit, SubmitJobs(jobs=(spec,)), lost=lost)
        elif code in (1, 2):
            worker = WORKERS[arg % len(WORKERS)]
            lease = {"queue": "q", "worker_id": worker}
            answer = self.operation("lease", lease, Lease(queue="q", worker_id=worker), lost=lost)
            if answer is not None and answer["leases"]:
                grant = answer["leases"][0]
                self.tokens.append((grant["job_id"], grant["token"]))
        elif code in (3, 4) and self.tokens:
            newest = arg % 4 != 0
            pick = len(self.tokens) - 1 if newest else arg % len(self.tokens)
            job_id, token = self.tokens[pick]
            f = ("heartbeat", "complete", "complete", "fail", "fail")[arg % 5]
            value: dict[str, Any] = {"job_id": job_id, "token": token}
            command: Command
            if f == "heartbeat":
                command = HeartbeatLease(job_id=job_id, token=token)
            elif f == "complete":
                command = Complete(job_id=job_id, token=token)
            else:
                retryable = arg % 7 != 0
                value["retryable"] = retryable
                command = Fail(job_id=job_id, token=token, retryable=retryable)
            self.operation(f, value, command, lost=lost)
        elif code == 5:
            job_id = self.jobs[arg % len(self.jobs)]
            self.operation("read", {"job_id": job_id}, None, lost=0 if coin < 90 else 2)
        elif code == 6:
            self.now_ms += arg * 3  # up to 3 s: leases expire, backoffs end
        else:
            self.apply(Tick())  # the leader's due-work entry

    def final(self) -> list[Op]:
        for job_id in self.jobs:
            doc = self.state.get_job(job_id)
            value = (
                {"state": None, "token": None, "attempts": None}
                if doc is None
                else {"state": doc["state"], "token": doc["token"], "attempts": doc["attempts"]}
            )
            self._line(type="invoke", process="final", f="final-read", value={"job_id": job_id})
            self._line(type="ok", process="final", f="final-read", value=value)
        return self.ops


actions = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1000), st.integers(0, 99)),
    min_size=20,
    max_size=150,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_histories_of_the_real_state_machine_pass_every_safety_check(
    script: list[Action],
) -> None:
    recorder = Recorder()
    for action in script:
        recorder.run(action)
    ops = recorder.final()
    leases = sum(1 for op in ops if op.f == "lease" and op.type == "ok" and op.value["job_id"])
    event(f"ok leases: {min(leases // 5 * 5, 20)}+")
    for checker in (
        check_linearizable,
        check_no_lost_jobs,
        check_no_double_completion,
        check_single_live_lease,
        check_tokens_increase,
        check_queue_order,
    ):
        result = checker(ops)
        assert result.valid is True, (checker.__name__, result.message, result.details)


def _history(script: list[Action]) -> list[Op]:
    recorder = Recorder()
    for action in script:
        recorder.run(action)
    return recorder.final()


def _reindexed(ops: list[Op]) -> list[Op]:
    return [dataclasses.replace(op, index=index) for index, op in enumerate(ops)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions, st.integers(0, 10_000))
def test_a_job_granted_to_a_second_worker_at_once_is_caught(
    script: list[Action], pick: int
) -> None:
    """Right after a real grant, a second worker is told it holds the same job too (the
    next token, the next attempt): the classic double grant. The linearizability model may
    explain it by an instant expiry; single-live-lease's expiry rule must not."""
    ops = _history(script)
    grants = [
        op for op in ops if op.f == "lease" and op.type == "ok" and op.value["job_id"] is not None
    ]
    event(f"mutated: {bool(grants)}")
    if not grants:
        return
    grant = grants[pick % len(grants)]
    twin_value = {
        "job_id": grant.value["job_id"],
        "token": grant.value["token"] + 1,
        "attempt": grant.value["attempt"] + 1,
    }
    at = dataclasses.replace(grant, process=10_000_000)
    twin = [
        dataclasses.replace(at, type="invoke", f="lease", value={"queue": "q", "worker_id": "x"}),
        dataclasses.replace(at, type="ok", f="lease", value=twin_value),
    ]
    mutated = _reindexed([*ops[: grant.index + 1], *twin, *ops[grant.index + 1 :]])
    result = check_single_live_lease(mutated)
    assert result.valid is False, result.message
    kinds = {v["kind"] for v in result.details["violations"]}
    assert "granted while the older lease was certainly live" in kinds

"""Random sequential histories of a reference queue must pass; decidable mutations must fail.

A reference implementation of the job lifecycle (the server's rules: tokens are growing log
indexes, expiry and the end of backoff happen whenever they like) runs a random script, one
operation at a time, recording what clients saw -- some answers lost (info), some requests
refused (fail). A sequential history of a correct object is linearizable, so the checker must
accept every one. Then one answer is changed in a way no order could explain (a job that
vanished, a token reused, a stale read after a completion) and the checker must reject it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
from jepsen.checkers.testing import HistoryBuilder
from jepsen.history import Op

MAX_ATTEMPTS = 3
Action = tuple[int, int, bool]


@dataclass
class RefJob:
    state: str = "pending"
    token: int = 0
    attempts: int = 0
    closed: str = ""


@dataclass
class RefQueue:
    """The server's job rules, sequential and exact."""

    jobs: dict[str, RefJob] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    log_index: int = 0
    known_tokens: dict[str, int] = field(default_factory=dict)  # what some client was told

    def next_index(self, step: int) -> int:
        self.log_index += 1 + step % 3
        return self.log_index

    def end_attempt(self, job: RefJob, *, closed: str, retryable: bool, coin: int) -> None:
        job.closed = closed
        if retryable and job.attempts < MAX_ATTEMPTS:
            job.state = "scheduled" if coin % 2 else "pending"
        else:
            job.state = "dead"


class Script:
    def __init__(self) -> None:
        self.h = HistoryBuilder()
        self.ref = RefQueue()
        self.next_process = 1

    def process(self) -> int:
        self.next_process += 1
        return self.next_process

    def finish(self, process: int, *, lost: bool, value: object) -> None:
        if lost:
            self.h.info(process)
        else:
            self.h.ok(process, value)

    def run(self, action: Action) -> None:
        code, arg, lost = action
        ref, h = self.ref, self.h
        jobs = ref.order
        job_id = jobs[arg % len(jobs)] if jobs else None
        job = ref.jobs[job_id] if job_id is not None else None
        if code == 0 or job is None:  # submit
            new = f"j{len(jobs)}"
            p = self.process()
            h.invoke(p, "submit", {"job_id": new, "queue": "q"})
            happened = not lost or arg % 2 == 0
            if happened:
                ref.jobs[new] = RefJob()
                ref.order.append(new)
            self.finish(p, lost=lost, value={"job_id": new})
            return
        assert job_id is not None
        if code == 1:  # lease: the oldest pending job
            p = self.process()
            h.invoke(p, "lease", {"queue": "q", "worker_id": f"w{p}"})
            pending = [j for j in jobs if ref.jobs[j].state == "pending"]
            if not pending:
                self.finish(p, lost=lost, value={"job_id": None})
                return
            leased = ref.jobs[pending[0]]
            leased.token = ref.next_index(arg)
            leased.attempts += 1
            leased.state, leased.closed = "leased", ""
            if not lost:
                ref.known_tokens[pending[0]] = leased.token
            self.finish(p, lost=lost, value={"job_id": pending[0], "token": leased.token})
            return
        if code in (2, 3, 4):  # heartbeat / complete / fail with the token this client knows
            token = ref.known_tokens.get(job_id)
            if token is None:
                return
            f = {2: "heartbeat", 3: "complete", 4: "fail"}[code]
            value: dict[str, object] = {"job_id": job_id, "token": token}
            if f == "fail":
                value["retryable"] = arg % 5 != 0
            p = self.process()
            h.invoke(p, f, value)
            live = job.state == "leased" and job.token == token
            repeat = job.token == token and (
                (f == "complete" and job.closed == "completed")
                or (f == "fail" and job.closed == "failed")
            )
            if not (live or repeat):
                h.fail(p, "409 stale_token")
                ref.next_index(arg)
                return
            if live and f == "complete":
                job.state, job.closed = "succeeded", "completed"
            elif live and f == "fail":
                retryable = value["retryable"] is True
                ref.end_attempt(job, closed="failed", retryable=retryable, coin=arg)
            ref.next_index(arg)
            self.finish(p, lost=lost, value={})
            return
        if code == 5:  # internal: the lease expires
            if job.state == "leased":
                ref.end_attempt(job, closed="expired", retryable=True, coin=arg)
            return
        if code == 6:  # internal: the backoff ends
            if job.state == "scheduled":
                job.state = "pending"
            return
        p = self.process()  # read
        h.invoke(p, "read", {"job_id": job_id})
        result = {"state": job.state, "token": job.token, "attempts": job.attempts}
        self.finish(p, lost=lost, value=result)

    def final(self) -> list[Op]:
        for job_id in self.ref.order:
            job = self.ref.jobs[job_id]
            self.h.final_read(job_id, job.state, job.token, job.attempts)
        return self.h.ops


actions = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1000), st.just(False)),
    min_size=10,
    max_size=60,
)
# One in five answers lost: a tuple's third item says so when the draw is below 20.
actions_with_info = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1000), st.integers(0, 99).map(lambda n: n < 20)),
    min_size=10,
    max_size=60,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _history(script_actions: list[Action]) -> list[Op]:
    script = Script()
    for action in script_actions:
        script.run(action)
    return script.final()


@SETTINGS
@given(actions_with_info)
def test_random_sequential_histories_pass(script_actions: list[Action]) -> None:
    ops = _history(script_actions)
    for checker in (
        check_linearizable,
        check_tokens_increase,
        check_single_live_lease,
        check_no_double_completion,
        check_queue_order,
    ):
        result = checker(ops)
        assert result.valid is True, (checker.__name__, result.message)


def _mutate(ops: list[Op], position: int, value: object) -> list[Op]:
    return [*ops[:position], replace(ops[position], value=value), *ops[position + 1 :]]


def _ok_reads(ops: list[Op]) -> list[int]:
    return [
        op.index
        for op in ops
        if op.type == "ok" and op.f in ("read", "final-read") and op.value.get("state")
    ]


@SETTINGS
@given(actions_with_info, st.integers(0, 10_000))
def test_a_vanished_job_is_caught(script_actions: list[Action], pick: int) -> None:
    ops = _history(script_actions)
    # Decidable only once the job certainly exists: an earlier answer showed it.
    invokes = {op.index: op for op in ops if op.type == "invoke"}
    exists_since: dict[str, int] = {}
    for op in ops:
        if op.type == "ok" and op.f != "lease" and op.process != "nemesis":
            job = invokes[op.index - 1].value.get("job_id")
            if op.f == "submit" or op.value.get("state"):
                exists_since.setdefault(job, op.index)
    reads = [
        index
        for index in _ok_reads(ops)
        if exists_since.get(invokes[index - 1].value["job_id"], index) < index - 1
    ]
    event(f"mutated: {bool(reads)}")
    if not reads:
        return
    position = reads[pick % len(reads)]
    ops = _mutate(ops, position, {"state": None, "token": 0, "attempts": 0})
    assert check_linearizable(ops).valid is False


@settings(SETTINGS, max_examples=300)
@given(actions, st.integers(0, 10_000))
def test_a_reused_token_is_caught(script_actions: list[Action], pick: int) -> None:
    ops = _history(script_actions)
    leases = [op for op in ops if op.type == "ok" and op.f == "lease" and op.value["job_id"]]
    seen: dict[str, int] = {}
    candidates: list[tuple[int, int]] = []
    for op in leases:
        job = op.value["job_id"]
        if job in seen:
            candidates.append((op.index, seen[job]))
        seen[job] = op.value["token"]
    event(f"mutated: {bool(candidates)}")
    if not candidates:
        return
    position, earlier_token = candidates[pick % len(candidates)]
    value = {**ops[position].value, "token": earlier_token}
    ops = _mutate(ops, position, value)
    assert check_linearizable(ops).valid is False
    assert check_tokens_increase(ops).valid is False


@SETTINGS
@given(actions_with_info, st.integers(0, 10_000))
def test_a_stale_read_after_completion_is_caught(script_actions: list[Action], pick: int) -> None:
    ops = _history(script_actions)
    invokes = {op.index: op for op in ops if op.type == "invoke"}
    completed_at: dict[str, int] = {}
    for op in ops:
        if op.type == "ok" and op.f == "complete":
            completed_at.setdefault(invokes[op.index - 1].value["job_id"], op.index)
    stale = [
        index
        for index in _ok_reads(ops)
        if (job := invokes[index - 1].value["job_id"]) in completed_at
        and completed_at[job] < index - 1
    ]
    event(f"mutated: {bool(stale)}")
    if not stale:
        return
    position = stale[pick % len(stale)]
    value = {**ops[position].value, "state": "leased"}
    ops = _mutate(ops, position, value)
    assert check_linearizable(ops).valid is False


# -- concurrent histories -------------------------------------------------------------------
#
# The same reference queue, but operations overlap: each is invoked, takes effect at some
# later step (atomically, on the reference), and returns later still -- or its answer is
# lost (info), possibly before it took effect, in which case it may take effect later or
# never. Such a history is linearizable by construction (order the ops by their effect), so
# every safety checker must accept it.

SLOTS = 4


@dataclass
class InFlight:
    process: int
    f: str
    value: dict[str, object]
    applied: bool = False
    refused: bool = False
    result: dict[str, object] = field(default_factory=dict)


class ConcurrentScript:
    def __init__(self) -> None:
        self.h = HistoryBuilder()
        self.ref = RefQueue()
        self.next_process = 0
        self.slots: list[InFlight | None] = [None] * SLOTS
        self.zombies: list[InFlight] = []  # answered info before taking effect
        self.tokens: list[tuple[str, int]] = []  # every token a client was told
        self.submitted = 0

    def new_process(self) -> int:
        self.next_process += 1
        return self.next_process

    def invoke(self, slot: int, code: int, arg: int) -> None:
        if self.slots[slot] is not None:
            return
        ref = self.ref
        value: dict[str, object]
        if code == 0 or not ref.order:
            self.submitted += 1
            f, value = "submit", {"job_id": f"j{self.submitted}", "queue": "q"}
        elif code in (1, 2):
            f, value = "lease", {"queue": "q", "worker_id": f"w{slot}"}
        elif code in (3, 4) and self.tokens:
            # mostly the newest tokens (live leases), sometimes an old one (stale)
            newest = arg % 4 != 0
            pick = len(self.tokens) - 1 - arg % min(2, len(self.tokens)) if newest else arg
            job_id, token = self.tokens[pick % len(self.tokens)]
            f = ("heartbeat", "complete", "complete", "fail", "fail")[arg % 5]
            value = {"job_id": job_id, "token": token}
            if f == "fail":
                value["retryable"] = arg % 7 != 0
        else:
            f, value = "read", {"job_id": ref.order[arg % len(ref.order)]}
        op = InFlight(process=self.new_process(), f=f, value=value)
        self.h.invoke(op.process, f, value)
        self.slots[slot] = op

    def apply(self, op: InFlight, arg: int) -> None:
        """The op takes effect now, atomically, by the server's rules."""
        if op.applied:
            return
        op.applied = True
        ref = self.ref
        if op.f == "submit":
            job_id = str(op.value["job_id"])
            if job_id not in ref.jobs:
                ref.jobs[job_id] = RefJob()
                ref.order.append(job_id)
            op.result = {"job_id": job_id}
            return
        if op.f == "lease":
            pending = [j for j in ref.order if ref.jobs[j].state == "pending"]
            if not pending:
                op.result = {"job_id": None}
                return
            job = ref.jobs[pending[0]]
            job.token = ref.next_index(arg)
            job.attempts += 1
            job.state, job.closed = "leased", ""
            op.result = {"job_id": pending[0], "token": job.token, "attempt": job.attempts}
            return
        if op.f == "read":
            job_ref = ref.jobs.get(str(op.value["job_id"]))
            if job_ref is None:
                op.result = {"state": None, "token": None, "attempts": None}
            else:
                op.result = {
                    "state": job_ref.state,
                    "token": job_ref.token,
                    "attempts": job_ref.attempts,
                }
            return
        job = ref.jobs[str(op.value["job_id"])]
        token = op.value["token"]
        live = job.state == "leased" and job.token == token
        repeat = job.token == token and (
            (op.f == "complete" and job.closed == "completed")
            or (op.f == "fail" and job.closed == "failed")
        )
        ref.next_index(arg)
        if not (live or repeat):
            op.refused = True
            return
        if live and op.f == "complete":
            job.state, job.closed = "succeeded", "completed"
        elif live and op.f == "fail":
            retryable = op.value["retryable"] is True
            ref.end_attempt(job, closed="failed", retryable=retryable, coin=arg)
        op.result = {}

    def complete(self, slot: int, *, lose: bool) -> None:
        op = self.slots[slot]
        if op is None:
            return
        if not op.applied and not lose:
            return  # it has not happened yet: it cannot answer
        self.slots[slot] = None
        if lose:
            self.h.info(op.process)
            if not op.applied:
                self.zombies.append(op)
            return
        if op.refused:
            self.h.fail(op.process, "409 stale_token")
            return
        self.h.ok(op.process, op.result)
        if op.f == "lease" and op.result.get("job_id") is not None:
            token = op.result["token"]
            assert isinstance(token, int)
            self.tokens.append((str(op.result["job_id"]), token))

    def run(self, action: tuple[int, int, int]) -> None:
        code, arg, coin = action
        slot = arg % SLOTS
        if code <= 5:
            self.invoke(slot, code, arg)
        elif code in (6, 7):
            op = self.slots[slot]
            if op is not None:
                self.apply(op, arg)
            elif self.zombies and coin < 30:
                self.apply(self.zombies.pop(arg % len(self.zombies)), arg)
        elif code in (8, 9):
            self.complete(slot, lose=coin < 10)
        elif code == 10 and self.ref.order and coin < 40:  # internal moves, now and then
            job = self.ref.jobs[self.ref.order[arg % len(self.ref.order)]]
            if job.state == "leased":
                self.ref.end_attempt(job, closed="expired", retryable=True, coin=arg)
            elif job.state == "scheduled":
                job.state = "pending"

    def final(self) -> list[Op]:
        for slot, op in enumerate(self.slots):
            if op is not None:
                self.apply(op, slot)  # the last ops take effect and answer
                self.complete(slot, lose=False)
        for job_id in self.ref.order:
            job = self.ref.jobs[job_id]
            self.h.final_read(job_id, job.state, job.token, job.attempts)
        return self.h.ops


concurrent_actions = st.lists(
    st.tuples(st.integers(0, 10), st.integers(0, 1000), st.integers(0, 99)),
    min_size=10,
    max_size=150,
)


@SETTINGS
@given(concurrent_actions)
def test_random_concurrent_histories_pass(script_actions: list[tuple[int, int, int]]) -> None:
    script = ConcurrentScript()
    for action in script_actions:
        script.run(action)
    ops = script.final()
    event(f"info ops: {min(5, sum(1 for op in ops if op.type == 'info'))}+")
    for checker in (
        check_linearizable,
        check_tokens_increase,
        check_single_live_lease,
        check_no_double_completion,
        check_no_lost_jobs,
        check_queue_order,
    ):
        result = checker(ops)
        assert result.valid is True, (checker.__name__, result.message, result.details)


def _concurrent_history(script_actions: list[tuple[int, int, int]]) -> list[Op]:
    script = ConcurrentScript()
    for action in script_actions:
        script.run(action)
    return script.final()


long_concurrent_actions = st.lists(
    st.tuples(st.integers(0, 10), st.integers(0, 1000), st.integers(0, 99)),
    min_size=100,
    max_size=200,
)


@settings(SETTINGS, max_examples=50)
@given(long_concurrent_actions, st.integers(0, 10_000))
def test_concurrent_token_regression_is_caught(
    script_actions: list[tuple[int, int, int]], pick: int
) -> None:
    """A lease invoked after an earlier lease of the same job returned gets the earlier
    token: decidable in any interleaving (real-time order fixes their order)."""
    ops = _concurrent_history(script_actions)
    invokes: dict[object, Op] = {}
    paired: list[tuple[Op, Op]] = []
    for op in ops:
        if op.type == "invoke":
            invokes[op.process] = op
        elif op.f == "lease" and op.type == "ok" and op.value.get("job_id"):
            paired.append((invokes[op.process], op))
    candidates = [
        (later_ok.index, earlier_ok.value["token"])
        for earlier_invoke, earlier_ok in paired
        for later_invoke, later_ok in paired
        if earlier_ok.value["job_id"] == later_ok.value["job_id"]
        and earlier_ok.index < later_invoke.index
    ]
    event(f"mutated: {bool(candidates)}")
    if not candidates:
        return
    position, token = candidates[pick % len(candidates)]
    ops = _mutate(ops, position, {**ops[position].value, "token": token})
    assert check_tokens_increase(ops).valid is False
    assert check_linearizable(ops).valid is False


@settings(SETTINGS, max_examples=50)
@given(long_concurrent_actions, st.integers(0, 10_000))
def test_concurrent_second_completion_is_caught(
    script_actions: list[tuple[int, int, int]], pick: int
) -> None:
    """An extra acknowledged complete with another token of a completed job."""
    ops = _concurrent_history(script_actions)
    invokes = {op.index: op for op in ops if op.type == "invoke"}
    by_process = {}
    completes = []
    for op in ops:
        if op.type == "invoke":
            by_process[op.process] = op
        elif op.f == "complete" and op.type == "ok":
            completes.append(by_process[op.process].value)
    event(f"mutated: {bool(completes)}")
    if not completes or not invokes:
        return
    done = completes[pick % len(completes)]
    h = HistoryBuilder()
    h.ops = list(ops)
    h.complete(10_000_000, str(done["job_id"]), int(str(done["token"])) + 1)
    assert check_no_double_completion(h.ops).valid is False
    assert check_linearizable(h.ops).valid is False

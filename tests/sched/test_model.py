"""Hypothesis drives the state machine and a small, obviously correct reference model side by
side, and checks every invariant after every step.

The model keeps a plain dict of jobs and finds the next job to lease by sorting every pending job
(no heaps, no lazy deletion, no counters); it expires leases and workers by scanning them. Jobs
use a zero backoff, so a retried job is pending again at once and the model needs no delay
arithmetic beyond `delay_ms`.

Invariants (SPEC §8's checkers, applied to the state machine itself): every command's outcome
matches the model (same refusal code, same leased jobs in the same order); every job is there
with the same state, token and attempt count (no job lost); at most one live lease per job, held
by exactly one registered worker; tokens strictly increase per job; no job completed twice;
counts per state match a recount. A twin instance fed the same entries, replaced now and then by
a restore of the real one's snapshot, must always have the same state hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftsched.sched import Ok, Refused, Result, SchedulerState
from raftsched.sched import commands as c
from raftsched.sched.job import STATES, TERMINAL
from raftsched.sched.limits import Limits

T0 = 1_700_000_000_000
IDS = [f"j{i}" for i in range(10)]
WORKERS = ["w1", "w2", "w3"]
NO_BACKOFF = c.Backoff(initial_ms=0, multiplier=1.0, max_ms=0)
LIMITS = Limits()


@dataclass
class MJob:
    spec: c.JobSpec
    seq: int
    state: str
    run_at: int
    max_attempts: int
    lease_ms: int
    token: int = 0
    attempts: int = 0
    expires: int = 0
    worker: str | None = None
    closed_by: str | None = None
    completions: int = 0


@dataclass
class MWorker:
    capacity: int
    ttl: int
    last_seen: int

    @property
    def expires(self) -> int:
        return self.last_seen + self.ttl


@dataclass
class Model:
    clock: int = T0
    seq: int = 0
    jobs: dict[str, MJob] = field(default_factory=dict)
    workers: dict[str, MWorker] = field(default_factory=dict)
    max_in_flight: int | None = None
    paused: bool = False

    def advance(self, stamp: int) -> None:
        self.clock = max(self.clock, stamp)
        for wid in sorted(self.workers):
            if self.workers[wid].expires <= self.clock:
                del self.workers[wid]
                for j in self.jobs.values():
                    if j.state == "leased" and j.worker == wid:
                        self.release(j, "worker_expired")
        for j in self.jobs.values():
            if j.state == "leased" and j.expires <= self.clock:
                self.release(j, "expired")
            if j.state == "scheduled" and j.run_at <= self.clock:
                j.state = "pending"

    def release(self, j: MJob, closed_by: str) -> None:
        j.closed_by = closed_by
        j.state = "pending" if j.attempts < j.max_attempts else "dead"

    def submit(self, specs: tuple[c.JobSpec, ...]) -> str | None:
        for s in specs:
            if s.id in self.jobs and self.jobs[s.id].spec != s:
                return "conflict"
        for s in specs:
            if s.id in self.jobs:
                continue
            assert s.id is not None
            self.seq += 1
            run_at = self.clock + (s.delay_ms or 0)
            self.jobs[s.id] = MJob(
                s,
                self.seq,
                "scheduled" if run_at > self.clock else "pending",
                run_at,
                s.max_attempts or 3,
                s.lease_ms or 30_000,
            )
        return None

    def lease(self, worker_id: str, max_jobs: int, index: int) -> list[str]:
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = MWorker(16, 30_000, self.clock)
        worker.last_seen = self.clock
        held = sum(1 for j in self.jobs.values() if j.state == "leased" and j.worker == worker_id)
        pending = sorted(
            (j for j in self.jobs.values() if j.state == "pending"),
            key=lambda j: (-j.spec.priority, j.seq),
        )
        leased_in_queue = sum(1 for j in self.jobs.values() if j.state == "leased")
        room = 0 if self.paused else len(pending)
        if self.max_in_flight is not None:
            room = min(room, max(0, self.max_in_flight - leased_in_queue))
        n = max(0, min(max_jobs, worker.capacity - held, room))
        for j in pending[:n]:
            j.state, j.token, j.worker = "leased", index, worker_id
            j.attempts += 1
            j.expires = self.clock + j.lease_ms
            j.closed_by = None
        return [j.spec.id or "" for j in pending[:n]]

    def held(self, job_id: str, token: int) -> str | MJob:
        j = self.jobs.get(job_id)
        if j is None:
            return "not_found"
        if token != j.token:
            return "stale_token"
        if j.state == "leased":
            return j
        if j.closed_by in ("expired", "worker_expired"):
            return "lease_expired"
        if j.state in TERMINAL:
            return "already_terminal"
        return "not_leased"

    def touch(self, j: MJob) -> None:
        if j.worker in self.workers:
            self.workers[j.worker].last_seen = self.clock


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sut = SchedulerState(LIMITS)
        self.twin = SchedulerState(LIMITS)
        self.model = Model()
        self.index = 0
        self.now = T0
        self.last_token: dict[str, int] = {}

    def apply(self, cmd: c.Command) -> Result:
        self.index += 1
        self.model.advance(self.now)
        result = self.sut.apply(cmd, self.index, self.now)
        twin_result = self.twin.apply(cmd, self.index, self.now)
        assert type(twin_result) is type(result)
        return result

    def expect(self, result: Result, code: str | None) -> None:
        if code is None:
            assert isinstance(result, Ok), result
        else:
            assert isinstance(result, Refused), (result, code)
            assert result.error.code == code, (result.error, code)

    # -- rules ---------------------------------------------------------------------------------

    @rule(ms=st.sampled_from([0, 1, 500, 5_000, 29_999, 30_000, 60_000]))
    def tick(self, ms: int) -> None:
        self.now += ms
        self.expect(self.apply(c.Tick()), None)

    @rule(
        jobs=st.lists(
            st.tuples(
                st.sampled_from(IDS),
                st.integers(0, 2),
                st.sampled_from([None, 0, 1_000, 40_000]),
                st.sampled_from([None, 1, 2]),
                st.sampled_from([None, 1_000, 20_000]),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        )
    )
    def submit(self, jobs: list[tuple[str, int, int | None, int | None, int | None]]) -> None:
        specs = tuple(
            c.JobSpec(
                id=i,
                queue="q",
                priority=p,
                delay_ms=d,
                max_attempts=m,
                lease_ms=lm,
                backoff=NO_BACKOFF,
            )
            for i, p, d, m, lm in jobs
        )
        result = self.apply(c.SubmitJobs(jobs=specs))
        self.expect(result, self.model.submit(specs))

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4))
    def lease(self, worker: str, n: int) -> None:
        result = self.apply(c.Lease(queue="q", worker_id=worker, max_jobs=n))
        expected = self.model.lease(worker, n, self.index)
        assert isinstance(result, Ok), result
        got = [g["job_id"] for g in result.value["leases"]]
        assert got == expected
        for g in result.value["leases"]:
            assert g["token"] == self.index
            assert g["token"] > self.last_token.get(g["job_id"], 0), "token did not grow"
            self.last_token[g["job_id"]] = g["token"]

    def _token(self, job_id: str, which: str) -> int:
        current = self.model.jobs[job_id].token if job_id in self.model.jobs else 1
        return {"current": max(current, 1), "older": max(current - 1, 1), "newer": current + 1}[
            which
        ]

    def _model_complete(self, job_id: str, token: int) -> str | None:
        """The model's outcome of a complete: None (ok) or the refusal code."""
        held = self.model.held(job_id, token)
        j = self.model.jobs.get(job_id)
        if isinstance(held, MJob):
            self.model.touch(held)
            held.state, held.closed_by = "succeeded", "completed"
            held.completions += 1
            return None
        if j is not None and j.state == "succeeded" and j.token == token:
            return None  # the same answer again, nothing changes
        return held

    def _model_fail(self, job_id: str, token: int, retryable: bool) -> str | None:
        held = self.model.held(job_id, token)
        j = self.model.jobs.get(job_id)
        if isinstance(held, MJob):
            self.model.touch(held)
            held.closed_by = "failed"
            retry = retryable and held.attempts < held.max_attempts
            held.state = "pending" if retry else "dead"
            return None
        if j is not None and j.token == token and j.closed_by == "failed":
            return None  # a retried fail: acknowledged again, nothing changes
        return held

    @rule(
        job_id=st.sampled_from(IDS), which=st.sampled_from(["current", "current", "older", "newer"])
    )
    def complete(self, job_id: str, which: str) -> None:
        token = self._token(job_id, which)
        result = self.apply(c.Complete(job_id=job_id, token=token, result={"t": token}))
        self.expect(result, self._model_complete(job_id, token))

    @rule(
        job_id=st.sampled_from(IDS),
        which=st.sampled_from(["current", "older"]),
        retryable=st.booleans(),
    )
    def fail(self, job_id: str, which: str, retryable: bool) -> None:
        token = self._token(job_id, which)
        result = self.apply(c.Fail(job_id=job_id, token=token, error="x", retryable=retryable))
        self.expect(result, self._model_fail(job_id, token, retryable))

    @rule(
        reports=st.lists(
            st.tuples(
                st.sampled_from(IDS),
                st.sampled_from(["current", "current", "older", "newer"]),
                st.sampled_from(["complete", "fail", "fail_final"]),
            ),
            min_size=1,
            max_size=5,
            unique_by=lambda t: t[0],
        )
    )
    def report_batch(self, reports: list[tuple[str, str, str]]) -> None:
        """One entry, each report judged on its own, in order, exactly as a single one."""
        items: list[c.Complete | c.Fail] = []
        for job_id, which, kind in reports:
            token = self._token(job_id, which)
            items.append(
                c.Complete(job_id=job_id, token=token, result={"t": token})
                if kind == "complete"
                else c.Fail(job_id=job_id, token=token, error="x", retryable=kind == "fail")
            )
        result = self.apply(c.ReportBatch(reports=tuple(items)))
        assert isinstance(result, Ok), result
        got = result.value["results"]
        assert [r["job_id"] for r in got] == [i.job_id for i in items]
        for item, r in zip(items, got, strict=True):
            if isinstance(item, c.Complete):
                code = self._model_complete(item.job_id, item.token)
            else:
                code = self._model_fail(item.job_id, item.token, item.retryable)
            if code is None:
                assert r["ok"] is True and "error" not in r, r
                assert r["state"] == self.model.jobs[item.job_id].state
            else:
                assert r["error"]["code"] == code and "ok" not in r, (r, code)

    @rule(job_id=st.sampled_from(IDS), extend=st.sampled_from([None, 10, 100_000]))
    def heartbeat(self, job_id: str, extend: int | None) -> None:
        token = self._token(job_id, "current")
        result = self.apply(c.HeartbeatLease(job_id=job_id, token=token, extend_ms=extend))
        held = self.model.held(job_id, token)
        if isinstance(held, MJob):
            self.model.touch(held)
            held.expires = max(held.expires, self.model.clock + (extend or held.lease_ms))
            self.expect(result, None)
            assert isinstance(result, Ok) and result.value["lease_expires_at"] == held.expires
        else:
            self.expect(result, held)

    @rule(job_id=st.sampled_from(IDS))
    def cancel(self, job_id: str) -> None:
        result = self.apply(c.Cancel(job_id=job_id))
        j = self.model.jobs.get(job_id)
        if j is None:
            self.expect(result, "not_found")
        elif j.state in TERMINAL:
            self.expect(result, "already_terminal")
        else:
            if j.state == "leased":
                j.closed_by = "cancelled"
            j.state = "cancelled"
            self.expect(result, None)

    @rule(
        worker=st.sampled_from(WORKERS),
        capacity=st.integers(0, 3),
        ttl=st.sampled_from([None, 1_000, 100_000]),
    )
    def worker_heartbeat(self, worker: str, capacity: int, ttl: int | None) -> None:
        self.expect(
            self.apply(c.WorkerHeartbeat(worker_id=worker, capacity=capacity, ttl_ms=ttl)), None
        )
        self.model.workers[worker] = MWorker(capacity, ttl or 30_000, self.model.clock)

    @rule(max_in_flight=st.sampled_from([None, 0, 1, 3]), paused=st.booleans())
    def configure(self, max_in_flight: int | None, paused: bool) -> None:
        self.expect(
            self.apply(c.ConfigureQueue(queue="q", max_in_flight=max_in_flight, paused=paused)),
            None,
        )
        self.model.max_in_flight, self.model.paused = max_in_flight, paused

    @rule()
    def restore_twin_from_snapshot(self) -> None:
        self.twin = SchedulerState.restore(self.sut.snapshot())

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def same_jobs_as_the_model(self) -> None:
        assert set(self.sut.jobs) == set(self.model.jobs), "a job was lost or invented"
        for job_id, m in self.model.jobs.items():
            doc = self.sut.get_job(job_id)
            assert doc is not None
            assert (doc["state"], doc["token"], doc["attempts"]) == (
                m.state,
                m.token,
                m.attempts,
            ), job_id
            assert m.completions <= 1
            states = [e["state"] for e in doc["events"]]
            assert states.count("succeeded") <= 1, "completed twice"
            tokens = [e["token"] for e in doc["events"]]
            assert tokens == sorted(tokens), "tokens went backwards"

    @invariant()
    def one_live_lease_per_job(self) -> None:
        holders: dict[str, str] = {}
        for worker in self.sut.workers.values():
            for job_id in worker.leased:
                assert job_id not in holders, "two workers hold one job"
                holders[job_id] = worker.id
        for job in self.sut.jobs.values():
            if job.state == "leased":
                assert holders.get(job.id) == job.worker_id, "a lease without its worker"
                assert job.lease_expires_ms > self.sut.clock_ms, "a dead lease still held"
            else:
                assert job.id not in holders

    @invariant()
    def counts_match_a_recount(self) -> None:
        recount: dict[str, int] = dict.fromkeys(STATES, 0)
        for job in self.model.jobs.values():
            recount[job.state] += 1
        counts = self.sut.queue_counts().get("q", dict.fromkeys(STATES, 0))
        assert counts == recount

    @invariant()
    def twin_has_the_same_state(self) -> None:
        assert self.twin.state_hash() == self.sut.state_hash()


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestScheduler = SchedulerMachine.TestCase

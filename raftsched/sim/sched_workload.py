"""Scheduler clients in virtual time: submitters, workers and the leaders' ticker.

Theory of operation: every client action is one scheduler command sent to the node the actor
believes leads, with a timeout; "not leader" and timeouts are retried (a safety-phase request
gives up after `max_attempts`, its outcome unknown; in the liveness phase, `finishing`, it is
retried until it applies). A retry is a new log entry: submits carry idempotency keys and
client-chosen job ids, and token operations are naturally idempotent, so a retry applies once.
Leases carry no key: a lost grant's job just stays leased until its lease expires.
  - Submitters send SubmitJobs of 1-3 jobs (some with priorities, delays, dependencies on
    their earlier acknowledged jobs or inside the batch).
  - Workers register (WorkerHeartbeat), lease up to their capacity, heartbeat long jobs,
    then complete or fail(retryable) with the token they got. Sometimes a worker stalls past
    its lease (in the safety phase only): the job is released and re-leased, and the stalled
    worker then sends its complete with the stale token, which must be refused.
  - The ticker is the leader-side timer of SPEC §4: each tick, every node that believes it
    leads proposes a Tick when its state's next_deadline_ms() has come by its own clock.
Every answer a client receives goes to SchedChecks (sched_checks.py) and into the trace.
Everything random comes from the run's seed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftsched.app import SchedApp
from raftsched.raft.types import NodeId, Role
from raftsched.sched import (
    Backfill,
    Backoff,
    Command,
    Complete,
    ConfigureQueue,
    Fail,
    HeartbeatLease,
    JobSpec,
    JobTemplate,
    Lease,
    Ok,
    PutSchedule,
    Refused,
    ReportBatch,
    Result,
    SubmitJobs,
    Tick,
    WorkerHeartbeat,
)
from raftsched.sched.commands import MISFIRE_POLICIES
from raftsched.sched.errors import error_from_wire

from .app import MS_PER_UNIT
from .events import UNITS_PER_TICK, EventLoop
from .node_host import NodeHost, Reply
from .sched_app import SchedRequest
from .sched_checks import CRON_NAME, SchedChecks

QUEUE = "q"
CRON_EXPR = "*/5 * * * * *"  # every CRON_EVERY_MS (a leading seconds field)
SIM_BACKOFF = Backoff(initial_ms=200, multiplier=2.0, max_ms=1_000)  # retries within a run
MAX_ACKED_FOR_DEPS = 8  # dependencies are drawn from a submitter's last few acknowledged jobs


@dataclass(slots=True)
class SchedWorkload:
    submitters: int = 2
    workers: int = 3
    worker_capacity: int = 2
    jobs_per_submit_max: int = 3
    submit_think_units: tuple[int, int] = (40, 140)
    priority_fraction: float = 0.3
    delay_fraction: float = 0.2
    delay_ms_max: int = 3_000
    dependency_fraction: float = 0.25
    lease_ms: int = 1_500
    worker_ttl_ms: int = 4_000
    max_attempts: int = 4  # of a job
    backoff: Backoff = SIM_BACKOFF
    work_units: tuple[int, int] = (5, 120)
    stall_probability: float = 0.12
    fail_probability: float = 0.15
    fatal_fail_probability: float = 0.03  # fail(retryable=False)
    poll_units: int = 2 * UNITS_PER_TICK  # after an empty lease
    # Once healing, idle workers poll slowly: quiet moments let the replicas converge.
    finishing_poll_units: int = 10 * UNITS_PER_TICK
    timeout_units: int = 25 * UNITS_PER_TICK
    retry_units: int = 2 * UNITS_PER_TICK
    max_attempts_per_request: int = 4
    ticker_timeout_units: int = 20 * UNITS_PER_TICK
    # A skewed node's clock offset: |skew| drawn from this range, either sign.
    skew_ms: tuple[int, int] = (1_000, 5_000)
    # Token operations that quote a wrong (another job's) or future token on purpose.
    bad_token_probability: float = 0.05
    # Submits that reuse an earlier idempotency key with a different body.
    key_reuse_probability: float = 0.08
    readers: int = 1  # clients reading job documents through ReadIndex
    read_think_units: tuple[int, int] = (10, 60)
    # The operator reconfigures the queue (max_in_flight, pause) every so often.
    operator_think_units: tuple[int, int] = (200, 600)
    # A cron schedule firing every CRON_EVERY_MS into the queue, with a misfire policy
    # drawn per run, and backfills of ranges before now.
    cron: bool = True
    backfill_probability: float = 0.3  # per operator turn


@dataclass(slots=True)
class _Call:
    actor: str
    command: Command
    done: Callable[[Result | None, int], None]  # (result or None: unknown, entry index)
    background: bool  # a lease poll: not counted as a pending operation
    attempts: int = 0
    token: int = 0  # names the attempt a reply or timeout belongs to


class SchedClients:
    """Every scheduler client of one run, plus the ticker."""

    def __init__(
        self,
        *,
        loop: EventLoop,
        rng: random.Random,
        workload: SchedWorkload,
        hosts: Callable[[], dict[NodeId, NodeHost]],
        trace: Callable[[str], None],
        checks: SchedChecks,
    ) -> None:
        self._loop = loop
        self._rng = rng
        self.workload = workload
        self._hosts = hosts
        self._trace = trace
        self.checks = checks
        self._finishing = False
        self.stopped = False
        self._calls: dict[int, _Call] = {}  # call id -> call
        self._reads: dict[int, tuple[str, str, int, int]] = {}  # id -> (actor, job, t0, tries)
        self._read_token = 0
        self._submitted_keys: dict[str, list[tuple[str, list[str]]]] = {}  # actor -> (key, ids)
        self.cron_misfire = "fire_all"
        self._next_call = 0
        self._next_attempt = 0
        self._leader_guess: dict[str, NodeId] = {}
        self._requests = 0
        self._acked: dict[str, list[str]] = {}  # submitter -> its acknowledged job ids
        self._held: dict[str, int] = {}  # worker -> jobs it holds
        self._ticks_outstanding: dict[NodeId, int] = {}  # node -> time its Tick was proposed
        self.acked_writes: list[tuple[int, int]] = []  # (index, 0): for check_acknowledged
        self.told: list[str] = []  # what each client was told, in order

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        wl, rng = self.workload, self._rng
        for n in range(wl.submitters):
            actor = f"s{n}"
            self._acked[actor] = []
            self._loop.call_later(rng.randint(1, 50), functools.partial(self._submit, actor, 0))
        for n in range(wl.workers):
            actor = f"w{n}"
            self._held[actor] = 0
            self._loop.call_later(rng.randint(1, 50), functools.partial(self._register, actor))
        for n in range(wl.readers):
            actor = f"r{n}"
            self._loop.call_later(rng.randint(50, 150), functools.partial(self._read, actor))
        lo, hi = wl.operator_think_units
        self._loop.call_later(rng.randint(lo, hi), self._operate)
        if wl.cron:
            self.cron_misfire = self.checks.cron_policy = rng.choice(MISFIRE_POLICIES)
            self._loop.call_later(rng.randint(20, 80), self._put_schedule)
        self._loop.call_later(UNITS_PER_TICK, self._tick)

    @property
    def finishing(self) -> bool:
        return self._finishing

    @finishing.setter
    def finishing(self, value: bool) -> None:
        if value and not self._finishing:
            self._loop.call_later(UNITS_PER_TICK, self._restore_queue)
        self._finishing = value

    def _restore_queue(self) -> None:
        """Healing: the queue must serve again so every job can end. Re-checked until the
        end, as an earlier pause may still be in flight and apply after a resume."""
        if self.stopped:
            return
        self._loop.call_later(20 * UNITS_PER_TICK, self._restore_queue)
        leader = next((h for h in self._hosts().values() if _leads(h)), None)
        if leader is None or any(c.actor == "op" for c in self._calls.values()):
            return
        app = leader.app
        assert isinstance(app, SchedApp)
        queue = app.state.queues.get(QUEUE)
        if queue is not None and (queue.config.paused or queue.config.max_in_flight is not None):
            resume = ConfigureQueue(QUEUE, max_in_flight=None, paused=False)
            self._call("op", resume, self._configured)

    def skew_one_clock(self) -> tuple[NodeId, int]:
        """Give one node a skewed wall clock: its stamps run ahead or lag behind."""
        hosts = sorted(self._hosts())
        node_id = self._rng.choice(hosts)
        skew_ms = self._rng.randint(*self.workload.skew_ms) * self._rng.choice((-1, 1))
        self._hosts()[node_id].clock_skew_ms = skew_ms
        self._trace(f"node {node_id} clock skew {skew_ms} ms")
        return node_id, skew_ms

    def pending_count(self) -> int:
        """Operations still waiting for an outcome (lease polls excluded), reads included."""
        return sum(1 for c in self._calls.values() if not c.background) + len(self._reads)

    def operations(self) -> int:
        return self._requests

    # -- the request machinery --------------------------------------------------------------

    def _call(
        self,
        actor: str,
        command: Command,
        done: Callable[[Result | None, int], None],
        background: bool = False,
    ) -> None:
        if self.stopped:
            return
        self._next_call += 1
        self._requests += 1
        call_id = self._next_call
        self._calls[call_id] = _Call(actor, command, done, background)
        self._attempt(call_id)

    def _target(self, actor: str) -> NodeHost | None:
        hosts = [h for h in self._hosts().values() if not h.retired]
        if not hosts:
            return None
        by_id = {h.node_id: h for h in hosts}
        guess = self._leader_guess.get(actor, 0)
        return by_id[guess] if guess in by_id else self._rng.choice(hosts)

    def _attempt(self, call_id: int) -> None:
        call = self._calls.get(call_id)
        if call is None or self.stopped:
            return
        call.attempts += 1
        self._next_attempt += 1
        token = call.token = self._next_attempt
        self._loop.call_later(self.workload.timeout_units, lambda: self._timeout(call_id, token))
        host = self._target(call.actor)
        if host is None:
            return
        node_id, request = host.node_id, SchedRequest(call.command)
        reply: Callable[[Reply], None] = lambda r: self._loop.call_later(  # noqa: E731
            self._rng.randint(1, 3), lambda: self._on_reply(call_id, token, node_id, r)
        )
        self._loop.call_later(self._rng.randint(1, 3), lambda: host.propose(request, reply))

    def _on_reply(self, call_id: int, token: int, node_id: NodeId, reply: Reply) -> None:
        call = self._calls.get(call_id)
        if call is None or call.token != token:
            return  # a late answer to an attempt already given up on
        if not reply.ok:
            self._leader_guess[call.actor] = reply.leader_hint
            self._retry_or_give_up(call_id, call)
            return
        self._leader_guess[call.actor] = node_id
        del self._calls[call_id]
        result = reply.value
        assert isinstance(result, Ok | Refused), result
        self.acked_writes.append((reply.index, 0))
        call.done(result, reply.index)

    def _timeout(self, call_id: int, token: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.token != token:
            return
        if self._rng.random() < 0.5:
            self._leader_guess[call.actor] = 0
        self._retry_or_give_up(call_id, call)

    def _retry_or_give_up(self, call_id: int, call: _Call) -> None:
        call.token = 0
        if self.finishing or call.attempts < self.workload.max_attempts_per_request:
            self._loop.call_later(self.workload.retry_units, lambda: self._attempt(call_id))
            return
        del self._calls[call_id]
        call.done(None, 0)

    def _tell(self, actor: str, what: str, result: Result | None, index: int) -> None:
        if result is None:
            outcome = "unknown"
        elif isinstance(result, Ok):
            outcome = "ok"
        else:
            outcome = f"refused {result.code}"
        line = f"{actor} {what}: {outcome} @{index}"
        self.told.append(line)
        self._trace(f"sched client {line}")

    # -- submitters -----------------------------------------------------------------------

    def _submit(self, actor: str, n: int) -> None:
        if self.finishing or self.stopped:
            return
        rng, wl = self._rng, self.workload
        specs: list[JobSpec] = []
        acked = self._acked[actor]
        for k in range(rng.randint(1, wl.jobs_per_submit_max)):
            deps: tuple[str, ...] = ()
            if rng.random() < wl.dependency_fraction:
                if specs and rng.random() < 0.5:
                    deps = (specs[-1].id or "",)
                elif acked:
                    deps = (rng.choice(acked[-MAX_ACKED_FOR_DEPS:]),)
            specs.append(
                JobSpec(
                    id=f"{actor}-{n}-{k}",
                    queue=QUEUE,
                    payload={"n": n, "k": k},
                    priority=rng.randint(-2, 5) if rng.random() < wl.priority_fraction else 0,
                    delay_ms=(
                        rng.randint(100, wl.delay_ms_max)
                        if rng.random() < wl.delay_fraction
                        else None
                    ),
                    max_attempts=wl.max_attempts,
                    backoff=wl.backoff,
                    lease_ms=wl.lease_ms,
                    depends_on=deps,
                )
            )
        earlier = self._submitted_keys.get(actor)
        if earlier and rng.random() < wl.key_reuse_probability:
            # The same key with another body: must be refused, never applied as new jobs.
            key, first_ids = rng.choice(earlier)
            reuse = SubmitJobs(tuple(specs), idempotency_key=key)
            done = functools.partial(self._key_reused, actor, n, key, first_ids)
            self._call(actor, reuse, done)
            return
        command = SubmitJobs(tuple(specs), idempotency_key=f"{actor}-{n}")
        ids = [s.id or "" for s in specs]
        self._call(actor, command, functools.partial(self._submitted, actor, n, ids))

    def _key_reused(  # noqa: PLR0917 - a functools.partial callback: positional by design
        self, actor: str, n: int, key: str, first_ids: list[str], result: Result | None, index: int
    ) -> None:
        self._tell(actor, f"submit reusing key {key}", result, index)
        if isinstance(result, Refused):
            self.checks.refused(result.code)
            self.checks.counters.key_reuses_refused += result.code == "idempotency_key_reused"
        elif isinstance(result, Ok):
            got = [job["id"] for job in result.value["jobs"]]
            if got != first_ids:
                self.checks.report(
                    f"idempotency: key {key} reused with a different body created jobs {got} "
                    f"(the key first created {first_ids})"
                )
        lo, hi = self.workload.submit_think_units
        self._loop.call_later(
            self._rng.randint(lo, hi), functools.partial(self._submit, actor, n + 1)
        )

    def _submitted(
        self, actor: str, n: int, ids: list[str], result: Result | None, index: int
    ) -> None:
        self._tell(actor, f"submit {ids}", result, index)
        if isinstance(result, Ok):
            got = [job["id"] for job in result.value["jobs"]]
            assert got == ids, (got, ids)
            self.checks.submitted(got, index)
            self._acked[actor].extend(got)
            self._submitted_keys.setdefault(actor, []).append((f"{actor}-{n}", got))
            for job_id in got:
                self.checks.facts.learned(job_id, "exists", self._loop.now)
        elif isinstance(result, Refused):
            self.checks.refused(result.code)
        lo, hi = self.workload.submit_think_units
        self._loop.call_later(
            self._rng.randint(lo, hi), functools.partial(self._submit, actor, n + 1)
        )

    # -- workers --------------------------------------------------------------------------

    def _register(self, actor: str) -> None:
        wl = self.workload
        command = WorkerHeartbeat(actor, wl.worker_capacity, (QUEUE,), ttl_ms=wl.worker_ttl_ms)
        self._call(actor, command, functools.partial(self._registered, actor), background=True)

    def _registered(self, actor: str, result: Result | None, index: int) -> None:
        self._tell(actor, "register", result, index)
        self._lease(actor)

    def _lease(self, actor: str) -> None:
        if self.stopped:
            return
        assert self._held[actor] == 0
        room = self.workload.worker_capacity
        command = Lease(QUEUE, actor, max_jobs=self._rng.randint(1, room))
        self._call(actor, command, functools.partial(self._leased, actor), background=True)

    def _leased(self, actor: str, result: Result | None, index: int) -> None:
        if not isinstance(result, Ok) or not result.value["leases"]:
            if result is not None and not isinstance(result, Ok):
                self._tell(actor, "lease", result, index)
            wl = self.workload
            poll = wl.finishing_poll_units if self.finishing else wl.poll_units
            self._loop.call_later(poll, lambda: self._lease(actor))
            return
        grants = result.value["leases"]
        self._tell(actor, f"lease {[g['job_id'] for g in grants]}", result, index)
        for grant in grants:
            job_id, token = str(grant["job_id"]), int(grant["token"])
            self.checks.granted(job_id, token, index)
            self.checks.facts.learned(job_id, "token", self._loop.now, token)
            self._held[actor] += 1
            self._work(actor, job_id, token)

    def _work(self, actor: str, job_id: str, token: int) -> None:
        rng, wl = self._rng, self.workload
        lease_units = wl.lease_ms // MS_PER_UNIT
        if not self.finishing and rng.random() < wl.stall_probability:
            # A GC pause or a partitioned worker: it wakes after its lease ran out.
            stall = rng.randint(lease_units + UNITS_PER_TICK, 3 * lease_units)
            self._loop.call_later(stall, lambda: self._finish(actor, job_id, token, True))
            return
        duration = rng.randint(*wl.work_units)
        if duration > lease_units // 2:
            self._loop.call_later(duration // 2, lambda: self._heartbeat(actor, job_id, token))
        self._loop.call_later(duration, lambda: self._finish(actor, job_id, token, False))

    def _heartbeat(self, actor: str, job_id: str, token: int) -> None:
        def done(result: Result | None, index: int) -> None:
            self._tell(actor, f"heartbeat {job_id}/{token}", result, index)
            if result is not None:
                self.checks.token_op(
                    "heartbeat", job_id, token, index=index, result=result, stale_attempt=False
                )

        quoted = self._maybe_bad_token(job_id, token)
        if quoted != token:
            self._bad_token_op(actor, HeartbeatLease(job_id, quoted), job_id, quoted)
        self._call(actor, HeartbeatLease(job_id, token), done)

    def _maybe_bad_token(self, job_id: str, token: int) -> int:
        """Usually `token`; sometimes a future one or one of another job (a confused worker)."""
        rng = self._rng
        if rng.random() >= self.workload.bad_token_probability:
            return token
        if rng.random() < 0.5:
            return token + rng.randint(1, 10_000)  # from the future: no lease has it yet
        return max(1, token - rng.randint(1, token))  # an older index: another lease's token

    def _bad_token_op(self, actor: str, command: Command, job_id: str, quoted: int) -> None:
        """Send a token operation quoting a token this worker does not hold: it must be
        refused (the replicas' stale-token check catches an acceptance too)."""

        def done(result: Result | None, index: int) -> None:
            self._tell(
                actor, f"bad token {type(command).__name__} {job_id}/{quoted}", result, index
            )
            if isinstance(result, Refused):
                self.checks.refused(result.code)
                self.checks.counters.bad_tokens_refused += 1
            # Accepted: a future token may since have become a real lease's token; the
            # replicas' check (sched_checks.py) judges acceptance against the exact state.

        self._call(actor, command, done)

    def _finish(self, actor: str, job_id: str, token: int, stalled: bool) -> None:
        rng, wl = self._rng, self.workload
        command: Complete | Fail
        if stalled or rng.random() >= wl.fail_probability:
            command = Complete(job_id, token, result={"by": actor})
        else:
            retryable = rng.random() >= wl.fatal_fail_probability
            command = Fail(job_id, token, error={"by": actor}, retryable=retryable)
        op = "complete" if isinstance(command, Complete) else "fail"
        quoted = self._maybe_bad_token(job_id, token)
        if quoted != token and not stalled:
            # A confused worker quotes a token it does not hold (besides its real report).
            self._bad_token_op(
                actor, Complete(job_id, quoted, result={"by": actor}), job_id, quoted
            )

        # A third of the reports go in a ReportBatch, as the worker agent sends them (chosen by
        # the token, not a draw: the random schedule of every seed stays as it was).
        batched = token % 3 == 0
        sent: Command = ReportBatch(reports=(command,)) if batched else command

        def done(result: Result | None, index: int) -> None:
            if batched and isinstance(result, Ok):
                result = _only_report(result)
                self.checks.counters.report_batches += 1
            self._tell(
                actor, f"{op} {job_id}/{token}{' (stalled)' if stalled else ''}", result, index
            )
            if result is not None:
                self.checks.token_op(
                    op, job_id, token, index=index, result=result, stale_attempt=stalled
                )
            if op == "complete" and isinstance(result, Ok):
                self.checks.facts.learned(job_id, "succeeded", self._loop.now)
            self._held[actor] -= 1
            if self._held[actor] == 0:
                self._lease(actor)

        self._call(actor, sent, done)

    # -- readers (ReadIndex, dissertation §6.4) ----------------------------------------------

    def _read(self, actor: str) -> None:
        if self.finishing or self.stopped:
            return
        jobs = [j for ids in self._acked.values() for j in ids]
        lo, hi = self.workload.read_think_units
        self._loop.call_later(self._rng.randint(lo, hi), functools.partial(self._read, actor))
        if not jobs:
            return
        job_id = self._rng.choice(jobs)
        self._read_token += 1
        read_id = self._read_token
        self._reads[read_id] = (actor, job_id, self._loop.now, 0)
        self._read_attempt(read_id)

    def _read_attempt(self, read_id: int) -> None:
        entry = self._reads.get(read_id)
        if entry is None or self.stopped:
            return
        actor, job_id, invoked_at, tries = entry
        self._reads[read_id] = (actor, job_id, invoked_at, tries + 1)
        hosts = [h for h in self._hosts().values() if not h.retired]
        self._loop.call_later(
            self.workload.timeout_units, lambda: self._read_timeout(read_id, tries + 1)
        )
        if not hosts:
            return
        host = self._rng.choice(hosts)  # followers forward the ReadIndex to their leader

        def reply(r: Reply) -> None:
            self._loop.call_later(
                self._rng.randint(1, 3), lambda: self._read_reply(read_id, tries + 1, r)
            )

        self._loop.call_later(self._rng.randint(1, 3), lambda: host.read(job_id, reply))

    def _read_reply(self, read_id: int, attempt: int, reply: Reply) -> None:
        entry = self._reads.get(read_id)
        if entry is None or entry[3] != attempt:
            return
        _, job_id, invoked_at, _ = entry
        if not reply.ok:
            self._read_retry(read_id)
            return
        del self._reads[read_id]
        self.checks.counters.reads += 1
        for text in self.checks.facts.check_read(job_id, reply.value, invoked_at):
            self.checks.report(text)

    def _read_timeout(self, read_id: int, attempt: int) -> None:
        entry = self._reads.get(read_id)
        if entry is not None and entry[3] == attempt:
            self._read_retry(read_id)

    def _read_retry(self, read_id: int) -> None:
        entry = self._reads[read_id]
        if not self.finishing and entry[3] >= self.workload.max_attempts_per_request:
            del self._reads[read_id]  # a read that fails has no effect: nothing to record
            return
        # A late answer to this attempt is still a real ReadIndex answer: accepted until
        # the retry starts the next attempt.
        self._loop.call_later(self.workload.retry_units, lambda: self._read_attempt(read_id))

    # -- cron -----------------------------------------------------------------------------

    def _put_schedule(self) -> None:
        """Create the run's cron schedule (re-put, the same spec, until acknowledged)."""
        if self.stopped or self.checks.cron_acked:
            return
        template = JobTemplate(queue=QUEUE, max_attempts=self.workload.max_attempts)
        command = PutSchedule(
            CRON_NAME, CRON_EXPR, template, misfire=self.cron_misfire, misfire_cap=1_000
        )

        def done(result: Result | None, index: int) -> None:
            self._tell("op", f"put schedule {CRON_EXPR} {self.cron_misfire}", result, index)
            if isinstance(result, Ok):
                self.checks.cron_acked = True
            elif not self.finishing:
                self._loop.call_later(5 * UNITS_PER_TICK, self._put_schedule)

        self._call("op", command, done)

    def _backfill(self) -> None:
        leader = next((h for h in self._hosts().values() if _leads(h)), None)
        if leader is None or not self.checks.cron_acked:
            return
        app = leader.app
        assert isinstance(app, SchedApp)
        to_ms = app.state.clock_ms  # an operator looking at the cluster's clock
        from_ms = max(0, to_ms - self._rng.randint(1_000, 30_000))
        command = Backfill(CRON_NAME, from_ms, to_ms)

        def done(result: Result | None, index: int) -> None:
            self._tell("op", f"backfill {from_ms}..{to_ms}", result, index)
            if isinstance(result, Ok):
                self.checks.backfilled(from_ms, to_ms, result.value)
            elif isinstance(result, Refused):
                self.checks.refused(result.code)

        self._call("op", command, done)

    # -- the operator -----------------------------------------------------------------------

    def _operate(self) -> None:
        """Reconfigure the queue now and then: limit leases in flight, or pause it briefly."""
        if self.finishing or self.stopped:
            return
        rng, wl = self._rng, self.workload
        roll = rng.random()
        command: ConfigureQueue
        if roll < 0.25:
            command = ConfigureQueue(QUEUE, max_in_flight=None, paused=True)
        elif roll < 0.7:
            command = ConfigureQueue(QUEUE, max_in_flight=rng.randint(1, 4), paused=False)
        else:
            command = ConfigureQueue(QUEUE, max_in_flight=None, paused=False)
        self._call("op", command, self._configured)
        if wl.cron and rng.random() < wl.backfill_probability:
            self._backfill()
        lo, hi = wl.operator_think_units
        delay = rng.randint(lo // 4, hi // 4) if command.paused else rng.randint(lo, hi)
        self._loop.call_later(delay, self._operate)

    def _configured(self, result: Result | None, index: int) -> None:
        self._tell("op", "configure queue", result, index)
        if isinstance(result, Ok):
            self.checks.counters.queue_configs += 1

    # -- the ticker -----------------------------------------------------------------------

    def _tick(self) -> None:
        if self.stopped:
            return
        self._loop.call_later(UNITS_PER_TICK, self._tick)
        now = self._loop.now
        for node_id, host in sorted(self._hosts().items()):
            status = host.status()
            if status is None or status.role is not Role.LEADER or host.paused:
                continue
            since = self._ticks_outstanding.get(node_id)
            if since is not None and now - since < self.workload.ticker_timeout_units:
                continue
            app = host.app
            assert isinstance(app, SchedApp)
            deadline_ms = app.next_deadline_ms()
            if deadline_ms is None or deadline_ms > host.now_ms():
                continue
            self._ticks_outstanding[node_id] = now
            self._trace(f"node {node_id} proposes tick (deadline {deadline_ms})")
            host.propose(SchedRequest(Tick()), functools.partial(self._ticked, node_id, now))

    def _ticked(self, node_id: NodeId, since: int, reply: Reply) -> None:
        if self._ticks_outstanding.get(node_id) == since:
            del self._ticks_outstanding[node_id]


def _leads(host: NodeHost) -> bool:
    status = host.status()
    return status is not None and status.role is Role.LEADER and not host.paused


def _only_report(batch: Ok[Any]) -> Result:
    """The result of a one-report ReportBatch as the single command would have answered."""
    (outcome,) = batch.value["results"]
    if "ok" in outcome:
        return Ok({"id": outcome["job_id"], "state": outcome["state"]})
    err = outcome["error"]
    return Refused(error_from_wire(err["code"], err["message"], err["details"]))

"""SPEC §1's promises for the scheduler, checked while a simulated run goes and at its end.

Theory of operation: two sources feed the checks.
  - Replicas (`on_sched_apply`, the SchedApp observer hook): every scheduler command any
    replica applies. Every `HASH_EVERY_INDEXES` indexes the replica's whole-state hash
    (`SchedulerState.state_hash`) is compared with what other replicas had at that index
    (the chained log hash only proves they applied the same bytes; this proves the scheduler
    turned them into the same state). A lease's tokens must equal the entry's index; an
    accepted heartbeat/complete/fail must quote the job's current token.
  - Clients (`submitted`, `granted`, `token_op`): what each client was told. From those:
      * fencing: every granted token equals the index of the entry that granted it, and a
        job's grants, in log order, have strictly increasing tokens;
      * stale tokens: a heartbeat/complete/fail that was accepted at index i quoted token t
        although a later lease of the job (token t < t2 < i) had been granted: violation;
      * at most one completion: accepted completes of a job all quote one token (a repeated
        complete with the same token is answered again by design, not a second completion).
At the end (`check_final`): every acknowledged job exists on every converged replica (nothing
is retained-and-removed within a run: retention is days), converged replicas have equal state
hashes, and after the liveness phase every job on the leader is terminal.
Violations go to `report`, the run's InvariantChecker.violation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from raftsched.app import SchedApp
from raftsched.raft.types import Entry
from raftsched.sched import (
    Command,
    Complete,
    Fail,
    HeartbeatLease,
    Lease,
    Ok,
    PutSchedule,
    Refused,
    ReportBatch,
    Result,
    SchedulerState,
)
from raftsched.sched.job import TERMINAL
from raftsched.wire.envelope import SchedEntry

from .sched_invariants import ReadFacts, replica_violations

HASH_EVERY_INDEXES = 8
"""Whole-state hashes cost a snapshot: compare replicas at every 8th index, not each one."""

STALE_CODES = frozenset({"stale_token", "lease_expired"})
TOKEN_OPS = ("heartbeat", "complete", "fail")


@dataclass(slots=True)
class SchedCounters:
    jobs_submitted: int = 0  # acknowledged (Ok) job ids
    jobs_completed: int = 0  # distinct jobs with an accepted complete
    leases_granted: int = 0
    stale_refused: int = 0  # token operations refused as stale_token / lease_expired
    stale_attempts: int = 0  # token operations a stalled worker sent after its lease ran out
    lagging_stamps: int = 0  # applied stamps behind the state-machine clock
    reads: int = 0  # ReadIndex reads of jobs checked against what clients were told
    bad_tokens_refused: int = 0  # wrong or future tokens quoted on purpose, refused
    key_reuses_refused: int = 0  # idempotency keys reused with another body, refused
    queue_configs: int = 0  # ConfigureQueue commands acknowledged
    backfills: int = 0  # Backfill commands acknowledged
    report_batches: int = 0  # complete/fail reports answered through a ReportBatch
    cron_fires: int = 0  # cron jobs on the leader at the end
    refusals: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _TokenOp:
    op: str
    token: int
    index: int


class SchedChecks:
    def __init__(self) -> None:
        self.report: Callable[[str], None] = _unbound
        self.counters = SchedCounters()
        self._hashes: dict[int, str] = {}  # index -> state hash of the first replica there
        self.acked_jobs: dict[str, int] = {}  # job id -> index of the acknowledging entry
        self._grants: dict[str, list[tuple[int, int]]] = {}  # job -> [(index, token)]
        self._accepted: dict[str, list[_TokenOp]] = {}  # job -> accepted token operations
        self._completed_token: dict[str, int] = {}
        self.facts = ReadFacts()
        self.cron_acked = False  # the workload's schedule was acknowledged
        self.cron_policy = ""  # its misfire policy (set by the workload)
        self._cron_created_ms: int | None = None  # state clock when the schedule was created
        self._cron_puts: set[int] = set()  # indexes of PutSchedule entries applied

    def bind(self, report: Callable[[str], None]) -> None:
        self.report = report

    # -- replicas ---------------------------------------------------------------------------

    def on_sched_apply(
        self,
        app: SchedApp,
        entry: Entry,
        *,
        envelope: SchedEntry,
        command: Command,
        result: Result,
        clock_before_ms: int,
    ) -> None:
        state = app.state
        if envelope.stamp_ms < clock_before_ms:
            self.counters.lagging_stamps += 1
        if state.clock_ms < clock_before_ms:
            self.report(
                f"sched clock went backwards at index {entry.index}: "
                f"{clock_before_ms} -> {state.clock_ms}"
            )
        if isinstance(result, Ok):
            if isinstance(command, Lease):
                for grant in result.value["leases"]:
                    if grant["token"] != entry.index:
                        self.report(
                            f"fencing: job {grant['job_id']} leased at index "
                            f"{entry.index} with token {grant['token']}"
                        )
            elif isinstance(command, HeartbeatLease | Complete | Fail):
                self._check_current_token(state, command, entry.index)
            elif isinstance(command, ReportBatch):
                for item, outcome in zip(command.reports, result.value["results"], strict=True):
                    if "ok" in outcome:
                        self._check_current_token(state, item, entry.index)
        if isinstance(command, PutSchedule) and isinstance(result, Ok):
            self._cron_puts.add(entry.index)
            if result.value.get("created") and self._cron_created_ms is None:
                self._cron_created_ms = state.clock_ms
        for text in replica_violations(state, command, result):
            self.report(f"{text} (index {entry.index})")
        if entry.index % HASH_EVERY_INDEXES == 0:
            digest = app.state_hash()
            seen = self._hashes.setdefault(entry.index, digest)
            if seen != digest:
                self.report(
                    f"sched state divergence: replicas applied index {entry.index} "
                    f"into different state hashes {seen[:12]} and {digest[:12]}"
                )

    def _check_current_token(
        self, state: SchedulerState, command: HeartbeatLease | Complete | Fail, index: int
    ) -> None:
        job = state.jobs.get(command.job_id)
        if job is None or job.token != command.token:
            self.report(
                f"stale token accepted by a replica: {type(command).__name__} of job "
                f"{command.job_id} with token {command.token} at index {index}, "
                f"current token {None if job is None else job.token}"
            )

    # -- clients --------------------------------------------------------------------------

    def submitted(self, job_ids: Iterable[str], index: int) -> None:
        for job_id in job_ids:
            if job_id not in self.acked_jobs:
                self.acked_jobs[job_id] = index
                self.counters.jobs_submitted += 1

    def refused(self, code: str) -> None:
        self.counters.refusals[code] = self.counters.refusals.get(code, 0) + 1

    def granted(self, job_id: str, token: int, index: int) -> None:
        self.counters.leases_granted += 1
        if token != index:
            self.report(
                f"fencing: a client was granted job {job_id} with token {token} by "
                f"the entry at index {index}"
            )
        grants = self._grants.setdefault(job_id, [])
        grants.append((index, token))
        grants.sort()
        for (_, a), (_, b) in itertools.pairwise(grants):
            if b <= a:
                self.report(
                    f"fencing: tokens of job {job_id} do not strictly increase: "
                    f"{[t for _, t in grants]}"
                )
                break
        for op in self._accepted.get(job_id, ()):
            self._check_not_stale(job_id, op, token)

    def token_op(
        self, op: str, job_id: str, token: int, *, index: int, result: Result, stale_attempt: bool
    ) -> None:
        assert op in TOKEN_OPS
        self.counters.stale_attempts += stale_attempt
        if isinstance(result, Refused):
            self.refused(result.code)
            self.counters.stale_refused += result.code in STALE_CODES
            return
        accepted = _TokenOp(op, token, index)
        self._accepted.setdefault(job_id, []).append(accepted)
        for _, granted_token in self._grants.get(job_id, ()):
            self._check_not_stale(job_id, accepted, granted_token)
        if op == "complete":
            first = self._completed_token.get(job_id)
            if first is None:
                self._completed_token[job_id] = token
                self.counters.jobs_completed += 1
            elif first != token:
                self.report(
                    f"two completions accepted for job {job_id}: tokens {first} and {token}"
                )

    def _check_not_stale(self, job_id: str, op: _TokenOp, granted_token: int) -> None:
        if op.token < granted_token < op.index:
            self.report(
                f"stale token accepted: {op.op} of job {job_id} with token {op.token} "
                f"applied at index {op.index}, after the lease with token "
                f"{granted_token} was granted"
            )

    def on_sched_apply_put_for_test(self, *, created_ms: int, index: int) -> None:
        """What applying the schedule's creation at `index` records (unit tests)."""
        self._cron_created_ms = created_ms
        self._cron_puts.add(index)

    def backfilled(self, from_ms: int, to_ms: int, value: dict[str, object]) -> None:
        """A backfill of [from_ms, to_ms] answered Ok: it made only fire times in the range."""
        self.counters.backfills += 1
        created = value.get("created")
        assert isinstance(created, list)
        for job_id in created:
            t = _fire_ms(str(job_id))
            if t is None or t % CRON_EVERY_MS or not from_ms <= t <= to_ms:
                self.report(f"cron: backfill of [{from_ms}, {to_ms}] created job {job_id}")

    def check_cron(self, state: SchedulerState) -> None:
        """Fire counts per misfire policy, on the leader's converged state."""
        created = self._cron_created_ms
        schedule = state.schedules.get(CRON_NAME)
        record = state.fire_records.get(CRON_NAME)
        if created is None or schedule is None or record is None:
            return
        fires = {t for j in state.jobs if (t := _fire_ms(j)) is not None}
        self.counters.cron_fires += len(fires)
        wrong = sorted(t for t in fires if t % CRON_EVERY_MS or t > state.clock_ms)
        if wrong:
            self.report(f"cron: jobs for times that are not due fire times: {wrong[:5]}")
        due = set(
            range(
                created - created % CRON_EVERY_MS + CRON_EVERY_MS,
                record.watermark_ms + 1,
                CRON_EVERY_MS,
            )
        )
        if schedule.catchup is not None or len(self._cron_puts) != 1:
            return  # a catch-up still running, or an update replaced the schedule midway
        if self.cron_policy == "fire_all" and not due <= fires:
            self.report(
                f"cron: misfire policy fire_all missed fire times {sorted(due - fires)[:5]} "
                f"(created at {created}, watermark {record.watermark_ms})"
            )
        if self.cron_policy == "fire_once" and due and not fires & due:
            self.report(
                f"cron: misfire policy fire_once fired none of {len(due)} due fire times "
                f"(created at {created}, watermark {record.watermark_ms})"
            )

    # -- the end --------------------------------------------------------------------------

    def check_final(
        self, replicas: Mapping[int, SchedApp], leader_id: int | None, liveness: bool
    ) -> None:
        """`replicas`: the converged live members' apps; `liveness`: the liveness phase
        settled, so every job must be terminal on the leader."""
        hashes = {node: app.state_hash() for node, app in replicas.items()}
        if len(set(hashes.values())) > 1:
            self.report(
                "sched state divergence at the end: "
                + ", ".join(
                    f"node {n} applied {replicas[n].applied_index} hash {h[:12]}"
                    for n, h in sorted(hashes.items())
                )
            )
        for node, app in sorted(replicas.items()):
            missing = [j for j in self.acked_jobs if j not in app.state.jobs]
            if missing:
                self.report(
                    f"acknowledged jobs lost on node {node}: {sorted(missing)[:5]} "
                    f"({len(missing)} of {len(self.acked_jobs)})"
                )
        if liveness and leader_id is not None and leader_id in replicas:
            self.check_cron(replicas[leader_id].state)
            jobs = replicas[leader_id].state.jobs
            open_jobs = sorted(j.id for j in jobs.values() if j.state not in TERMINAL)
            if open_jobs:
                states = {jobs[j].state for j in open_jobs}
                self.report(
                    f"liveness: {len(open_jobs)} jobs not terminal after healing "
                    f"(e.g. {open_jobs[:3]}, states {sorted(states)})"
                )


CRON_NAME = "c"
CRON_EVERY_MS = 5_000


def _fire_ms(job_id: str) -> int | None:
    """The fire time of a job of the workload's schedule (`c@<ms>`), else None."""
    name, at, rest = job_id.partition("@")
    return int(rest) if at and name == CRON_NAME and rest.isdigit() else None


def _unbound(text: str) -> None:
    raise AssertionError(f"SchedChecks.report used before bind: {text}")

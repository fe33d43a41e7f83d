"""Scheduler rules checked on every replica as it applies, and linearizable reads of jobs.

Theory of operation. `replica_violations` looks at one applied command and the state it
left (the `SchedApp` observer hook, via sched_checks.py) and names what broke:
  - lease order: a Lease grants the best pending jobs of its queue, highest priority first,
    then oldest (submission order); a pending job better than one granted must not remain;
  - a paused queue grants nothing, and a Lease never leaves more jobs leased in a queue
    than its `max_in_flight`;
  - a job's attempts never exceed its max_attempts.
These read the scheduler's own structures (jobs, queues): the state machine under test.

`ReadFacts` checks ReadIndex reads of job documents against what clients were told
before the read began (linearizability, dissertation §6.4): once a submit of job j was
acknowledged, a read of j finds it; once a lease of j with token t was acknowledged, a read
shows a token >= t; once a complete of j was acknowledged, a read shows j succeeded. A
stale read (a deposed leader serving from its old state) breaks one of these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from raftsched.sched import Command, Fail, Lease, Ok, ReportBatch, Result, SchedulerState
from raftsched.sched.job import LEASED, PENDING, SUCCEEDED


def replica_violations(state: SchedulerState, command: Command, result: Result) -> Iterator[str]:
    """What applying `command` (with `result`) broke, judged on the state after it."""
    if isinstance(command, Lease) and isinstance(result, Ok):
        grants = [str(g["job_id"]) for g in result.value["leases"]]
        if grants:
            yield from _lease_violations(state, command.queue, grants)
    job_ids: list[str] = []
    if isinstance(command, Lease) and isinstance(result, Ok):
        job_ids = [str(g["job_id"]) for g in result.value["leases"]]
    elif isinstance(command, Fail):
        job_ids = [command.job_id]
    elif isinstance(command, ReportBatch):
        job_ids = [item.job_id for item in command.reports if isinstance(item, Fail)]
    for job_id in job_ids:
        job = state.jobs.get(job_id)
        if job is not None and job.attempts > job.max_attempts:
            yield (
                f"attempts: job {job_id} has {job.attempts} attempts, more than its "
                f"max_attempts {job.max_attempts}"
            )


def _lease_violations(state: SchedulerState, queue_name: str, grants: list[str]) -> Iterator[str]:
    queue = state.queues.get(queue_name)
    if queue is None:
        yield f"lease: jobs {grants} granted from queue {queue_name!r}, which does not exist"
        return
    config = queue.config
    if config.paused:
        yield f"queue config: paused queue {queue_name!r} granted jobs {grants}"
    if config.max_in_flight is not None and queue.counts[LEASED] > config.max_in_flight:
        yield (
            f"queue config: queue {queue_name!r} has {queue.counts[LEASED]} jobs leased after "
            f"a lease, above its max_in_flight {config.max_in_flight}"
        )
    granted = [state.jobs[j] for j in grants if j in state.jobs]
    if not granted:
        return
    worst = max((-job.spec.priority, job.seq) for job in granted)
    for job in state.jobs.values():
        better = (-job.spec.priority, job.seq) < worst
        if better and job.state == PENDING and job.spec.queue == queue_name:
            yield (
                f"lease order: job {job.id} (priority {job.spec.priority}, seq {job.seq}) "
                f"stayed pending while {grants} were granted from queue {queue_name!r}"
            )
            return


@dataclass(frozen=True, slots=True)
class _Fact:
    time: int  # virtual time the client learned it
    kind: str  # "exists", "token", "succeeded"
    token: int = 0


class ReadFacts:
    """What clients were told about each job, to judge reads that began later."""

    def __init__(self) -> None:
        self._facts: dict[str, list[_Fact]] = {}
        self.reads_checked = 0

    def learned(self, job_id: str, kind: str, time: int, token: int = 0) -> None:
        self._facts.setdefault(job_id, []).append(_Fact(time, kind, token))

    def check_read(self, job_id: str, doc: Any, invoked_at: int) -> Iterator[str]:
        """`doc` was read (after a ReadIndex) by a read invoked at `invoked_at`."""
        self.reads_checked += 1
        for fact in self._facts.get(job_id, ()):
            if fact.time >= invoked_at:
                continue  # learned after the read began: the read may precede it
            yield from _stale(job_id, doc, fact, invoked_at)


def _stale(job_id: str, doc: Any, fact: _Fact, invoked_at: int) -> Iterator[str]:
    where = f"read of job {job_id} invoked at {invoked_at}"
    if doc is None:
        yield f"stale read: {where} found no job, though its submit was acknowledged at {fact.time}"
        return
    assert isinstance(doc, Mapping), doc
    if fact.kind == "token" and int(doc.get("token", 0)) < fact.token:
        yield (
            f"stale read: {where} shows token {doc.get('token')}, though a lease with token "
            f"{fact.token} was acknowledged at {fact.time}"
        )
    if fact.kind == "succeeded" and doc.get("state") != SUCCEEDED:
        yield (
            f"stale read: {where} shows state {doc.get('state')}, though its completion was "
            f"acknowledged at {fact.time}"
        )

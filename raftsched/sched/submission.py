"""Submitting jobs and workflows: all or none, idempotent per id.

A submission is checked completely before anything changes: for each job, an existing id with
an equal spec (and the same workflow) is answered with the existing job (`created: false`), an
existing id with another spec is a `conflict`; then the room in each queue, then the
dependencies (unknown ids, cycles: raftsched/sched/workflow.py). Only then are the new jobs
created, in submission order (that order is their `seq`, the oldest-first tie-break), and given
their first state in dependency order:
- a dependency already dead or cancelled: `cancelled`, reason `upstream_failed`;
- an unfinished dependency: `waiting` (it is registered with each unfinished dependency, which
  wakes or cancels it when it ends);
- otherwise `scheduled` if its run time is in the future, else `pending`.

Generated ids are `auto-<index>-<position>`: unique because Raft indexes are, and never equal to
a client's id because parse.py reserves the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .answers import JobAnswer, SubmitAnswer
from .commands import JobSpec, SubmitJobs, SubmitWorkflow
from .errors import Conflict, CycleError, UnknownDependency, ValidationError
from .job import (
    CANCELLED,
    DEAD,
    PENDING,
    REASON_UPSTREAM_FAILED,
    SCHEDULED,
    SUCCEEDED,
    WAITING,
    Job,
)
from .parse import GENERATED_ID_PREFIX
from .result import Ok, Refused
from .workflow import plan_submission

if TYPE_CHECKING:
    from .state import SchedulerState


def submit_jobs(st: SchedulerState, cmd: SubmitJobs, index: int) -> Ok[SubmitAnswer] | Refused:
    specs = cmd.jobs
    if len(specs) == 1 and not specs[0].depends_on:
        return _submit_one(st, specs[0], index)
    return _submit(st, specs, index, None)


def submit_workflow(
    st: SchedulerState, cmd: SubmitWorkflow, index: int
) -> Ok[SubmitAnswer] | Refused:
    result = _submit(st, cmd.jobs, index, cmd.workflow_id)
    if isinstance(result, Ok):
        result.value["workflow"] = cmd.workflow_id
    return result


def _submit_one(st: SchedulerState, spec: JobSpec, index: int) -> Ok[SubmitAnswer] | Refused:
    """The common case, written out: one job, no dependencies, no workflow."""
    job_id = spec.id
    if job_id is None:
        job_id = f"{GENERATED_ID_PREFIX}{index}-0"
    job = st.jobs.get(job_id)
    if job is not None:
        if job.spec != spec or job.workflow is not None:
            return Refused(
                Conflict(f"job {job_id!r} exists with a different spec", {"job_id": job_id})
            )
        return Ok({"jobs": [{"id": job_id, "state": job.state, "seq": job.seq, "created": False}]})
    queue = st.queues.get(spec.queue)
    if queue is None or queue.unfinished >= st.limits.max_jobs_per_queue:
        refusal = st.check_room({spec.queue: 1})
    else:
        refusal = st.check_admission(1)
    if refusal is not None:
        return Refused(refusal)
    job = st.create_job(spec, job_id, None)
    st.transition(job, SCHEDULED if job.run_at_ms > st.clock_ms else PENDING)
    return Ok({"jobs": [{"id": job_id, "state": job.state, "seq": job.seq, "created": True}]})


def _submit(
    st: SchedulerState, specs: Sequence[JobSpec], index: int, workflow: str | None
) -> Ok[SubmitAnswer] | Refused:
    assert specs
    jobs = st.jobs
    ids: list[str] = []
    found: list[Job | None] = []
    new_specs: list[JobSpec] = []
    new_ids: list[str] = []
    new_per_queue: dict[str, int] = {}
    for position, spec in enumerate(specs):
        job_id = spec.id if spec.id is not None else f"{GENERATED_ID_PREFIX}{index}-{position}"
        job = jobs.get(job_id)
        if job is not None:
            if job.spec != spec or job.workflow != workflow:
                return Refused(
                    Conflict(f"job {job_id!r} exists with a different spec", {"job_id": job_id})
                )
        else:
            new_specs.append(spec)
            new_ids.append(job_id)
            new_per_queue[spec.queue] = new_per_queue.get(spec.queue, 0) + 1
        ids.append(job_id)
        found.append(job)
    if len(set(ids)) != len(ids):  # parse refuses this; a hand-built command must not crash
        return Refused(ValidationError("jobs", "a job id appears twice in one submission"))
    refusal = st.check_room(new_per_queue)
    if refusal is not None:
        return Refused(refusal)
    if any(spec.depends_on for spec in new_specs):
        try:
            order: Sequence[int] = plan_submission(new_specs, new_ids, jobs.__contains__)
        except (UnknownDependency, CycleError) as exc:
            return Refused(exc)
    else:
        order = range(len(new_specs))
    # Checked: from here on nothing can refuse.
    created = [
        st.create_job(spec, job_id, workflow)
        for spec, job_id in zip(new_specs, new_ids, strict=True)
    ]
    for position in order:
        _place(st, created[position])
    answers: list[JobAnswer] = []
    created_iter = iter(created)
    for existing in found:
        job = next(created_iter) if existing is None else existing
        answers.append(
            {"id": job.id, "state": job.state, "seq": job.seq, "created": existing is None}
        )
    return Ok({"jobs": answers})


def _place(st: SchedulerState, job: Job) -> None:
    """Give a new job its first state (its dependencies are placed already)."""
    jobs = st.jobs
    unfinished: list[Job] = []
    for dep_id in job.spec.depends_on:
        dep = jobs[dep_id]
        if dep.state == SUCCEEDED:
            continue
        if dep.state in (DEAD, CANCELLED):
            job.reason = REASON_UPSTREAM_FAILED
            st.transition(job, CANCELLED)
            return
        unfinished.append(dep)
    if not unfinished:
        st.transition(job, st.ready_state(job))
        return
    job.pending_deps = len(unfinished)
    for dep in unfinished:
        if dep.dependents is None:
            dep.dependents = []
        dep.dependents.append(job)
    st.transition(job, WAITING)

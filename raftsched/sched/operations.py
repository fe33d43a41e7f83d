"""Operator commands on existing jobs: cancel, dead-letter requeue and purge, workflows.

- `cancel`: any non-terminal job; a leased one loses its lease (later calls with its token
  get `already_terminal`). Dependents are cancelled `upstream_failed` by the cascade.
- `requeue_dead`: the named dead jobs go back to `pending` with a new attempt budget
  (attempts restart at 0, `max_attempts` from the command or the job's own), their error and
  reason cleared. All or none: every id must name a dead job (`not_found`, `invalid`), and the
  queue must have room.
- `purge_dead`: remove the named dead jobs now instead of at retention; all or none.
- `cancel_workflow`: cancel every unfinished job of a workflow (reason `workflow_cancelled`);
  jobs that already ended keep their outcome. `workflow_status` answers the per-state counts
  and the job ids of a workflow.

Workflow jobs are found through `SchedulerState.workflows` (ids in creation order), never by
scanning the jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .answers import CancelWorkflowAnswer, JobOutcome, PurgeAnswer, RequeueAnswer
from .commands import Cancel, CancelWorkflow, PurgeDead, RequeueDead
from .errors import AlreadyTerminal, NotFound, ValidationError
from .job import (
    CANCELLED,
    CLOSED_CANCELLED,
    DEAD,
    LEASED,
    PENDING,
    REASON_CANCELLED,
    REASON_WORKFLOW_CANCELLED,
    STATES,
    TERMINAL,
    Job,
    job_outcome,
)
from .result import Ok, Refused

if TYPE_CHECKING:
    from .state import SchedulerState


def _cancel_job(st: SchedulerState, job: Job, reason: str) -> None:
    assert job.state not in TERMINAL
    if job.state == LEASED:
        job.closed_by = CLOSED_CANCELLED
    job.reason = reason
    st.transition(job, CANCELLED)


def cancel(st: SchedulerState, cmd: Cancel) -> Ok[JobOutcome] | Refused:
    job = st.jobs.get(cmd.job_id)
    if job is None:
        return Refused(NotFound(f"job {cmd.job_id!r} not found", {"job_id": cmd.job_id}))
    if job.state in TERMINAL:
        return Refused(
            AlreadyTerminal(
                f"job {job.id!r} is already {job.state}", {"job_id": job.id, "state": job.state}
            )
        )
    _cancel_job(st, job, cmd.reason or REASON_CANCELLED)
    return Ok(job_outcome(job))


def _dead_jobs(st: SchedulerState, job_ids: tuple[str, ...]) -> list[Job] | Refused:
    jobs: list[Job] = []
    for job_id in job_ids:
        job = st.jobs.get(job_id)
        if job is None:
            return Refused(NotFound(f"job {job_id!r} not found", {"job_id": job_id}))
        if job.state != DEAD:
            return Refused(ValidationError("job_ids", f"job {job_id!r} is {job.state}, not dead"))
        jobs.append(job)
    if len({job.id for job in jobs}) != len(jobs):
        return Refused(ValidationError("job_ids", "a job id appears twice"))
    return jobs


def requeue_dead(st: SchedulerState, cmd: RequeueDead) -> Ok[RequeueAnswer] | Refused:
    jobs = _dead_jobs(st, cmd.job_ids)
    if isinstance(jobs, Refused):
        return jobs
    per_queue: dict[str, int] = {}
    for job in jobs:
        per_queue[job.spec.queue] = per_queue.get(job.spec.queue, 0) + 1
    refusal = st.check_room(per_queue)
    if refusal is not None:
        return Refused(refusal)
    for job in jobs:
        job.run_at_ms = st.clock_ms
        st.transition(job, PENDING)  # first: it un-counts the retained bytes with the error
        job.attempts = 0
        if cmd.max_attempts is not None:
            job.max_attempts = cmd.max_attempts
        job.reason = None
        job.error = None
        job.closed_by = None
    return Ok({"jobs": [job_outcome(job) for job in jobs]})


def purge_dead(st: SchedulerState, cmd: PurgeDead) -> Ok[PurgeAnswer] | Refused:
    jobs = _dead_jobs(st, cmd.job_ids)
    if isinstance(jobs, Refused):
        return jobs
    for job in jobs:
        st.retention_index.remove((job.ended_ms, job.seq, job.id))
        del st.jobs[job.id]
        st.forget(job)
    return Ok({"purged": [job.id for job in jobs]})


def workflow_jobs(st: SchedulerState, workflow_id: str) -> list[Job]:
    """The workflow's jobs still in the state, in creation order (prunes removed ones)."""
    ids = st.workflows.get(workflow_id)
    if ids is None:
        return []
    jobs = [
        job
        for job_id in ids
        if (job := st.jobs.get(job_id)) is not None and job.workflow == workflow_id
    ]
    if len(jobs) != len(ids):
        if jobs:
            st.workflows[workflow_id] = [job.id for job in jobs]
        else:
            del st.workflows[workflow_id]
    return jobs


def cancel_workflow(st: SchedulerState, cmd: CancelWorkflow) -> Ok[CancelWorkflowAnswer] | Refused:
    jobs = workflow_jobs(st, cmd.workflow_id)
    if not jobs:
        return Refused(
            NotFound(f"workflow {cmd.workflow_id!r} not found", {"workflow": cmd.workflow_id})
        )
    cancelled = []
    for job in jobs:
        if job.state not in TERMINAL:  # a cascade may have ended it in this very loop
            _cancel_job(st, job, cmd.reason or REASON_WORKFLOW_CANCELLED)
            cancelled.append(job.id)
    return Ok({"workflow": cmd.workflow_id, "cancelled": cancelled})


def workflow_status(st: SchedulerState, workflow_id: str) -> dict[str, Any] | None:
    jobs = workflow_jobs(st, workflow_id)
    if not jobs:
        return None
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for job in jobs:
        counts[job.state] += 1
    done = all(job.state in TERMINAL for job in jobs)
    return {
        "workflow": workflow_id,
        "counts": counts,
        "done": done,
        "jobs": [{"id": job.id, "state": job.state} for job in jobs],
    }

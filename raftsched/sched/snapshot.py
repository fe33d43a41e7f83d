"""Canonical snapshots of the scheduler state: msgpack bytes, identical for identical states.

Canonical means a function of the logical state only: every map is written with sorted keys
(user payloads included), collections in a fixed order (jobs by `seq`, queues, workers and
schedules by name, the idempotency table in its expiry order), and none of the indexes is
written. Heaps hold stale entries that depend on history (a cancelled pending job, a lease
heartbeated since); `load_state` rebuilds every index from the records instead, so a restored
state behaves exactly like the original, and two replicas that applied the same entries write
the same bytes (`SchedulerState.state_hash` hashes them).

This module is the one place raftsched/sched uses msgpack (a declared dependency of the
project); everything else in the package is standard library only.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

import msgpack

from .commands import Backoff, JobSpec, job_spec_plain, to_plain
from .errors import error_from_wire
from .index import SortedIndex
from .job import LEASED, PENDING, SCHEDULED, STATES, TERMINAL, WAITING, Job, JobState
from .limits import Limits
from .parse import parse_put_schedule
from .queues import Queue, QueueConfig
from .result import Ok, Refused, Result
from .schedules import Catchup, FireRecord, Schedule
from .workers import Worker

if TYPE_CHECKING:  # state.py imports this module; the class comes in as an argument
    from .state import SchedulerState

FORMAT_VERSION = 3  # 3: settings, clock skew, catch-ups and cascades, incarnations
_STATE_BY_NAME: dict[str, JobState] = {name: name for name in STATES}


def _canon(value: Any) -> Any:
    """Sorted-key copy of a plain value (dicts sorted recursively, tuples as lists)."""
    if isinstance(value, dict):
        return {k: _canon(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def _result_plain(result: Result) -> list[Any]:
    if isinstance(result, Ok):
        return ["ok", result.value]
    code, message, details = result.error.to_wire()
    return ["refused", code, message, details]


def _result_from_plain(data: list[Any]) -> Result:
    if data[0] == "ok":
        return Ok(data[1])
    return Refused(error_from_wire(data[1], data[2], data[3]))


def _job_plain(job: Job, in_cascade: bool) -> list[Any]:
    deps = None
    if job.dependents is not None and (in_cascade or job.state not in TERMINAL):
        # Only still-waiting dependents matter: the others are skipped without a budget unit
        # when this job's turn comes, so leaving them out changes nothing.
        deps = [d.id for d in job.dependents if d.state == WAITING]
    return [
        job.id,
        job.seq,
        job_spec_plain(job.spec),
        job.state,
        job.reason,
        job.workflow,
        job.max_attempts,
        job.lease_ms,
        job.run_at_ms,
        job.attempts,
        job.token,
        job.lease_expires_ms,
        job.worker_id,
        job.closed_by,
        job.result,
        job.error,
        job.created_ms,
        job.updated_ms,
        job.ended_ms,
        job.pending_deps,
        deps,
        list(job.events),
        job.attempt_deadline_ms,
    ]


def _spec_from_plain(d: dict[str, Any]) -> JobSpec:
    b = d["backoff"]
    return JobSpec(
        id=d.get("id"),
        queue=d["queue"],
        payload=d["payload"],
        priority=d["priority"],
        run_at_ms=d.get("run_at"),
        delay_ms=d.get("delay_ms"),
        max_attempts=d.get("max_attempts"),
        backoff=Backoff(
            initial_ms=b["initial_ms"], multiplier=float(b["multiplier"]), max_ms=b["max_ms"]
        ),
        lease_ms=d.get("lease_ms"),
        timeout_ms=d.get("timeout_ms"),
        depends_on=tuple(d["depends_on"]),
        tags=tuple(d["tags"]),
    )


def dump_state(st: SchedulerState) -> bytes:
    jobs = st.jobs.sorted_values()
    assert all(a.seq < b.seq for a, b in itertools.pairwise(jobs)), "jobs out of order"
    cascade = {job.id for job in st.cascade}  # membership only
    schedules = []
    for name in sorted(st.schedules):
        s = st.schedules[name]
        spec_plain = to_plain(s.spec)
        spec_plain.pop("idempotency_key", None)
        schedules.append(
            [
                name,
                spec_plain,
                s.version,
                s.next_fire_ms,
                s.missed_fires,
                s.last_error,
                s.skip_events,
                s.last_skipped,
                None if s.catchup is None else s.catchup.to_plain(),
                s.last_fire_job,
                s.overlap_skips,
            ]
        )
    data = {
        "format": FORMAT_VERSION,
        "limits": st.limits.to_plain(),
        "bootstrapped": st.bootstrapped,
        "clock_skew": st.clock_skew.to_plain(),
        "clock_ms": st.clock_ms,
        "last_index": st.last_index,
        "seq": st.seq,
        "schedule_version": st.schedule_version,
        "queues": [[n, st.queues[n].config.to_plain()] for n in sorted(st.queues)],
        "jobs": [_job_plain(j, j.id in cascade) for j in jobs],
        "cascade": [job.id for job in st.cascade],
        "workers": [
            [
                w.id,
                w.capacity,
                list(w.queues),
                w.ttl_ms,
                w.last_seen_ms,
                w.registered_ms,
                list(w.leased),
                w.incarnation,
                w.process,
                w.index_ms,
            ]
            for w in (st.workers[k] for k in sorted(st.workers))
        ],
        "schedules": schedules,
        "firing": list(st.firing),
        "fire_records": [[n, st.fire_records[n].to_plain()] for n in sorted(st.fire_records)],
        "idempotency": [
            [key, fp, created_ms, _result_plain(result)]
            for key, (fp, result, created_ms) in st.idempotency.items()
        ],
    }
    packed: bytes = msgpack.packb(_canon(data), use_bin_type=True)
    return packed


def load_state(data: bytes, state_class: type[SchedulerState]) -> SchedulerState:
    raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    if raw.get("format") != FORMAT_VERSION:
        raise ValueError(f"unknown scheduler snapshot format {raw.get('format')!r}")
    st = state_class(Limits.from_plain(raw["limits"]))
    st.bootstrapped = bool(raw["bootstrapped"])
    skew = raw["clock_skew"]
    st.clock_skew.refused_entries = skew["refused_entries"]
    st.clock_skew.max_excess_ms = skew["max_excess_ms"]
    st.clock_skew.last_stamp_ms = skew["last_stamp_ms"]
    st.clock_ms = raw["clock_ms"]
    st.last_index = raw["last_index"]
    st.seq = raw["seq"]
    st.schedule_version = raw["schedule_version"]
    for name, config in raw["queues"]:
        st.queues[name] = Queue(name, QueueConfig(**config))
    _load_jobs(st, raw["jobs"])
    st.cascade = deque(st.jobs[job_id] for job_id in raw["cascade"])
    worker_keys: list[tuple[int, str]] = []
    for (
        wid,
        capacity,
        queues,
        ttl_ms,
        last_seen_ms,
        registered_ms,
        leased,
        incarnation,
        process,
        index_ms,
    ) in raw["workers"]:
        worker = Worker(
            wid,
            capacity,
            tuple(queues),
            ttl_ms,
            registered_ms,
            incarnation=incarnation,
            process=process,
        )
        worker.last_seen_ms = last_seen_ms
        worker.leased = {job_id: st.jobs[job_id] for job_id in leased}
        worker.index_ms = index_ms
        st.workers[wid] = worker
        worker_keys.append((index_ms, wid))
    st.worker_index = SortedIndex.from_sorted(sorted(worker_keys))
    for name, record in raw["fire_records"]:
        st.fire_records[name] = FireRecord.from_plain(record)
    schedule_keys: list[tuple[int, str]] = []
    for (
        name,
        spec_plain,
        version,
        next_fire_ms,
        missed,
        last_error,
        skip_events,
        last_skipped,
        catchup,
        last_fire_job,
        overlap_skips,
    ) in raw["schedules"]:
        schedule = Schedule(parse_put_schedule(spec_plain, Limits.permissive()), version)
        schedule.next_fire_ms = next_fire_ms
        schedule.missed_fires = missed
        schedule.last_error = last_error
        schedule.skip_events = skip_events
        schedule.last_skipped = last_skipped
        schedule.catchup = None if catchup is None else Catchup.from_plain(catchup)
        schedule.last_fire_job = last_fire_job
        schedule.overlap_skips = overlap_skips
        st.schedules[name] = schedule
        if next_fire_ms is not None:
            schedule_keys.append((next_fire_ms, name))
    st.schedule_index = SortedIndex.from_sorted(sorted(schedule_keys))
    st.firing = deque(raw["firing"])
    st.idempotency.load(
        (key, (fp, _result_from_plain(result), created_ms))
        for key, fp, created_ms, result in raw["idempotency"]
    )
    return st


def _load_jobs(st: SchedulerState, jobs_plain: list[list[Any]]) -> None:
    dependents: list[tuple[Job, list[str]]] = []
    retained: list[tuple[int, int, str]] = []
    delayed: list[tuple[int, int, str]] = []
    leased: list[tuple[int, int, str]] = []
    pending: dict[str, list[tuple[int, int, str]]] = {}
    listing: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for p in jobs_plain:
        job = Job.__new__(Job)
        (
            job.id,
            job.seq,
            spec,
            state,
            job.reason,
            job.workflow,
            job.max_attempts,
            job.lease_ms,
            job.run_at_ms,
            job.attempts,
            job.token,
            job.lease_expires_ms,
            job.worker_id,
            job.closed_by,
            job.result,
            job.error,
            job.created_ms,
            job.updated_ms,
            job.ended_ms,
            job.pending_deps,
            deps,
            events,
            job.attempt_deadline_ms,
        ) = p
        job.spec = _spec_from_plain(spec)
        job.state = _STATE_BY_NAME[state]
        job.events = tuple(_STATE_BY_NAME.get(e, e) if isinstance(e, str) else e for e in events)
        job.dependents = None
        if deps is not None:
            dependents.append((job, deps))
        st.jobs[job.id] = job
        if job.workflow is not None:
            st.workflows.setdefault(job.workflow, []).append(job.id)
        queue = st.queue_for(job.spec.queue)
        queue.counts[job.state] += 1
        st.state_counts[job.state] += 1
        listing.setdefault((queue.name, job.state), []).append((job.seq, job.id))
        if job.state in TERMINAL:
            retained.append((job.ended_ms, job.seq, job.id))
            st.retained_bytes += job.size_estimate()
            continue
        queue.unfinished += 1
        if job.state == PENDING:
            pending.setdefault(queue.name, []).append(Queue.pending_key(job))
        elif job.state == SCHEDULED:
            delayed.append((job.run_at_ms, job.seq, job.id))
        elif job.state == LEASED:
            leased.append((job.lease_expires_ms, job.seq, job.id))
    for job, deps in dependents:
        job.dependents = [st.jobs[d] for d in deps]
    st.retention_index = SortedIndex.from_sorted(sorted(retained))
    st.delay_index = SortedIndex.from_sorted(sorted(delayed))
    st.lease_index = SortedIndex.from_sorted(sorted(leased))
    for name, keys in pending.items():
        st.queues[name].pending = SortedIndex.from_sorted(sorted(keys))
    st.listing = {pair: SortedIndex.from_sorted(keys) for pair, keys in listing.items()}

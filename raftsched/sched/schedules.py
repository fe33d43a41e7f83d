"""Cron schedules on the state-machine side: when to fire, and never the same fire time twice.

Each fire of schedule `name` at fire time `t` (epoch ms, a whole second; raftsched/sched/cron.py
computes it in the schedule's time zone) creates the job with id `f"{name}@{t}"`, the fire time
rendered as its integer ms. Schedule names and client job ids cannot contain `@`, so these ids
belong to cron alone, and a fire time can make a job only by making exactly that id.

Exactly once per fire time, whichever leader proposes the entry and however often, rests on the
`FireRecord` of each schedule name:
- `watermark_ms`: the latest fire time the cron path has considered. `cron.due_fires` only
  returns fire times after it and it only grows, so replaying or re-proposing cannot fire an
  old time again.
- `covered`: sorted, disjoint intervals [lo, hi] of fire times that did make a job (by the cron
  path or by a backfill). A backfill skips every covered fire time, so a job removed by
  retention is never re-created. Fire times the misfire policy skipped stay uncovered: filling
  those is what backfill is for.
A fire record outlives its schedule (a deleted then re-created schedule keeps its history); the
number of records is bounded by `Limits.max_schedules`.

A new schedule starts its watermark at the state-machine clock: it fires strictly after it was
created. A paused schedule does not fire; when it is resumed, the fire times it missed meet its
misfire policy like any other misfire.
"""

from __future__ import annotations

import bisect
import heapq
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import cron
from .commands import (
    MISFIRE_POLICIES,
    Backfill,
    DeleteSchedule,
    JobSpec,
    PutSchedule,
    template_plain,
)
from .errors import BatchTooLarge, NotFound, TooManySchedules, ValidationError
from .job import PENDING
from .result import Ok, Refused, Result

if TYPE_CHECKING:
    from .state import SchedulerState

# cron.py supports 1900..9000; a clock beyond that (a broken stamp) stops firing, not applying.
CRON_MAX_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp()) * 1000 - 1


def fire_job_id(name: str, fire_ms: int) -> str:
    return f"{name}@{fire_ms}"


class FireRecord:
    __slots__ = ("his", "los", "watermark_ms")

    def __init__(self, watermark_ms: int) -> None:
        self.watermark_ms = watermark_ms
        self.los: list[int] = []
        self.his: list[int] = []

    def covered(self, fire_ms: int) -> bool:
        i = bisect.bisect_right(self.los, fire_ms) - 1
        return i >= 0 and fire_ms <= self.his[i]

    def cover(self, lo: int, hi: int, expr: cron.CronExpr, tz: str) -> None:
        """Record that every fire time in [lo, hi] made a job; merge with neighbours that
        overlap it or that no fire time separates from it."""
        assert lo <= hi
        los, his = self.los, self.his
        i = bisect.bisect_left(his, lo)  # first interval that may touch [lo, hi] from the right
        if i > 0 and cron.next_fire_ms(expr, tz, his[i - 1]) == lo:
            i -= 1  # the previous interval ends at the fire just before lo
        j = i
        while j < len(los) and (
            los[j] <= hi or cron.next_fire_ms(expr, tz, hi) == los[j]
        ):
            j += 1
        if j > i:
            lo, hi = min(lo, los[i]), max(hi, his[j - 1])
        los[i:j] = [lo]
        his[i:j] = [hi]
        assert all(a <= b for a, b in zip(los, his, strict=True))

    def to_plain(self) -> list[Any]:
        return [self.watermark_ms, list(self.los), list(self.his)]

    @classmethod
    def from_plain(cls, data: list[Any]) -> FireRecord:
        record = cls(int(data[0]))
        record.los = [int(x) for x in data[1]]
        record.his = [int(x) for x in data[2]]
        return record


class Schedule:
    __slots__ = ("expr", "last_error", "missed_fires", "next_fire_ms", "spec", "version")

    def __init__(self, spec: PutSchedule, version: int) -> None:
        self.spec = spec
        self.expr = cron.parse_cron(spec.cron)
        self.version = version  # bumps on every put: older heap entries become stale
        self.next_fire_ms: int | None = None
        self.missed_fires = 0  # fires dropped because the queue was full
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def refresh_next_fire(self, record: FireRecord) -> int | None:
        if self.spec.paused or record.watermark_ms > CRON_MAX_MS:
            self.next_fire_ms = None
        else:
            self.next_fire_ms = cron.next_fire_ms(self.expr, self.spec.timezone,
                                                  record.watermark_ms)
        return self.next_fire_ms

    def due(self, record: FireRecord, now_ms: int, default_grace_ms: int) -> list[int]:
        """Fire times to create now; advances the watermark past every due fire time."""
        spec = self.spec
        if now_ms > CRON_MAX_MS:
            return []
        grace_ms = spec.misfire_grace_ms
        fires, watermark_ms = cron.due_fires(
            self.expr, spec.timezone, record.watermark_ms, now_ms,
            cron.MisfirePolicy(spec.misfire), spec.misfire_cap,
            default_grace_ms if grace_ms is None else grace_ms)
        assert watermark_ms >= record.watermark_ms
        record.watermark_ms = watermark_ms
        return fires

    def job_spec(self, fire_ms: int) -> JobSpec:
        t = self.spec.template
        return JobSpec(id=fire_job_id(self.name, fire_ms), queue=t.queue, payload=t.payload,
                       priority=t.priority, max_attempts=t.max_attempts, backoff=t.backoff,
                       lease_ms=t.lease_ms, timeout_ms=t.timeout_ms, tags=t.tags)

    def doc(self, record: FireRecord) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": spec.name,
            "cron": spec.cron,
            "timezone": spec.timezone,
            "template": template_plain(spec.template),
            "misfire": spec.misfire,
            "misfire_cap": spec.misfire_cap,
            "misfire_grace_ms": spec.misfire_grace_ms,
            "paused": spec.paused,
            "next_fire_at": self.next_fire_ms,
            "fired_through": record.watermark_ms,
            "missed_fires": self.missed_fires,
            "last_error": self.last_error,
        }


# -- commands ------------------------------------------------------------------------------------


def _push_next(st: SchedulerState, schedule: Schedule) -> None:
    next_ms = schedule.refresh_next_fire(st.fire_records[schedule.name])
    if next_ms is not None:
        heapq.heappush(st.schedule_heap, (next_ms, schedule.name, schedule.version))


def put_schedule(st: SchedulerState, cmd: PutSchedule, index: int) -> Result:
    # parse.py checked all this; a hand-built command must still never crash a replica.
    try:
        cron.validate_timezone(cmd.timezone)
        cron.parse_cron(cmd.cron)
    except cron.CronError as exc:
        return Refused(ValidationError("cron", str(exc)))
    if cmd.misfire not in MISFIRE_POLICIES or cmd.misfire_cap < 1 or (
            cmd.misfire_grace_ms is not None and cmd.misfire_grace_ms < 0):
        return Refused(ValidationError("misfire", "invalid misfire policy, cap or grace"))
    record = st.fire_records.get(cmd.name)
    if record is None:
        if len(st.fire_records) >= st.limits.max_schedules:
            return Refused(TooManySchedules(
                f"at most {st.limits.max_schedules} schedule names",
                {"limit": st.limits.max_schedules}))
        record = st.fire_records[cmd.name] = FireRecord(st.clock_ms)
    created = cmd.name not in st.schedules
    st.schedule_version += 1
    schedule = st.schedules[cmd.name] = Schedule(cmd, st.schedule_version)
    _push_next(st, schedule)
    return Ok({"schedule": schedule.doc(record), "created": created})


def delete_schedule(st: SchedulerState, cmd: DeleteSchedule, index: int) -> Result:
    if st.schedules.pop(cmd.name, None) is None:
        return Refused(NotFound(f"schedule {cmd.name!r} not found", {"name": cmd.name}))
    return Ok({"deleted": cmd.name})


def backfill(st: SchedulerState, cmd: Backfill, index: int) -> Result:
    schedule = st.schedules.get(cmd.name)
    if schedule is None:
        return Refused(NotFound(f"schedule {cmd.name!r} not found", {"name": cmd.name}))
    if cmd.to_ms > st.clock_ms:
        return Refused(ValidationError("to", f"is after the state-machine clock {st.clock_ms}"))
    if cmd.to_ms > CRON_MAX_MS or cmd.from_ms < 0:
        return Refused(ValidationError("to", "is outside the years cron supports"))
    record = st.fire_records[cmd.name]
    spec, limit = schedule.spec, st.limits.max_backfill_fires
    fires = cron.fires_between(schedule.expr, spec.timezone, cmd.from_ms, cmd.to_ms, limit + 1)
    if len(fires) > limit:
        return Refused(BatchTooLarge("to", f"the interval holds more than {limit} fire times"))
    todo = [t for t in fires
            if not record.covered(t) and fire_job_id(cmd.name, t) not in st.jobs]
    if todo:
        refusal = st.check_room({spec.template.queue: len(todo)})
        if refusal is not None:
            return Refused(refusal)
    created = [fire_job_id(cmd.name, t) for t in todo]
    for t in todo:
        _create_fire(st, schedule, t)
    if fires:
        record.cover(fires[0], fires[-1], schedule.expr, spec.timezone)
    todo_set = set(todo)  # membership only
    skipped = [fire_job_id(cmd.name, t) for t in fires if t not in todo_set]
    return Ok({"created": created, "skipped": skipped})


def _create_fire(st: SchedulerState, schedule: Schedule, fire_ms: int) -> None:
    job_spec = schedule.job_spec(fire_ms)
    assert job_spec.id is not None
    job = st.create_job(job_spec, job_spec.id, None)
    st.transition(job, PENDING)


# -- firing (due work) -----------------------------------------------------------------------


def fire_due(st: SchedulerState) -> int:
    """Create the jobs of every schedule whose next fire time has come; returns how many."""
    heap, now, fired = st.schedule_heap, st.clock_ms, 0
    if now > CRON_MAX_MS:  # a broken stamp: stop firing rather than loop or crash
        heap.clear()
        return 0
    while heap and heap[0][0] <= now:
        _, name, version = heapq.heappop(heap)
        schedule = st.schedules.get(name)
        if schedule is None or schedule.version != version:
            continue  # deleted or replaced since
        record = st.fire_records[name]
        for fire_ms in schedule.due(record, now, st.limits.default_misfire_grace_ms):
            if record.covered(fire_ms) or fire_job_id(name, fire_ms) in st.jobs:
                continue
            refusal = st.check_room({schedule.spec.template.queue: 1})
            if refusal is not None:
                # Never drop a fire silently: count it; a backfill can create it later.
                schedule.missed_fires += 1
                schedule.last_error = f"{refusal.code}: {refusal.message}"
                continue
            _create_fire(st, schedule, fire_ms)
            record.cover(fire_ms, fire_ms, schedule.expr, schedule.spec.timezone)
            fired += 1
        _push_next(st, schedule)
    return fired

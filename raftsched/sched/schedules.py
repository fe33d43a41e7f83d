"""Cron schedules on the state-machine side: when to fire, and never the same fire time twice.

Each fire of schedule `name` at fire time `t` (epoch ms, a whole second; raftsched/sched/cron.py
computes it in the schedule's time zone) creates the job with id `f"{name}@{t}"`, the fire time
rendered as its integer ms. Schedule names and client job ids cannot contain `@`, so these ids
belong to cron alone, and a fire time can make a job only by making exactly that id.

Exactly once per fire time, whichever leader proposes the entry and however often, rests on the
`FireRecord` of each schedule name:
- `watermark_ms`: the latest fire time the cron path has considered; it only grows, so replaying
  or re-proposing cannot fire an old time again.
- `covered`: sorted, disjoint intervals [lo, hi] of fire times (of the current expression) that
  did make a job (by the cron path or by a backfill). A backfill skips every covered fire time.
  Changing the expression or time zone clears them: they described another set of fire times.
A deleted schedule's record is kept `Limits.retention_ms` (like a finished job), then freed;
re-creating a deleted name starts fresh at the clock (it never fires for the time it did not
exist). Names (live plus remembered records) are bounded by `Limits.max_schedules`.

Catch-up in bounded slices (issue 7 defect 1): when a schedule comes due, the fires its misfire
policy keeps are collected (newest first, by backward searches) and then created oldest first,
each step paying units of the entry's budget (a cron search costs far more than a job). A
schedule whose catch-up did not finish waits in `SchedulerState.firing` and continues on the
next entries; its state (`Catchup`) is in the snapshot. Fire times the policy skips are counted
(`skip_events`) and the last skipped span is shown, so an operator can backfill it.

A paused schedule does not fire; when it is resumed, the fire times it missed meet its misfire
policy like any other misfire.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import cron
from .answers import BackfillAnswer, DeletedAnswer, ScheduleAnswer
from .commands import (
    MISFIRE_POLICIES,
    Backfill,
    DeleteSchedule,
    JobSpec,
    PutSchedule,
    template_plain,
)
from .errors import BatchTooLarge, NotFound, TooManySchedules, ValidationError
from .job import PENDING, TERMINAL
from .result import Ok, Refused

if TYPE_CHECKING:
    from .state import Budget, SchedulerState

# cron.py supports 1900..9000; a clock beyond that (a broken stamp) stops firing, not applying.
CRON_MAX_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp()) * 1000 - 1

# Budget units (one unit ~ one job transition; a forward cron search costs ~60 us, a backward
# one a dozen forward searches).
NEXT_FIRE_UNITS = 3
PREV_FIRE_UNITS = 40
CREATE_FIRE_UNITS = 2 + 2 * NEXT_FIRE_UNITS  # the job, plus `cover`'s two searches


def fire_job_id(name: str, fire_ms: int) -> str:
    return f"{name}@{fire_ms}"


class FireRecord:
    __slots__ = ("deleted_ms", "his", "los", "watermark_ms")

    def __init__(self, watermark_ms: int) -> None:
        self.watermark_ms = watermark_ms
        self.los: list[int] = []
        self.his: list[int] = []
        self.deleted_ms = 0  # when its schedule was deleted (0: live); freed at retention

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
        while j < len(los) and (los[j] <= hi or cron.next_fire_ms(expr, tz, hi) == los[j]):
            j += 1
        if j > i:
            lo, hi = min(lo, los[i]), max(hi, his[j - 1])
        los[i:j] = [lo]
        his[i:j] = [hi]
        assert all(a <= b for a, b in zip(los, his, strict=True))

    def to_plain(self) -> list[Any]:
        return [self.watermark_ms, list(self.los), list(self.his), self.deleted_ms]

    @classmethod
    def from_plain(cls, data: list[Any]) -> FireRecord:
        record = cls(int(data[0]))
        record.los = [int(x) for x in data[1]]
        record.his = [int(x) for x in data[2]]
        record.deleted_ms = int(data[3])
        return record


class Catchup:
    """Fires of one due batch: collected newest first while `collect_left` > 0 (each step a
    backward search below `before_ms`, above `floor_ms`), then created oldest first."""

    __slots__ = ("before_ms", "collect_left", "fires", "floor_ms")

    def __init__(self, fires: list[int], before_ms: int, floor_ms: int, collect_left: int) -> None:
        self.fires = fires  # descending: pop() gives the oldest
        self.before_ms = before_ms
        self.floor_ms = floor_ms
        self.collect_left = collect_left

    def to_plain(self) -> list[Any]:
        return [list(self.fires), self.before_ms, self.floor_ms, self.collect_left]

    @classmethod
    def from_plain(cls, data: list[Any]) -> Catchup:
        return cls([int(x) for x in data[0]], int(data[1]), int(data[2]), int(data[3]))


class Schedule:
    __slots__ = (
        "catchup",
        "expr",
        "last_error",
        "last_fire_job",
        "last_skipped",
        "missed_fires",
        "next_fire_ms",
        "overlap_skips",
        "skip_events",
        "spec",
        "version",
    )

    def __init__(self, spec: PutSchedule, version: int) -> None:
        self.spec = spec
        self.expr = cron.parse_cron(spec.cron)
        self.version = version  # bumps on every put
        self.next_fire_ms: int | None = None  # its key in the schedule index, if any
        self.missed_fires = 0  # fires dropped because the queue was full
        self.last_error: str | None = None
        self.skip_events = 0  # due batches in which the misfire policy skipped fire times
        self.last_skipped: list[int] | None = None  # [after_ms, before_ms]: skipped fires inside
        self.catchup: Catchup | None = None
        self.last_fire_job: str | None = None  # the job of the latest fire (overlap policy)
        self.overlap_skips = 0  # fires skipped because the previous one was still running

    @property
    def name(self) -> str:
        return self.spec.name

    def refresh_next_fire(self, record: FireRecord) -> int | None:
        if self.spec.paused or record.watermark_ms > CRON_MAX_MS:
            self.next_fire_ms = None
        else:
            self.next_fire_ms = cron.next_fire_ms(
                self.expr, self.spec.timezone, record.watermark_ms
            )
        return self.next_fire_ms

    def job_spec(self, fire_ms: int) -> JobSpec:
        t = self.spec.template
        return JobSpec(
            id=fire_job_id(self.name, fire_ms),
            queue=t.queue,
            payload=t.payload,
            priority=t.priority,
            max_attempts=t.max_attempts,
            backoff=t.backoff,
            lease_ms=t.lease_ms,
            timeout_ms=t.timeout_ms,
            tags=t.tags,
        )

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
            "skip_events": self.skip_events,
            "last_skipped": (
                None
                if self.last_skipped is None
                else {"after": self.last_skipped[0], "before": self.last_skipped[1]}
            ),
            "catching_up": self.catchup is not None,
            "overlap": spec.overlap,
            "overlap_skips": self.overlap_skips,
        }


# -- commands ------------------------------------------------------------------------------------


def _index_next(st: SchedulerState, schedule: Schedule) -> None:
    """(Re)compute the next fire and put the schedule in the index under it."""
    if schedule.next_fire_ms is not None:
        st.schedule_index.remove((schedule.next_fire_ms, schedule.name))
    next_ms = schedule.refresh_next_fire(st.fire_records[schedule.name])
    if next_ms is not None:
        st.schedule_index.add((next_ms, schedule.name))


def _unindex(st: SchedulerState, schedule: Schedule) -> None:
    if schedule.next_fire_ms is not None:
        st.schedule_index.remove((schedule.next_fire_ms, schedule.name))
        schedule.next_fire_ms = None


def _free_records(st: SchedulerState) -> None:
    """Forget the records of schedules deleted more than a retention ago (only scanned when
    the name limit is reached: at most `max_schedules` records)."""
    cutoff = st.clock_ms - st.limits.retention_ms
    for name in [n for n, r in st.fire_records.items() if r.deleted_ms and r.deleted_ms <= cutoff]:
        del st.fire_records[name]


def put_schedule(st: SchedulerState, cmd: PutSchedule, index: int) -> Ok[ScheduleAnswer] | Refused:
    # parse.py checked all this; a hand-built command must still never crash a replica.
    try:
        cron.validate_timezone(cmd.timezone)
        cron.parse_cron(cmd.cron)
    except cron.CronError as exc:
        return Refused(ValidationError("cron", str(exc)))
    if (
        cmd.misfire not in MISFIRE_POLICIES
        or cmd.misfire_cap < 1
        or (cmd.misfire_grace_ms is not None and cmd.misfire_grace_ms < 0)
    ):
        return Refused(ValidationError("misfire", "invalid misfire policy, cap or grace"))
    record = st.fire_records.get(cmd.name)
    limit = st.limits.max_schedules
    if record is None and len(st.fire_records) >= limit:
        _free_records(st)
        if len(st.fire_records) >= limit:
            return Refused(TooManySchedules(f"at most {limit} schedule names", {"limit": limit}))
    old = st.schedules.get(cmd.name)
    if record is None or record.deleted_ms:
        # New, or re-created after a delete: start fresh at the clock, never firing for the
        # time it did not exist (fires whose job still exists are never made twice).
        record = st.fire_records[cmd.name] = FireRecord(st.clock_ms)
    if old is not None:
        _unindex(st, old)
        if (old.spec.cron, old.spec.timezone) != (cmd.cron, cmd.timezone):
            record.los, record.his = [], []  # they covered the old expression's fire times
    st.schedule_version += 1
    schedule = st.schedules[cmd.name] = Schedule(cmd, st.schedule_version)
    if old is not None:
        schedule.missed_fires, schedule.last_error = old.missed_fires, old.last_error
        schedule.skip_events, schedule.last_skipped = old.skip_events, old.last_skipped
        schedule.last_fire_job, schedule.overlap_skips = old.last_fire_job, old.overlap_skips
    _index_next(st, schedule)
    return Ok({"schedule": schedule.doc(record), "created": old is None})


def delete_schedule(
    st: SchedulerState, cmd: DeleteSchedule, index: int
) -> Ok[DeletedAnswer] | Refused:
    schedule = st.schedules.pop(cmd.name, None)
    if schedule is None:
        return Refused(NotFound(f"schedule {cmd.name!r} not found", {"name": cmd.name}))
    _unindex(st, schedule)
    st.fire_records[cmd.name].deleted_ms = max(1, st.clock_ms)
    return Ok({"deleted": cmd.name})


def backfill(st: SchedulerState, cmd: Backfill, index: int) -> Ok[BackfillAnswer] | Refused:
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
    todo = [t for t in fires if not record.covered(t) and fire_job_id(cmd.name, t) not in st.jobs]
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


# -- firing (due work, in bounded slices) ---------------------------------------------------------


def fire_due(st: SchedulerState, budget: Budget) -> int:
    """Create the jobs of due schedules, within the budget; returns how many."""
    now, fired = st.clock_ms, 0
    if now > CRON_MAX_MS:  # a broken stamp: stop firing rather than loop or crash
        return 0
    firing = st.firing
    while firing and budget.left > 0:
        schedule = st.schedules.get(firing[0])
        if schedule is None or schedule.catchup is None:  # deleted or replaced meanwhile
            firing.popleft()
            continue
        fired += _work(st, schedule, budget)
        if _caught_up(schedule):
            firing.popleft()
            _index_next(st, schedule)
    index = st.schedule_index
    while budget.left > 0:
        key = index.first()
        if key is None or key[0] > now:
            break
        schedule = st.schedules[key[1]]
        _unindex(st, schedule)
        budget.left -= 1
        _begin(st, schedule, budget)
        fired += _work(st, schedule, budget)
        if _caught_up(schedule):
            _index_next(st, schedule)
        else:
            firing.append(schedule.name)
    return fired


def _running(st: SchedulerState, schedule: Schedule) -> bool:
    """Whether the previous fire's job exists and is not terminal."""
    last = schedule.last_fire_job
    job = None if last is None else st.jobs.get(last)
    return job is not None and job.state not in TERMINAL


def _caught_up(schedule: Schedule) -> bool:
    return schedule.catchup is None


def _skipped(schedule: Schedule, after_ms: int, before_ms: int) -> None:
    schedule.skip_events += 1
    schedule.last_skipped = [after_ms, before_ms]


def _begin(st: SchedulerState, schedule: Schedule, budget: Budget) -> None:
    """Decide the due batch: the new watermark and what to collect (misfire policy)."""
    spec, expr, tz = schedule.spec, schedule.expr, schedule.spec.timezone
    record = st.fire_records[schedule.name]
    now, old_ms = st.clock_ms, record.watermark_ms
    grace_ms = (
        st.limits.default_misfire_grace_ms
        if spec.misfire_grace_ms is None
        else spec.misfire_grace_ms
    )
    budget.left -= 2 * NEXT_FIRE_UNITS
    first = cron.next_fire_ms(expr, tz, old_ms)
    if first is None or first > now:
        return
    second = cron.next_fire_ms(expr, tz, first)
    if second is None or second > now:  # the common case: exactly one fire due
        record.watermark_ms = first
        if spec.misfire == "skip" and now - first > grace_ms:
            _skipped(schedule, old_ms, first + 1)
            return
        schedule.catchup = Catchup([first], first, first, 0)
        return
    budget.left -= PREV_FIRE_UNITS
    latest = cron.prev_fire_ms(expr, tz, now + 1)
    assert latest is not None and first < latest <= now
    record.watermark_ms = latest
    cap = spec.misfire_cap
    if spec.misfire == "fire_all":
        floor_ms = old_ms
    elif spec.misfire == "fire_once" and now - first > grace_ms:
        _skipped(schedule, old_ms, latest)
        schedule.catchup = Catchup([latest], latest, latest, 0)
        return
    else:  # skip, or fire_once with every due fire on time: the on-time ones
        if now - latest > grace_ms:
            _skipped(schedule, old_ms, latest + 1)
            return
        floor_ms = max(old_ms, now - grace_ms - 1)
    schedule.catchup = Catchup([latest], latest, floor_ms, cap - 1)
    if floor_ms > old_ms:
        _skipped(schedule, old_ms, floor_ms + 1)


def _work(st: SchedulerState, schedule: Schedule, budget: Budget) -> int:
    """Advance the schedule's catch-up within the budget; returns jobs created."""
    catchup = schedule.catchup
    if catchup is None:
        return 0
    spec, expr, tz = schedule.spec, schedule.expr, schedule.spec.timezone
    while catchup.collect_left > 0 and budget.left > 0:
        budget.left -= PREV_FIRE_UNITS
        fire = cron.prev_fire_ms(expr, tz, catchup.before_ms)
        if fire is None or fire <= catchup.floor_ms:
            catchup.collect_left = 0
            break
        catchup.fires.append(fire)
        catchup.before_ms = fire
        catchup.collect_left -= 1
        if catchup.collect_left == 0 and spec.misfire == "fire_all":
            budget.left -= PREV_FIRE_UNITS
            before = cron.prev_fire_ms(expr, tz, fire)
            if before is not None and before > catchup.floor_ms:  # the cap cut older fires
                _skipped(schedule, catchup.floor_ms, fire)
    if catchup.collect_left > 0:
        return 0
    record, fired = st.fire_records[schedule.name], 0
    fires = catchup.fires
    while fires and budget.left > 0:
        fire_ms = fires.pop()
        budget.left -= 1
        if record.covered(fire_ms) or fire_job_id(schedule.name, fire_ms) in st.jobs:
            continue
        if spec.overlap == "skip_if_running" and _running(st, schedule):
            schedule.overlap_skips += 1
            continue
        refusal = st.check_room({spec.template.queue: 1})
        if refusal is not None:
            # Never drop a fire silently: count it; a backfill can create it later.
            schedule.missed_fires += 1
            schedule.last_error = f"{refusal.code}: {refusal.message}"
            continue
        budget.left -= CREATE_FIRE_UNITS
        _create_fire(st, schedule, fire_ms)
        schedule.last_fire_job = fire_job_id(schedule.name, fire_ms)
        record.cover(fire_ms, fire_ms, expr, tz)
        fired += 1
    if not fires:
        schedule.catchup = None
    return fired

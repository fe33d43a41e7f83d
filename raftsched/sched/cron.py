"""Cron engine: a pure, deterministic function from (expression, zone, times) to fire times.

Theory of operation
-------------------
A cron schedule fires at every *local wall-clock second* that matches its fields. Every
replica of the scheduler state machine must compute the same fire times, so this module
reads no clock, uses no randomness, and takes its time-zone rules from the pinned ``tzdata``
package (never from the operating system's /usr/share/zoneinfo, which differs between OS
versions and would let two replicas disagree about, say, a country's new DST rule).

Two layers:

1. **Local search** (:func:`_next_local_match`) works on naive local time as integer
   seconds. It never steps minute by minute: it advances field by field (next allowed month,
   then day, then hour, minute, second), resetting the lower fields whenever a higher one
   moves, so even a yearly expression is found in a handful of steps. Every loop is bounded
   by a named constant.
2. **Mapping to instants** (:func:`_next_fire_s`) turns local matches into UTC instants
   under the DST rules below. Outside a repeated (fall-back) hour, local order is instant
   order, so the answer is the first local match after the wall time of ``after``. Inside
   one, first-pass matches come first, then (for interval schedules) second-pass ones.
   Only the instant-to-wall-time mapping of zoneinfo is trusted; its local-to-offset (fold)
   answers are hints verified against it, because the two disagree where a zone's explicit
   transitions hand over to its POSIX rule (see :func:`_instants_of_local`).

DST rules (see docs/cron.md)
----------------------------
* **Gap** (spring forward; local times that do not exist): every matching local time in the
  gap fires once, at the transition instant (the first instant after the gap), like cronie
  and Vixie cron. Several gap times (``*/15 2 * * *`` in New York) collapse to one fire.
* **Overlap** (fall back; local times that occur twice): a matching local time fires at its
  first occurrence (fold=0). If the hour field is "every hour" (``*``) or "every n-th hour
  across the day" (``*/n``, ``a/n``, or an equivalent list), the schedule is an interval
  schedule and it fires in the second occurrence as well, so an every-15-minutes job keeps
  running through the repeated hour. Fixed-hour schedules fire once.
* Fire times are whole seconds, strictly increasing, and never the same instant twice.

Time zones are identified by exact IANA name and loaded with ``ZoneInfo.from_file`` from
the ``tzdata`` package's own files; a tzdata upgrade is a coordinated change, like a code
upgrade (``tzdata_version()`` names the release).

Misfires (:func:`due_fires`) are decided against the state machine's clock ``now_ms``:
the due fire times are those in ``(last_fire_ms, now_ms]``; the policy picks which to
create, and the new watermark is always the latest due fire time. Searches backwards
(:func:`prev_fire_ms`) are a bisection over :func:`next_fire_ms`, so both directions see
exactly the same set of fire times by construction.
"""

from __future__ import annotations

import bisect
import calendar
import enum
import functools
import importlib
import importlib.resources
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "CronError",
    "CronExpr",
    "MisfirePolicy",
    "due_fires",
    "fires_between",
    "next_fire_ms",
    "parse_cron",
    "prev_fire_ms",
    "tzdata_version",
    "validate_timezone",
]

# --- limits ---------------------------------------------------------------------------------

EXPR_CHARS_MAX = 1_000
"""Longest accepted expression text; longer input is garbage, not a schedule."""
NUMBER_DIGITS_MAX = 4
"""Digits in one number; no field value needs more, and it keeps int() trivially cheap."""
SEARCH_YEARS_MAX = 12
"""Local search horizon. Any satisfiable expression fires within 8 years (Feb 29 across a
century year such as 2100), so 12 years never misses a fire yet bounds every search."""
SEARCH_STEPS_MAX = SEARCH_YEARS_MAX * 12 * 4 + 16
"""Iterations of the field-by-field search: each one moves to at least the next month,
except a constant number that move within the starting day."""
TRANSITION_SEARCH_STEPS_MAX = 64
"""Bisection steps to locate a UTC-offset transition (2**64 s covers any interval)."""
PREV_SEARCH_STEPS_MAX = 2 * 64
"""Calls to the forward search made by one backward search (galloping then bisection)."""
GAP_BRACKET_STEPS_MAX = 4
"""Days by which a gap's bracketing instants may be widened (real gaps last hours)."""
FIRE_CANDIDATES_MAX = 8 * 3600
"""Local matches tried per forward search; more than one only near inconsistent zone data
(a per-second schedule across a few hours of it)."""
ZONE_CACHE_SIZE = 512
"""Zones kept loaded; tzdata has fewer than 600 names."""
YEAR_MAX = 9_000
"""Fire times beyond this year are reported as "no further fire" (None)."""

_SECONDS_PER_DAY = 86_400
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_INSTANT_S_MIN = -2_208_988_800  # 1900-01-01T00:00:00Z: no schedule needs earlier times
_INSTANT_S_MAX = int((datetime(YEAR_MAX, 1, 1, tzinfo=UTC) - _EPOCH_UTC).total_seconds())


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says which part."""


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_MONTH_NAMES = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_SECOND = _FieldSpec("second", 0, 59, {})
_MINUTE = _FieldSpec("minute", 0, 59, {})
_HOUR = _FieldSpec("hour", 0, 23, {})
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31, {})
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES)
# 7 is accepted as Sunday and folded to 0 after parsing.
_DAY_OF_WEEK = _FieldSpec("day-of-week", 0, 7, _WEEKDAY_NAMES)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NUMBER_RE = re.compile(r"[0-9]+")
_NAME_RE = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class CronExpr:
    """A parsed cron expression. Build it with :func:`parse_cron`.

    ``text`` is the canonical form: ``parse_cron(e.text) == e`` and two expressions that
    match the same times (with the same seconds-ness) have the same text. Each value tuple is
    sorted and non-empty; ``days_of_week`` uses 0 = Sunday .. 6 = Saturday.
    """

    text: str
    has_seconds: bool
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    # Derived from the tuples above (so excluded from comparison): day masks for the day
    # search, the Vixie restriction flags, and the DST overlap rule.
    day_of_month_mask: int = field(compare=False, repr=False)
    day_of_week_mask: int = field(compare=False, repr=False)
    day_of_month_restricted: bool = field(compare=False, repr=False)
    day_of_week_restricted: bool = field(compare=False, repr=False)
    repeats_in_overlap: bool = field(compare=False, repr=False)


def parse_cron(expr: str) -> CronExpr:
    """Parse a 5-field (or 6-field, leading seconds) expression or an @macro.

    Raises CronError naming the field and the problem; rejects expressions that never fire.
    """
    if not isinstance(expr, str):
        raise CronError(f"cron expression must be a string, got {type(expr).__name__}")
    if len(expr) > EXPR_CHARS_MAX:
        raise CronError(f"cron expression longer than {EXPR_CHARS_MAX} characters")
    stripped = expr.strip()
    if not stripped:
        raise CronError("cron expression is empty")
    if stripped.startswith("@"):
        macro = _MACROS.get(stripped.lower())
        if macro is None:
            known = ", ".join(sorted(_MACROS))
            raise CronError(f"unknown macro '{stripped}' (known: {known})")
        stripped = macro
    texts = stripped.split()
    if len(texts) == 5:
        has_seconds = False
        seconds: tuple[int, ...] = (0,)
        rest = texts
    elif len(texts) == 6:
        has_seconds = True
        seconds = _parse_field(texts[0], _SECOND)
        rest = texts[1:]
    else:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a "
            f"leading seconds field, got {len(texts)}: '{stripped}'"
        )
    minutes = _parse_field(rest[0], _MINUTE)
    hours = _parse_field(rest[1], _HOUR)
    days_of_month = _parse_field(rest[2], _DAY_OF_MONTH)
    months = _parse_field(rest[3], _MONTH)
    days_of_week = tuple(sorted({value % 7 for value in _parse_field(rest[4], _DAY_OF_WEEK)}))
    cron = _build(
        has_seconds=has_seconds,
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=months,
        days_of_week=days_of_week,
    )
    if _never_fires(cron):
        raise CronError(f"expression '{stripped}' never fires (no month has such a day)")
    return cron


def _build(
    *,
    has_seconds: bool,
    seconds: tuple[int, ...],
    minutes: tuple[int, ...],
    hours: tuple[int, ...],
    days_of_month: tuple[int, ...],
    months: tuple[int, ...],
    days_of_week: tuple[int, ...],
) -> CronExpr:
    rendered = [
        _render(minutes, 0, 59),
        _render(hours, 0, 23),
        _render(days_of_month, 1, 31),
        _render(months, 1, 12),
        # Weekday lists read better than steps (MON,WED,FRI is '1,3,5', not '1/2').
        _render(days_of_week, 0, 6, steps=False),
    ]
    if has_seconds:
        rendered.insert(0, _render(seconds, 0, 59))
    return CronExpr(
        text=" ".join(rendered),
        has_seconds=has_seconds,
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=months,
        days_of_week=days_of_week,
        day_of_month_mask=sum(1 << day for day in days_of_month),
        day_of_week_mask=sum(1 << day for day in days_of_week),
        # Restriction is judged on the value set, not the spelling: a field that allows
        # every value behaves exactly like '*' (so `1-31` and `*` mean the same).
        day_of_month_restricted=len(days_of_month) != 31,
        day_of_week_restricted=len(days_of_week) != 7,
        repeats_in_overlap=_is_every_nth_hour(hours),
    )


def _is_every_nth_hour(hours: tuple[int, ...]) -> bool:
    """True for `*`, `*/n`, `a/n` (a < n) and equivalent lists: hours spaced n apart all day."""
    if len(hours) == 24:
        return True
    step = _progression_step(hours)
    return step is not None and hours[0] < step and hours[-1] + step > 23


def _progression_step(values: tuple[int, ...]) -> int | None:
    if len(values) < 2:
        return None
    step = values[1] - values[0]
    if all(b - a == step for a, b in itertools.pairwise(values)):
        return step
    return None


def _render(values: tuple[int, ...], low: int, high: int, *, steps: bool = True) -> str:
    """Canonical text of one field's value set (a deterministic function of the set)."""
    assert values and values[0] >= low and values[-1] <= high, values
    if len(values) == high - low + 1:
        return "*"
    step = _progression_step(values)
    if steps and step is not None and len(values) >= 3:
        first, last = values[0], values[-1]
        if step == 1:
            return f"{first}-{last}"
        if last + step > high:  # runs to the end of the field: `*/n` or `a/n`
            return f"*/{step}" if first == low else f"{first}/{step}"
        return f"{first}-{last}/{step}"
    # Otherwise maximal runs of consecutive values: 3+ as `a-b`, shorter ones listed.
    terms: list[str] = []
    run_start = 0
    for index in range(1, len(values) + 1):
        if index < len(values) and values[index] == values[index - 1] + 1:
            continue
        run = values[run_start:index]
        if len(run) >= 3:
            terms.append(f"{run[0]}-{run[-1]}")
        else:
            terms.extend(str(value) for value in run)
        run_start = index
    return ",".join(terms)


def _parse_field(text: str, spec: _FieldSpec) -> tuple[int, ...]:
    def fail(problem: str) -> CronError:
        return CronError(f"{spec.name} field '{text}': {problem}")

    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER_RE.fullmatch(step_text) or len(step_text) > NUMBER_DIGITS_MAX:
                raise fail(f"step '{step_text}' is not a number")
            step = int(step_text)
            span = spec.high - spec.low + 1
            if step == 0:
                raise fail("step must be at least 1")
            if step > span:
                raise fail(f"step {step} larger than the field's {span} values")
        if base == "*":
            first, last = spec.low, spec.high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _parse_value(first_text, spec, fail)
            last = _parse_value(last_text, spec, fail)
            if first > last:
                raise fail(f"range {first_text}-{last_text} is reversed")
        else:
            first = _parse_value(base, spec, fail)
            # `a/n` means a, a+n, ... to the end of the field (as in cronie).
            last = spec.high if slash else first
        values.update(range(first, last + 1, step))
    assert values, text
    return tuple(sorted(values))


def _parse_value(text: str, spec: _FieldSpec, fail: Callable[[str], CronError]) -> int:
    if _NUMBER_RE.fullmatch(text) and len(text) <= NUMBER_DIGITS_MAX:
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise fail(f"value {value} out of range {spec.low}-{spec.high}")
        return value
    if spec.names and _NAME_RE.fullmatch(text) and text.lower() in spec.names:
        return spec.names[text.lower()]
    if not text:
        raise fail("missing value in range")
    raise fail(f"'{text}' is not a valid value")


def _never_fires(cron: CronExpr) -> bool:
    # A bounded search from a fixed date: deterministic, and it finds Feb 29 (<= 8 years).
    start_s = _day_start_s(2001, 1, 1)
    return _next_local_match(cron, start_s, None) is None


# --- time zones -----------------------------------------------------------------------------


def tzdata_version() -> str:
    """The IANA release of the pinned tzdata rules (all replicas must run the same one)."""
    return str(importlib.import_module("tzdata").IANA_VERSION)


@functools.cache
def _zone_names() -> frozenset[str]:
    # The package's own list, so a case-insensitive file system cannot make one replica
    # accept 'america/new_york' while another rejects it.
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(text.split())


@functools.lru_cache(maxsize=ZONE_CACHE_SIZE)
def _load_zone(name: str) -> ZoneInfo:
    resource = importlib.resources.files("tzdata.zoneinfo")
    for part in name.split("/"):
        resource = resource.joinpath(part)
    with resource.open("rb") as handle:
        return ZoneInfo.from_file(handle, key=name)


def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or name not in _zone_names():
        raise CronError(f"unknown time zone '{name}' (not in tzdata {tzdata_version()})")
    return _load_zone(name)


def validate_timezone(name: str) -> None:
    """Raise CronError unless ``name`` is an IANA zone in the pinned tzdata package."""
    _zone(name)


# --- calendar helpers (naive local time as integer seconds since 1970-01-01T00:00) ----------


def _day_start_s(year: int, month: int, day: int) -> int:
    days = datetime(year, month, day).toordinal() - _EPOCH_NAIVE.toordinal()
    return days * _SECONDS_PER_DAY


def _local_fields(local_s: int) -> tuple[int, int, int, int, int, int]:
    moment = _EPOCH_NAIVE + timedelta(seconds=local_s)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _offset_at_local(zone: ZoneInfo, local_s: int, fold: int) -> int:
    naive = _EPOCH_NAIVE + timedelta(seconds=local_s)
    offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _offset_at_instant(zone: ZoneInfo, instant_s: int) -> int:
    offset = (_EPOCH_UTC + timedelta(seconds=instant_s)).astimezone(zone).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _wall(zone: ZoneInfo, instant_s: int) -> int:
    """Local wall time (as local seconds) of an instant: the authoritative mapping."""
    return instant_s + _offset_at_instant(zone, instant_s)


# zoneinfo answers "which offset applies to local time L?" (the fold API) and "what is the
# wall time of instant u?" (fromutc) from different tables, and they disagree where a zone's
# explicit transitions hand over to its POSIX rule (America/Nuuk, October 2023: the fold API
# sees an overlap that no instant produces). Only the instant-to-wall mapping is trusted;
# the fold API supplies candidate offsets that are always verified against it.


def _instants_of_local(zone: ZoneInfo, local_s: int) -> tuple[int, ...]:
    """The instants whose wall time is local_s, ascending: none in a gap, two in an overlap."""
    offset_fold0 = _offset_at_local(zone, local_s, 0)
    offset_fold1 = _offset_at_local(zone, local_s, 1)
    guess = local_s - offset_fold0
    if offset_fold0 == offset_fold1 and _wall(zone, guess) == local_s:
        return (guess,)  # the common case: one offset, confirmed
    candidates = set()
    for offset in (offset_fold0, offset_fold1):
        guess = local_s - offset
        candidates.add(guess)
        candidates.add(local_s - _offset_at_instant(zone, guess))
    found = tuple(sorted(u for u in candidates if _wall(zone, u) == local_s))
    return found


def _transition(zone: ZoneInfo, low_s: int, high_s: int) -> int:
    """First instant in (low_s, high_s] whose offset differs from the offset at low_s."""
    before = _offset_at_instant(zone, low_s)
    assert low_s < high_s and _offset_at_instant(zone, high_s) != before
    for _ in range(TRANSITION_SEARCH_STEPS_MAX):
        if high_s - low_s <= 1:
            return high_s
        middle = (low_s + high_s) // 2
        if _offset_at_instant(zone, middle) == before:
            low_s = middle
        else:
            high_s = middle
    raise AssertionError("transition bisection did not converge")


def _gap_end(zone: ZoneInfo, local_s: int) -> int:
    """For a local time skipped by a gap: the first instant whose wall time is later."""
    offsets = [_offset_at_local(zone, local_s, fold) for fold in (0, 1)]
    low_s, high_s = local_s - max(offsets), local_s - min(offsets)
    # Invariant: wall(low) < local_s < wall(high). Widen if the fold API's hints were off.
    for _ in range(GAP_BRACKET_STEPS_MAX):
        if _wall(zone, low_s) < local_s:
            break
        low_s -= _SECONDS_PER_DAY
    for _ in range(GAP_BRACKET_STEPS_MAX):
        if _wall(zone, high_s) > local_s:
            break
        high_s += _SECONDS_PER_DAY
    assert _wall(zone, low_s) < local_s < _wall(zone, high_s), local_s
    for _ in range(TRANSITION_SEARCH_STEPS_MAX):
        if high_s - low_s <= 1:
            return high_s
        middle = (low_s + high_s) // 2
        if _wall(zone, middle) < local_s:
            low_s = middle
        else:
            high_s = middle
    raise AssertionError("gap bisection did not converge")


def _first_pass_instant(zone: ZoneInfo, local_s: int) -> int:
    """When a matching local time fires: its first occurrence, or the end of its gap."""
    instants = _instants_of_local(zone, local_s)
    return instants[0] if instants else _gap_end(zone, local_s)


@dataclass(frozen=True, slots=True)
class _Overlap:
    """Local times [start_s, end_s) occur twice: first at offset_before, then offset_after."""

    start_s: int
    end_s: int
    offset_before: int
    offset_after: int


def _overlap_containing(zone: ZoneInfo, local_s: int) -> _Overlap | None:
    instants = _instants_of_local(zone, local_s)
    if len(instants) < 2:
        return None
    first_s, second_s = instants[0], instants[-1]
    offset_before, offset_after = local_s - first_s, local_s - second_s
    assert offset_before > offset_after
    transition_s = _transition(zone, first_s, second_s)
    # Clamped so that local_s is inside even if offsets changed twice in the interval.
    start_s = min(transition_s + offset_after, local_s)
    end_s = max(transition_s + offset_before, local_s + 1)
    return _Overlap(start_s, end_s, offset_before, offset_after)


# --- local search ---------------------------------------------------------------------------


def _first_at_least(values: tuple[int, ...], minimum: int) -> int | None:
    index = bisect.bisect_left(values, minimum)
    return values[index] if index < len(values) else None


def _day_matches(cron: CronExpr, year: int, month: int, day: int) -> bool:
    dom_match = bool(cron.day_of_month_mask >> day & 1)
    weekday = (calendar.weekday(year, month, day) + 1) % 7  # cron: 0 = Sunday
    dow_match = bool(cron.day_of_week_mask >> weekday & 1)
    if cron.day_of_month_restricted and cron.day_of_week_restricted:
        return dom_match or dow_match  # Vixie cron: either restricted day field may match
    return dom_match and dow_match


def _next_local_match(cron: CronExpr, start_s: int, limit_s: int | None) -> int | None:
    """Smallest matching local time >= start_s (and < limit_s), or None within the horizon."""
    year, month, day, hour, minute, second = _local_fields(start_s)
    year_max = min(year + SEARCH_YEARS_MAX, YEAR_MAX)
    for _ in range(SEARCH_STEPS_MAX):
        if year > year_max:
            return None
        if limit_s is not None and _day_start_s(year, month, 1) >= limit_s:
            return None
        next_month = _first_at_least(cron.months, month)
        if next_month is None:
            year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
            continue
        if next_month != month:
            month, day, hour, minute, second = next_month, 1, 0, 0, 0
        days_in_month = calendar.monthrange(year, month)[1]
        next_day = next(
            (d for d in range(day, days_in_month + 1) if _day_matches(cron, year, month, d)),
            None,
        )
        if next_day is None:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            day, hour, minute, second = 1, 0, 0, 0
            continue
        if next_day != day:
            day, hour, minute, second = next_day, 0, 0, 0
        next_hour = _first_at_least(cron.hours, hour)
        if next_hour is None:
            day, hour, minute, second = day + 1, 0, 0, 0
            if day > days_in_month:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day = 1
            continue
        if next_hour != hour:
            hour, minute, second = next_hour, 0, 0
        next_minute = _first_at_least(cron.minutes, minute)
        if next_minute is None:
            hour, minute, second = hour + 1, 0, 0
            if hour > 23:
                day, hour = day + 1, 0
                if day > days_in_month:
                    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                    day = 1
            continue
        if next_minute != minute:
            minute, second = next_minute, 0
        next_second = _first_at_least(cron.seconds, second)
        if next_second is None:
            minute, second = minute + 1, 0
            if minute > 59:
                hour, minute = hour + 1, 0
                if hour > 23:
                    day, hour = day + 1, 0
                    if day > days_in_month:
                        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                        day = 1
            continue
        found_s = _day_start_s(year, month, day) + hour * 3600 + minute * 60 + next_second
        assert found_s >= start_s
        if limit_s is not None and found_s >= limit_s:
            return None
        return found_s
    raise AssertionError(f"local search exceeded {SEARCH_STEPS_MAX} steps for '{cron.text}'")


# --- fire times -----------------------------------------------------------------------------


def _next_fire_s(cron: CronExpr, zone: ZoneInfo, after_s: int) -> int | None:
    """Smallest fire instant (whole seconds) strictly greater than after_s."""
    wall_s = _wall(zone, after_s)
    overlap = _overlap_containing(zone, wall_s)
    if overlap is not None:
        second_pass = after_s == wall_s - overlap.offset_after
        if not second_pass:
            # First pass through the repeated hour: later first-pass matches come first.
            local_s = _next_local_match(cron, wall_s + 1, overlap.end_s)
            if local_s is not None:
                return local_s - overlap.offset_before
        if cron.repeats_in_overlap:
            # Interval schedules fire again through the second pass.
            start_s = wall_s + 1 if second_pass else overlap.start_s
            local_s = _next_local_match(cron, start_s, overlap.end_s)
            if local_s is not None:
                return local_s - overlap.offset_after
        # Resume after the repeated span: its first-pass instants are all behind us (this
        # only saves walking through them, the loop below would skip them too).
        wall_s = overlap.end_s - 1
    # Past any repeated hour, local order is instant order (a gap's times collapse onto its
    # end), so the first local match after the wall time is the answer. The loop only
    # repeats where the zone data is inconsistent (see _instants_of_local).
    for _ in range(FIRE_CANDIDATES_MAX):
        local_s = _next_local_match(cron, wall_s + 1, None)
        if local_s is None:
            return None
        fire_s = _first_pass_instant(zone, local_s)
        if fire_s > after_s:
            return fire_s
        wall_s = local_s
    raise AssertionError(f"no fire after {after_s} in {FIRE_CANDIDATES_MAX} candidates")


def _check_instant_ms(name: str, value_ms: int) -> None:
    if not isinstance(value_ms, int) or isinstance(value_ms, bool):
        raise TypeError(f"{name} must be an int (epoch ms), got {type(value_ms).__name__}")
    if not _INSTANT_S_MIN * 1000 <= value_ms <= _INSTANT_S_MAX * 1000:
        raise ValueError(f"{name}={value_ms} outside the supported years 1900-{YEAR_MAX}")


def next_fire_ms(expr: CronExpr, tz: str, after_ms: int) -> int | None:
    """The first fire time strictly after ``after_ms`` (epoch ms).

    None only when there is none before the year 9000 (parse_cron rejects expressions that
    can never fire).
    """
    _check_instant_ms("after_ms", after_ms)
    zone = _zone(tz)
    fire_s = _next_fire_s(expr, zone, after_ms // 1000)
    if fire_s is None or fire_s >= _INSTANT_S_MAX:
        return None
    fire_ms = fire_s * 1000
    assert fire_ms > after_ms, (expr.text, tz, after_ms, fire_ms)
    return fire_ms


def _prev_fire_s(cron: CronExpr, zone: ZoneInfo, before_s: int, floor_s: int) -> int | None:
    """Largest fire instant in (floor_s, before_s), by bisection over the forward search.

    next_fire(x) is monotonic in x, and the latest fire p < before_s is next_fire(p - 1), so
    we gallop backwards from before_s to bracket p - 1, then bisect.
    """
    first = _next_fire_s(cron, zone, floor_s)
    if first is None or first >= before_s:
        return None
    # Invariant: next_fire(low) < before_s <= next_fire(high); the answer is next_fire(low)
    # once they are adjacent. Gallop down from the top (recent fires are usually close),
    # then bisect once a probe lands below.
    low, high = first - 1, before_s - 1
    width, galloping = 1, True
    for _ in range(PREV_SEARCH_STEPS_MAX):
        if high - low <= 1:
            break
        probe = high - width if galloping and high - width > low else (low + high) // 2
        fire = _next_fire_s(cron, zone, probe)
        if fire is not None and fire < before_s:
            low, galloping = probe, False
        else:
            high, width = probe, width * 2
    else:
        raise AssertionError(f"backward search exceeded {PREV_SEARCH_STEPS_MAX} steps")
    fire = _next_fire_s(cron, zone, low)
    assert fire is not None and floor_s < fire < before_s
    return fire


def prev_fire_ms(expr: CronExpr, tz: str, before_ms: int) -> int | None:
    """The latest fire time strictly before ``before_ms``, or None within the horizon."""
    _check_instant_ms("before_ms", before_ms)
    zone = _zone(tz)
    before_s = -(-before_ms // 1000)  # fires are whole seconds: t < before_ms <=> t < ceil
    floor_s = max(_INSTANT_S_MIN, before_s - SEARCH_YEARS_MAX * 366 * _SECONDS_PER_DAY)
    fire_s = _prev_fire_s(expr, zone, before_s, floor_s)
    return None if fire_s is None else fire_s * 1000


def fires_between(expr: CronExpr, tz: str, start_ms: int, end_ms: int, limit: int) -> list[int]:
    """Fire times t with start_ms < t <= end_ms, ascending, at most ``limit`` (the earliest)."""
    _check_instant_ms("start_ms", start_ms)
    _check_instant_ms("end_ms", end_ms)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    zone = _zone(tz)
    fires: list[int] = []
    after_s = start_ms // 1000
    for _ in range(limit):
        fire_s = _next_fire_s(expr, zone, after_s)
        if fire_s is None or fire_s * 1000 > end_ms:
            break
        assert fire_s > after_s
        fires.append(fire_s * 1000)
        after_s = fire_s
    return fires


def _latest_fires(
    cron: CronExpr, zone: ZoneInfo, low_ms: int, high_ms: int, limit: int
) -> list[int]:
    """The latest ``limit`` fire times in (low_ms, high_ms], ascending."""
    assert limit >= 1
    forward: list[int] = []
    after_s = low_ms // 1000
    for _ in range(limit + 1):  # cheap path: few fires in the window
        fire_s = _next_fire_s(cron, zone, after_s)
        if fire_s is None or fire_s * 1000 > high_ms:
            return forward[-limit:]
        forward.append(fire_s * 1000)
        after_s = fire_s
    # More than `limit` fires: walk backwards from the top instead of enumerating them all.
    backward: list[int] = []
    before_s = high_ms // 1000 + 1
    floor_s = low_ms // 1000
    for _ in range(limit):
        fire_s = _prev_fire_s(cron, zone, before_s, floor_s)
        if fire_s is None:
            break
        backward.append(fire_s * 1000)
        before_s = fire_s
    backward.reverse()
    assert len(backward) == limit
    return backward


class MisfirePolicy(enum.Enum):
    """What to do with fire times that were missed (older than the grace period)."""

    SKIP = "skip"  # create only the on-time fires
    FIRE_ONCE = "fire_once"  # if any was missed, create one job for the latest due fire
    FIRE_ALL = "fire_all"  # create every due fire, the latest `cap` of them


def due_fires(  # noqa: PLR0917 - positional signature is the published API
    expr: CronExpr,
    tz: str,
    last_fire_ms: int,
    now_ms: int,
    policy: MisfirePolicy,
    cap: int,
    grace_ms: int,
) -> tuple[list[int], int]:
    """Fire times to create now (ascending) and the new watermark (last_fire_ms).

    Due fires are those in (last_fire_ms, now_ms]; a fire t is on time if
    now_ms - t <= grace_ms. Every policy creates at most ``cap`` jobs, keeping the most
    recent. The watermark becomes the latest due fire (or stays), so no fire time is ever
    considered twice. Cost is bounded by ``cap`` whatever the size of the gap.
    """
    _check_instant_ms("last_fire_ms", last_fire_ms)
    _check_instant_ms("now_ms", now_ms)
    policy = MisfirePolicy(policy)  # also accepts the stored value, e.g. "fire_once"
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if grace_ms < 0:
        raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
    zone = _zone(tz)
    if now_ms <= last_fire_ms:
        return [], last_fire_ms
    first_s = _next_fire_s(expr, zone, last_fire_ms // 1000)
    if first_s is None or first_s * 1000 > now_ms:
        return [], last_fire_ms  # the common case: nothing due, one forward search
    latest = _latest_fires(expr, zone, last_fire_ms, now_ms, 1)
    assert len(latest) == 1
    watermark_ms = latest[0]
    any_missed = now_ms - first_s * 1000 > grace_ms
    match policy:
        case MisfirePolicy.FIRE_ALL:
            fires = _latest_fires(expr, zone, last_fire_ms, now_ms, cap)
        case MisfirePolicy.FIRE_ONCE if any_missed:
            fires = [watermark_ms]
        case MisfirePolicy.FIRE_ONCE | MisfirePolicy.SKIP:
            on_time_low_ms = max(last_fire_ms, now_ms - grace_ms - 1)
            if now_ms - watermark_ms > grace_ms:
                fires = []
            else:
                fires = _latest_fires(expr, zone, on_time_low_ms, now_ms, cap)
    assert len(fires) <= cap
    assert all(last_fire_ms < t <= now_ms for t in fires)
    assert not fires or fires[-1] == watermark_ms
    assert watermark_ms > last_fire_ms
    return fires, watermark_ms

"""Cron engine: parsing, fire times across calendars and DST, misfire policies, and a
brute-force cross-check (every local minute or second in a window) as a hypothesis property.

Times in the tables are written as ISO strings *with their UTC offset*, so each expectation
says both the local wall time and the exact instant. The DST transitions used (tzdata 2026):

  America/New_York     2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)
  Europe/London        2026-03-29 01:00 GMT -> 02:00 BST (01:00Z); 2026-10-25 02:00 BST -> 01:00 GMT (01:00Z)
  Australia/Lord_Howe  2026-04-05 02:00 +11 -> 01:30 +10:30 (04-04 15:00Z); 2026-10-04 02:00 +10:30 -> 02:30 +11 (10-03 15:30Z)
  Asia/Kolkata         +05:30 all year, no DST
"""  # noqa: E501 - the transition table reads best unwrapped

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.sched import cron
from raftsched.sched.cron import (
    CronError,
    CronExpr,
    MisfirePolicy,
    due_fires,
    fires_between,
    next_fire_ms,
    parse_cron,
    prev_fire_ms,
    validate_timezone,
)

NY = "America/New_York"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"
KOLKATA = "Asia/Kolkata"


def ms(iso: str) -> int:
    """Epoch ms of an ISO time with an explicit offset ('Z' allowed)."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, iso
    return int(moment.timestamp() * 1000)


def show(fire_ms: int | None, tz: str) -> str | None:
    """A fire time as local ISO with offset, the form the tables use."""
    if fire_ms is None:
        return None
    local = datetime.fromtimestamp(fire_ms / 1000, UTC).astimezone(cron._zone(tz))
    return local.isoformat(timespec="seconds")


# --- parsing ---------------------------------------------------------------------------------

# (input, canonical text, has_seconds). The canonical text is a function of each field's
# value set: names become numbers, 7 becomes 0, a full set becomes '*', progressions of 3+
# values become steps, and runs become ranges.
PARSE_VALID = [
    ("* * * * *", "* * * * *", False),
    ("  0   12  *  *  *  ", "0 12 * * *", False),  # extra whitespace
    ("*/15 * * * *", "*/15 * * * *", False),
    ("0,15,30,45 * * * *", "*/15 * * * *", False),  # same set, same text
    ("5/15 * * * *", "5/15 * * * *", False),  # a/n: 5,20,35,50
    ("0-30/10 * * * *", "0-30/10 * * * *", False),
    ("0,30 * * * *", "0,30 * * * *", False),  # two values stay a list
    ("1-5,10 * * * *", "1-5,10 * * * *", False),
    ("0 0 1-31 1-12 0-6", "0 0 * * *", False),  # full ranges are '*'
    ("0 9 * * MON-FRI", "0 9 * * 1-5", False),
    ("0 9 * * mon,Wed,FRI", "0 9 * * 1,3,5", False),  # names are case-insensitive
    ("0 0 1 jan,JUL *", "0 0 1 1,7 *", False),
    ("0 0 * * 7", "0 0 * * 0", False),  # 7 is Sunday
    ("0 0 * * 5-7", "0 0 * * 0,5,6", False),
    ("0 0 * * 1-5/2", "0 0 * * 1,3,5", False),  # weekdays are never rendered as steps
    ("0 0 * * 1-7", "0 0 * * *", False),  # 1-7 folds to the whole week
    ("@yearly", "0 0 1 1 *", False),
    ("@annually", "0 0 1 1 *", False),
    ("@monthly", "0 0 1 * *", False),
    ("@weekly", "0 0 * * 0", False),
    ("@daily", "0 0 * * *", False),
    ("@MIDNIGHT", "0 0 * * *", False),
    ("@hourly", "0 * * * *", False),
    ("*/20 * * * * *", "*/20 * * * * *", True),
    ("0 0 0 * * *", "0 0 0 * * *", True),  # seconds field kept even when it is 0
    ("0 0 29 2 *", "0 0 29 2 *", False),  # fires every 4 (or 8) years: accepted
    ("0 0 31 1-12 *", "0 0 31 * *", False),
]


@pytest.mark.parametrize(("text", "canonical", "has_seconds"), PARSE_VALID)
def test_parse_valid_gives_canonical_text(text: str, canonical: str, has_seconds: bool) -> None:
    parsed = parse_cron(text)
    assert parsed.text == canonical
    assert parsed.has_seconds is has_seconds
    # Canonical text is a fixed point and parses to an equal expression.
    assert parse_cron(parsed.text) == parsed
    assert parse_cron(parsed.text).text == canonical


# (input, exact error message). Each message names the field and the problem.
PARSE_ERRORS = [
    ("61 * * * *", "minute field '61': value 61 out of range 0-59"),
    ("* 24 * * *", "hour field '24': value 24 out of range 0-23"),
    ("* * 0 * *", "day-of-month field '0': value 0 out of range 1-31"),
    ("* * * 13 *", "month field '13': value 13 out of range 1-12"),
    ("* * * * 8", "day-of-week field '8': value 8 out of range 0-7"),
    ("60 * * * * *", "second field '60': value 60 out of range 0-59"),
    ("5-1 * * * *", "minute field '5-1': range 5-1 is reversed"),
    ("0 0 * * FRI-MON", "day-of-week field 'FRI-MON': range FRI-MON is reversed"),
    ("*/0 * * * *", "minute field '*/0': step must be at least 1"),
    ("*/61 * * * *", "minute field '*/61': step 61 larger than the field's 60 values"),
    ("*/x * * * *", "minute field '*/x': step 'x' is not a number"),
    ("1,,2 * * * *", "minute field '1,,2': empty list item"),
    ("1, * * * *", "minute field '1,': empty list item"),
    ("1- * * * *", "minute field '1-': missing value in range"),
    ("foo * * * *", "minute field 'foo': 'foo' is not a valid value"),
    ("MON * * * *", "minute field 'MON': 'MON' is not a valid value"),  # names only in their field
    ("0 0 * JANUARY *", "month field 'JANUARY': 'JANUARY' is not a valid value"),
    ("0 0 ? * *", "day-of-month field '?': '?' is not a valid value"),
    ("0 0 L * *", "day-of-month field 'L': 'L' is not a valid value"),
    ("-1 * * * *", "minute field '-1': missing value in range"),
    ("00005 * * * *", "minute field '00005': '00005' is not a valid value"),  # > 4 digits
    (
        "* * *",
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a "
        "leading seconds field, got 3: '* * *'",
    ),
    (
        "* * * * * * *",
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
        "with a leading seconds field, got 7: '* * * * * * *'",
    ),
    ("", "cron expression is empty"),
    ("   ", "cron expression is empty"),
    (
        "@reboot",
        "unknown macro '@reboot' (known: @annually, @daily, @hourly, @midnight, "
        "@monthly, @weekly, @yearly)",
    ),
    ("0 0 30 2 *", "expression '0 0 30 2 *' never fires (no month has such a day)"),
    ("0 0 31 4,6,9,11 *", "expression '0 0 31 4,6,9,11 *' never fires (no month has such a day)"),
    ("* " * 600, "cron expression longer than 1000 characters"),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors_name_field_and_problem(text: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)  # callers may catch ValueError


def test_parse_rejects_non_string() -> None:
    with pytest.raises(CronError, match="must be a string"):
        parse_cron(5)  # type: ignore[arg-type]


def test_parsed_fields_and_flags() -> None:
    parsed = parse_cron("0 9 13 * FRI")
    assert parsed.minutes == (0,) and parsed.hours == (9,) and parsed.seconds == (0,)
    assert parsed.days_of_month == (13,) and parsed.days_of_week == (5,)
    assert parsed.months == tuple(range(1, 13))
    # Overlap rule: hour '*' and every-n-th-hour sets repeat; fixed hours do not.
    assert parse_cron("*/5 * * * *").repeats_in_overlap
    assert parse_cron("0 */2 * * *").repeats_in_overlap
    assert parse_cron("0 1/2 * * *").repeats_in_overlap
    assert parse_cron("0 0,12 * * *").repeats_in_overlap  # == */12
    assert not parse_cron("0 1 * * *").repeats_in_overlap
    assert not parse_cron("0 1,3 * * *").repeats_in_overlap  # stops at 3: fixed hours
    assert not parse_cron("*/15 1 * * *").repeats_in_overlap
    # Frozen: a parsed expression can be shared and used as a dict key.
    assert hash(parsed) == hash(parse_cron("0 9 13 * 5"))


# --- time zones ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NY, LONDON, LORD_HOWE, KOLKATA, "UTC", "Etc/GMT+5"])
def test_known_zones_validate(name: str) -> None:
    validate_timezone(name)


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",
        "america/new_york",  # exact names only, whatever the file system's case rules
        "America",  # a directory of the package, not a zone
        "zone.tab",  # a data file of the package, not a zone
        "../../../etc/passwd",
        "",
        "EST5EDT ",
    ],
)
def test_unknown_zones_raise_cron_error(name: str) -> None:
    with pytest.raises(CronError, match="unknown time zone"):
        validate_timezone(name)
    with pytest.raises(CronError, match="unknown time zone"):
        next_fire_ms(parse_cron("* * * * *"), name, 0)


def test_zones_come_from_the_tzdata_package() -> None:
    # Loaded with ZoneInfo.from_file from the pinned package, not the OS's zoneinfo.
    import tzdata  # type: ignore[import-untyped]

    assert cron.tzdata_version() == tzdata.IANA_VERSION
    assert cron._zone(NY) is cron._zone(NY)  # cached
    assert cron._zone(NY).key == NY


# --- next fire across calendars ------------------------------------------------------------

# (expression, zone, after, expected next fire). Strictly after: a fire at `after` itself is
# not returned.
NEXT_FIRE = [
    # Month, year ends and days that some months lack.
    ("0 * * * *", "UTC", "2026-12-31T23:30:00Z", "2027-01-01T00:00:00+00:00"),
    ("59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00+00:00"),
    ("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00+00:00"),  # no Feb 31
    ("0 0 1 1 *", "UTC", "2026-06-15T12:00:00Z", "2027-01-01T00:00:00+00:00"),
    ("0 0 1 1 *", NY, "2026-06-15T12:00:00Z", "2027-01-01T00:00:00-05:00"),
    # Leap years: Feb 29 in 2028; 2100 is not a leap year, so 2096 -> 2104.
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00+00:00"),
    ("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00+00:00"),
    ("0 12 28 2 *", "UTC", "2028-02-28T12:00:00Z", "2029-02-28T12:00:00+00:00"),
    # Day-of-week and names; 2026-11-01 is a Sunday.
    ("0 0 * * MON", "UTC", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00+00:00"),
    ("0 0 * * 7", "UTC", "2026-11-01T00:00:00Z", "2026-11-08T00:00:00+00:00"),
    ("0 0 1 jul *", "UTC", "2026-07-01T00:00:00Z", "2027-07-01T00:00:00+00:00"),
    # Seconds field, and sub-second `after` values.
    ("*/20 * * * * *", "UTC", "2026-01-01T12:00:59Z", "2026-01-01T12:01:00+00:00"),
    ("30 0 0 * * *", "UTC", "2026-01-01T00:00:30Z", "2026-01-02T00:00:30+00:00"),
    ("* * * * * *", "UTC", "2026-01-01T12:00:00.500Z", "2026-01-01T12:00:01+00:00"),
    ("* * * * *", "UTC", "2026-01-01T12:00:59.999Z", "2026-01-01T12:01:00+00:00"),
    # A zone without DST, with a half-hour offset.
    ("30 2 * * *", KOLKATA, "2026-03-08T00:00:00+05:30", "2026-03-08T02:30:00+05:30"),
    ("0 0 * * *", KOLKATA, "2026-11-01T00:00:00+05:30", "2026-11-02T00:00:00+05:30"),
]


@pytest.mark.parametrize(("text", "tz", "after", "expected"), NEXT_FIRE)
def test_next_fire(text: str, tz: str, after: str, expected: str) -> None:
    fire = next_fire_ms(parse_cron(text), tz, ms(after))
    assert show(fire, tz) == expected
    # The previous fire before `expected` is at or before `after`.
    assert fire is not None
    previous = prev_fire_ms(parse_cron(text), tz, fire)
    assert previous is not None and previous <= ms(after)


# (expression, zone, start, end, expected fires in (start, end]).
FIRES_BETWEEN = [
    # Vixie rule: day-of-month 13 OR Friday. December 2026: Fridays 4, 11, 18, 25; the 13th
    # is a Sunday and fires too.
    (
        "0 9 13 * 5",
        "UTC",
        "2026-12-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        [
            "2026-12-04T09:00:00+00:00",
            "2026-12-11T09:00:00+00:00",
            "2026-12-13T09:00:00+00:00",
            "2026-12-18T09:00:00+00:00",
            "2026-12-25T09:00:00+00:00",
        ],
    ),
    # Only day-of-month restricted: the 13th only.
    (
        "0 9 13 * *",
        "UTC",
        "2026-12-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        ["2026-12-13T09:00:00+00:00"],
    ),
    # A day-of-week listing every day is unrestricted, exactly like '*': the 13th only.
    (
        "0 9 13 * 0-6",
        "UTC",
        "2026-12-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        ["2026-12-13T09:00:00+00:00"],
    ),
    # Only day-of-week restricted: Fridays only.
    (
        "0 9 * * 5",
        "UTC",
        "2026-12-01T00:00:00Z",
        "2026-12-14T00:00:00Z",
        ["2026-12-04T09:00:00+00:00", "2026-12-11T09:00:00+00:00"],
    ),
    # Both restricted with a stepped day-of-month: odd days OR Mondays, first week of Dec.
    (
        "0 0 */2 * MON",
        "UTC",
        "2026-11-30T12:00:00Z",
        "2026-12-08T00:00:00Z",
        [
            "2026-12-01T00:00:00+00:00",
            "2026-12-03T00:00:00+00:00",
            "2026-12-05T00:00:00+00:00",
            "2026-12-07T00:00:00+00:00",
        ],
    ),
    # Start exclusive, end inclusive.
    (
        "0 * * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        "2026-01-01T02:00:00Z",
        ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"],
    ),
]


@pytest.mark.parametrize(("text", "tz", "start", "end", "expected"), FIRES_BETWEEN)
def test_fires_between(text: str, tz: str, start: str, end: str, expected: list[str]) -> None:
    fires = fires_between(parse_cron(text), tz, ms(start), ms(end), 100)
    assert [show(fire, tz) for fire in fires] == expected


def test_fires_between_limit_keeps_the_earliest() -> None:
    every_minute = parse_cron("* * * * *")
    start, end = ms("2026-01-01T00:00:00Z"), ms("2026-01-02T00:00:00Z")
    assert fires_between(every_minute, "UTC", start, end, 3) == [
        start + 60_000,
        start + 120_000,
        start + 180_000,
    ]
    assert fires_between(every_minute, "UTC", start, end, 0) == []
    assert len(fires_between(every_minute, "UTC", start, end, 10_000)) == 1440
    assert fires_between(every_minute, "UTC", end, start, 10) == []  # empty interval
    with pytest.raises(ValueError, match="limit"):
        fires_between(every_minute, "UTC", start, end, -1)


def test_far_future_returns_none_and_bad_instants_raise() -> None:
    yearly = parse_cron("@yearly")
    assert next_fire_ms(yearly, "UTC", ms("8999-06-01T00:00:00Z")) is None
    with pytest.raises(ValueError, match="outside the supported years"):
        next_fire_ms(yearly, "UTC", 10**15)
    with pytest.raises(TypeError):
        next_fire_ms(yearly, "UTC", 1.5)  # type: ignore[arg-type]
    assert prev_fire_ms(yearly, "UTC", ms("1900-06-01T00:00:00Z")) is None


def test_search_is_field_by_field_not_minute_by_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # A yearly per-second expression from just after its fire: a minute-by-minute walk would
    # take 500k steps; the field-by-field search takes a handful of day-match checks.
    calls = 0
    real_day_matches = cron._day_matches

    def counting(expr: CronExpr, year: int, month: int, day: int) -> bool:
        nonlocal calls
        calls += 1
        return real_day_matches(expr, year, month, day)

    leap_day = parse_cron("0 0 0 29 2 *")
    monkeypatch.setattr(cron, "_day_matches", counting)
    fire = next_fire_ms(leap_day, NY, ms("2028-02-29T00:00:00-05:00"))
    assert show(fire, NY) == "2032-02-29T00:00:00-05:00"
    assert calls <= 5 * 31  # one February scan per year for 4 years, plus the start day


# --- DST --------------------------------------------------------------------------------------

# (expression, zone, start, end, expected fires in (start, end]) around each transition.
DST_CASES = [
    # New York spring forward: 02:00-02:59 on 03-08 does not exist. A gap time fires once, at
    # the first instant after the gap (03:00 EDT = 07:00Z).
    (
        "30 2 * * *",
        NY,
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    # Four gap times map to the same instant: one fire, not four.
    (
        "*/15 2 * * *",
        NY,
        "2026-03-08T00:00:00-05:00",
        "2026-03-09T03:00:00-04:00",
        [
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:00:00-04:00",
            "2026-03-09T02:15:00-04:00",
            "2026-03-09T02:30:00-04:00",
            "2026-03-09T02:45:00-04:00",
        ],
    ),
    # Gap times and a real 03:00 collapse into one fire at 03:00 EDT.
    (
        "0,30 2,3 * * *",
        NY,
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T12:00:00-04:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"],
    ),
    (
        "*/30 * * * *",
        NY,
        "2026-03-08T00:45:00-05:00",
        "2026-03-08T04:00:00-04:00",
        [
            "2026-03-08T01:00:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
            "2026-03-08T04:00:00-04:00",
        ],
    ),
    # New York fall back: 01:00-01:59 on 11-01 happens twice. A fixed time fires once, at
    # the first occurrence (EDT).
    (
        "30 1 * * *",
        NY,
        "2026-10-31T00:00:00Z",
        "2026-11-03T00:00:00Z",
        ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    # A fixed hour with a minute step: all of it in the first pass only.
    (
        "*/15 1 * * *",
        NY,
        "2026-11-01T00:00:00-04:00",
        "2026-11-02T01:00:00-05:00",
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:15:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:45:00-04:00",
            "2026-11-02T01:00:00-05:00",
        ],
    ),
    # Hour '*': an interval schedule fires through both passes of the repeated hour.
    (
        "*/30 * * * *",
        NY,
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T02:00:00-05:00",
        [
            "2026-11-01T00:30:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    (
        "@hourly",
        NY,
        "2026-10-31T23:30:00-04:00",
        "2026-11-01T02:00:00-05:00",
        [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    # Every 2nd hour starting at 1 (1,3,5,...): also an interval schedule.
    (
        "0 1/2 * * *",
        NY,
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T04:00:00-05:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T03:00:00-05:00"],
    ),
    # Hours 1 and 3 only: fixed hours, first pass only.
    (
        "0 1,3 * * *",
        NY,
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T04:00:00-05:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T03:00:00-05:00"],
    ),
    # Seconds during the repeated hour (interval): the second pass continues second by second.
    (
        "*/20 * * * * *",
        NY,
        "2026-11-01T01:59:20-04:00",
        "2026-11-01T01:00:20-05:00",
        ["2026-11-01T01:59:40-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:00:20-05:00"],
    ),
    # London spring forward: 01:00-01:59 GMT on 03-29 does not exist.
    (
        "30 1 * * *",
        LONDON,
        "2026-03-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
        ["2026-03-28T01:30:00+00:00", "2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
    ),
    # London fall back: 01:00-01:59 on 10-25 happens twice.
    (
        "30 1 * * *",
        LONDON,
        "2026-10-24T12:00:00Z",
        "2026-10-26T12:00:00Z",
        ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"],
    ),
    (
        "*/20 * * * *",
        LONDON,
        "2026-10-25T00:30:00+01:00",
        "2026-10-25T02:00:00+00:00",
        [
            "2026-10-25T00:40:00+01:00",
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:20:00+01:00",
            "2026-10-25T01:40:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T01:20:00+00:00",
            "2026-10-25T01:40:00+00:00",
            "2026-10-25T02:00:00+00:00",
        ],
    ),
    # Lord Howe DST ends with a 30-minute shift: 01:30-01:59 on 04-05 happens twice.
    (
        "45 1 * * *",
        LORD_HOWE,
        "2026-04-04T00:00:00+11:00",
        "2026-04-06T12:00:00+10:30",
        ["2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    ),
    (
        "*/15 * * * *",
        LORD_HOWE,
        "2026-04-05T01:00:00+11:00",
        "2026-04-05T02:00:00+10:30",
        [
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
    ),
    # Lord Howe DST starts: 02:00-02:29 on 10-04 does not exist; the gap fires at 02:30 +11.
    (
        "15 2 * * *",
        LORD_HOWE,
        "2026-10-03T00:00:00+10:30",
        "2026-10-05T12:00:00+11:00",
        ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
    ),
    # Three gap times plus the real 02:30 make one fire; then 02:40 and 02:50.
    (
        "*/10 2 * * *",
        LORD_HOWE,
        "2026-10-04T00:00:00+10:30",
        "2026-10-04T12:00:00+11:00",
        ["2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00", "2026-10-04T02:50:00+11:00"],
    ),
    # America/Nuuk, 2023-10-29 01:00Z: only the DST flag changes (-02 summer -> -02 standard),
    # but zoneinfo's local-time API reports an overlap there that no instant produces. The
    # engine trusts instants, so nothing repeats and nothing crashes.
    (
        "30 23 * * *",
        "America/Nuuk",
        "2023-10-28T12:00:00-02:00",
        "2023-10-29T12:00:00-02:00",
        ["2023-10-28T23:30:00-02:00"],
    ),
    (
        "*/30 23,0 * * *",
        "America/Nuuk",
        "2023-10-28T22:45:00-02:00",
        "2023-10-29T00:30:00-02:00",
        [
            "2023-10-28T23:00:00-02:00",
            "2023-10-28T23:30:00-02:00",
            "2023-10-29T00:00:00-02:00",
            "2023-10-29T00:30:00-02:00",
        ],
    ),
    # No DST in Kolkata: 02:30 every day on both of New York's transition days.
    (
        "30 2 * * *",
        KOLKATA,
        "2026-03-07T12:00:00+05:30",
        "2026-03-09T12:00:00+05:30",
        ["2026-03-08T02:30:00+05:30", "2026-03-09T02:30:00+05:30"],
    ),
]


@pytest.mark.parametrize(("text", "tz", "start", "end", "expected"), DST_CASES)
def test_dst_fires(text: str, tz: str, start: str, end: str, expected: list[str]) -> None:
    expr = parse_cron(text)
    fires = fires_between(expr, tz, ms(start), ms(end), 100)
    assert [show(fire, tz) for fire in fires] == expected
    assert fires == sorted(set(fires))  # strictly increasing, no instant twice
    # Walking backwards from the end visits exactly the same fire times.
    backwards: list[int] = []
    before = ms(end) + 1
    while (previous := prev_fire_ms(expr, tz, before)) is not None and previous > ms(start):
        backwards.append(previous)
        before = previous
    assert backwards[::-1] == fires


# --- misfire policies --------------------------------------------------------------------------

BASE = ms("2026-01-01T00:00:00Z")
MINUTE = 60_000
SKIP, ONCE, ALL = MisfirePolicy.SKIP, MisfirePolicy.FIRE_ONCE, MisfirePolicy.FIRE_ALL
MisfireCase = tuple[MisfirePolicy, float, float, int, int, list[int], int]

# Every minute in UTC: fire times are BASE + k minutes. Columns: policy, last_fire, now, cap,
# grace, expected fires (in minutes after BASE), expected watermark (minutes after BASE).
# Times are in minutes after BASE; grace in seconds.
MISFIRE_CASES: list[MisfireCase] = [
    # Exactly on time: every policy creates the one fire.
    (SKIP, 0, 1, 10, 0, [1], 1),
    (ONCE, 0, 1, 10, 0, [1], 1),
    (ALL, 0, 1, 10, 0, [1], 1),
    # Nothing due yet: no jobs, watermark unchanged.
    (ALL, 1, 1.98, 10, 60, [], 1),
    (ALL, 5, 5, 10, 60, [], 5),  # now == last
    (ALL, 5, 4, 10, 60, [], 5),  # now < last (clock cannot go back, but be safe)
    # now = 2:30, grace 60 s: fire 1 is 90 s late (missed), fire 2 is 30 s late (on time).
    (SKIP, 0, 2.5, 10, 60, [2], 2),  # only the on-time one
    (ONCE, 0, 2.5, 10, 60, [2], 2),  # something was missed: only the latest
    (ALL, 0, 2.5, 10, 60, [1, 2], 2),  # every due fire
    # now = 10:30 after downtime, grace 10 s: even the latest fire is late.
    (SKIP, 0, 10.5, 10, 10, [], 10),  # all skipped, but the watermark moves on
    (ONCE, 0, 10.5, 10, 10, [10], 10),
    (ALL, 0, 10.5, 3, 10, [8, 9, 10], 10),  # the most recent `cap`
    (ALL, 0, 10.5, 100, 10, list(range(1, 11)), 10),
    # Long grace (5 min) at now = 10:00: fires 5..10 are on time, 1..4 missed.
    (SKIP, 0, 10, 100, 300, [5, 6, 7, 8, 9, 10], 10),
    (SKIP, 0, 10, 4, 300, [7, 8, 9, 10], 10),  # cap bounds every policy
    (ONCE, 0, 10, 100, 300, [10], 10),  # one missed: one job only
    # Nothing missed (grace 1 h): FIRE_ONCE creates every due (on-time) fire.
    (ONCE, 0, 3, 100, 3600, [1, 2, 3], 3),
    (ONCE, 0, 3, 2, 3600, [2, 3], 3),
]


@pytest.mark.parametrize("case", MISFIRE_CASES)
def test_misfire_policies(case: MisfireCase) -> None:
    policy, last, now, cap, grace_s, expected, watermark = case
    every_minute = parse_cron("* * * * *")
    last_ms, now_ms = BASE + int(last * MINUTE), BASE + int(now * MINUTE)
    fires, new_last_ms = due_fires(
        every_minute, "UTC", last_ms, now_ms, policy, cap, grace_s * 1000
    )
    assert fires == [BASE + k * MINUTE for k in expected]
    assert new_last_ms == BASE + watermark * MINUTE
    # The watermark means nothing is ever considered again at the same `now`.
    assert due_fires(every_minute, "UTC", new_last_ms, now_ms, policy, cap, grace_s * 1000) == (
        [],
        new_last_ms,
    )


def test_misfire_huge_gap_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A per-second schedule after a year of downtime: 31.5M due fires. FIRE_ALL with cap 100
    # must find the latest 100 without enumerating them all.
    every_second = parse_cron("* * * * * *")
    last_ms, now_ms = ms("2025-01-01T00:00:00Z"), ms("2026-01-01T00:00:00Z")
    searches = 0
    real_next = cron._next_fire_s

    def counting(*args: object) -> int | None:
        nonlocal searches
        searches += 1
        return real_next(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cron, "_next_fire_s", counting)
    fires, watermark = due_fires(every_second, NY, last_ms, now_ms, ALL, 100, 5_000)
    assert fires == [now_ms - 1000 * k for k in range(99, -1, -1)]
    assert watermark == now_ms
    assert searches < 100 * 10  # a few forward searches per backward step
    searches = 0
    fires, watermark = due_fires(every_second, NY, last_ms, now_ms, ONCE, 100, 0)
    assert (fires, watermark) == ([now_ms], now_ms)
    assert searches < 200


def test_misfire_argument_checks() -> None:
    every_minute = parse_cron("* * * * *")
    with pytest.raises(ValueError, match="cap"):
        due_fires(every_minute, "UTC", BASE, BASE + MINUTE, ALL, 0, 0)
    with pytest.raises(ValueError, match="grace_ms"):
        due_fires(every_minute, "UTC", BASE, BASE + MINUTE, ALL, 1, -1)
    with pytest.raises(CronError, match="unknown time zone"):
        due_fires(every_minute, "Nowhere/Town", BASE, BASE + MINUTE, ALL, 1, 0)
    with pytest.raises(ValueError, match="not a valid MisfirePolicy"):
        due_fires(every_minute, "UTC", BASE, BASE + MINUTE, "sometimes", 1, 0)  # type: ignore[arg-type]
    # The stored string value works as well as the member.
    assert due_fires(every_minute, "UTC", BASE, BASE + MINUTE, "fire_all", 1, 0) == (  # type: ignore[arg-type]
        [BASE + MINUTE],
        BASE + MINUTE,
    )


def test_misfire_across_dst_gap_fires_once() -> None:
    # Down across New York's spring-forward night: `*/15 2 * * *` has one fire that night.
    expr = parse_cron("*/15 2 * * *")
    last_ms = ms("2026-03-07T02:45:00-05:00")
    now_ms = ms("2026-03-08T12:00:00-04:00")
    fires, watermark = due_fires(expr, NY, last_ms, now_ms, ALL, 100, 0)
    assert [show(fire, NY) for fire in fires] == ["2026-03-08T03:00:00-04:00"]
    assert watermark == fires[0]


# --- brute-force cross-check -------------------------------------------------------------------


def brute_force_fires(expr: CronExpr, tz: str, start_s: int, end_s: int) -> list[int]:
    """Fire instants in (start_s, end_s], by looking at every second or minute.

    Written from the documented rules, independently of the engine, using only the
    instant-to-wall-time mapping: an instant fires if its wall time matches and was not
    seen before (a repeat fires only for interval schedules), and the first instant after a
    gap fires if any skipped local time matches.
    """
    zone = cron._zone(tz)
    step_s = 1 if expr.has_seconds else 60
    first_s = (start_s // step_s + 1) * step_s

    def offset_s(instant_s: int) -> int:
        aware = datetime.fromtimestamp(instant_s, UTC).astimezone(zone)
        delta = aware.utcoffset()
        assert delta is not None
        return int(delta.total_seconds())

    def matches(local_s: int) -> bool:
        wall = datetime(1970, 1, 1) + timedelta(seconds=local_s)
        cron_weekday = (calendar.weekday(wall.year, wall.month, wall.day) + 1) % 7
        dom_ok = wall.day in expr.days_of_month
        dow_ok = cron_weekday in expr.days_of_week
        restricted = len(expr.days_of_month) < 31 and len(expr.days_of_week) < 7
        return (
            wall.second in expr.seconds
            and wall.minute in expr.minutes
            and wall.hour in expr.hours
            and wall.month in expr.months
            and (dom_ok or dow_ok if restricted else dom_ok and dow_ok)
        )

    fires = []
    # A wall time already seen is a second occurrence (a fall-back repeat). Scanning starts
    # 2 hours early so the first pass of a repeated hour is seen before the window opens.
    seen_walls: set[int] = set()
    lead_s = 2 * 60 * 60
    previous_offset_s = offset_s(first_s - lead_s - step_s)
    for instant_s in range(first_s - lead_s, end_s + 1, step_s):
        current_offset_s = offset_s(instant_s)
        wall_s = instant_s + current_offset_s
        repeated = wall_s in seen_walls
        seen_walls.add(wall_s)
        fire = matches(wall_s) and (not repeated or expr.repeats_in_overlap)
        if current_offset_s > previous_offset_s:  # a gap ended at this instant
            skipped = range(instant_s + previous_offset_s, instant_s + current_offset_s, step_s)
            fire = fire or any(matches(local_s) for local_s in skipped)
        if fire and instant_s >= first_s:
            fires.append(instant_s * 1000)
        previous_offset_s = current_offset_s
    return fires


def field_text(draw: st.DrawFn, low: int, high: int) -> str:
    kind = draw(st.sampled_from(["*", "step", "value", "list", "range", "offset_step"]))
    if kind == "*":
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, high - low + 1))}"
    if kind == "value":
        return str(draw(st.integers(low, high)))
    if kind == "list":
        values = draw(st.lists(st.integers(low, high), min_size=1, max_size=4))
        return ",".join(str(value) for value in values)
    first = draw(st.integers(low, high))
    if kind == "offset_step":
        return f"{first}/{draw(st.integers(1, high - low + 1))}"
    last = draw(st.integers(first, high))
    return f"{first}-{last}/{draw(st.integers(1, 6))}"


@st.composite
def expressions(draw: st.DrawFn, with_seconds: bool) -> CronExpr:
    fields = [
        field_text(draw, 0, 59),
        # Hours near the transitions are the interesting ones.
        draw(st.sampled_from(["*", "1", "2", "0-3", "*/2", "1/2", "1,2,3", "*/3"]))
        if draw(st.booleans())
        else field_text(draw, 0, 23),
        draw(st.sampled_from(["*", "*", "*", "1-15", "*/2", "8", "25,28"])),
        draw(st.sampled_from(["*", "*", "*", "3,4,10,11", "1-6"])),
        draw(st.sampled_from(["*", "*", "*", "0", "SUN", "1-5", "6,0"])),
    ]
    if with_seconds:
        fields.insert(0, field_text(draw, 0, 59))
    return parse_cron(" ".join(fields))


# (zone, an instant near a transition). Windows straddle them.
TRANSITIONS = [
    (NY, ms("2026-03-08T07:00:00Z")),
    (NY, ms("2026-11-01T06:00:00Z")),
    (LORD_HOWE, ms("2026-04-04T15:00:00Z")),
    (LORD_HOWE, ms("2026-10-03T15:30:00Z")),
    ("UTC", ms("2028-02-29T00:00:00Z")),
]

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # deterministic: the same examples on every run
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    expr=expressions(with_seconds=False),
    transition=st.sampled_from(TRANSITIONS),
    shift_min=st.integers(-26 * 60, 2 * 60),
    probes=st.lists(st.integers(0, 24 * 60 * 60), min_size=1, max_size=5),
)
def test_matches_brute_force_minutes(
    expr: CronExpr, transition: tuple[str, int], shift_min: int, probes: list[int]
) -> None:
    tz, transition_ms = transition
    start_s = transition_ms // 1000 + shift_min * 60
    end_s = start_s + 24 * 60 * 60
    check_against_brute_force(expr, tz, start_s, end_s, probes)


@settings(PROPERTY_SETTINGS, max_examples=40)  # per-second brute force costs more
@given(
    expr=expressions(with_seconds=True),
    transition=st.sampled_from(TRANSITIONS),
    shift_s=st.integers(-30 * 60, 10 * 60),
    probes=st.lists(st.integers(0, 40 * 60), min_size=1, max_size=5),
)
def test_matches_brute_force_seconds(
    expr: CronExpr, transition: tuple[str, int], shift_s: int, probes: list[int]
) -> None:
    tz, transition_ms = transition
    start_s = transition_ms // 1000 + shift_s
    check_against_brute_force(expr, tz, start_s, start_s + 40 * 60, probes)


def check_against_brute_force(
    expr: CronExpr, tz: str, start_s: int, end_s: int, probes: list[int]
) -> None:
    expected = brute_force_fires(expr, tz, start_s, end_s)
    fires = fires_between(expr, tz, start_s * 1000, end_s * 1000, 100_000)
    assert fires == expected, expr.text
    for probe_s in probes:
        after_ms = (start_s + probe_s) * 1000 + probe_s % 1000  # some sub-second afters
        fire = next_fire_ms(expr, tz, after_ms)
        assert fire is None or fire > after_ms
        later = [t for t in expected if t > after_ms]
        if later:
            # The next fire is the first brute-force fire: nothing matched in between.
            assert fire == later[0], (expr.text, after_ms)
        else:
            assert fire is None or fire > end_s * 1000
        earlier = [t for t in expected if t < after_ms]
        previous = prev_fire_ms(expr, tz, after_ms)
        if earlier:
            assert previous == earlier[-1], (expr.text, after_ms)
        else:
            assert previous is None or previous <= start_s * 1000


@settings(max_examples=200, deadline=None, derandomize=True)
@given(expr=expressions(with_seconds=False) | expressions(with_seconds=True))
def test_canonical_text_round_trips(expr: CronExpr) -> None:
    assert parse_cron(expr.text) == expr
    assert parse_cron(expr.text).text == expr.text

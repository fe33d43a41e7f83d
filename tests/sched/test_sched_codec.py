"""The scheduler command codec: every valid command round-trips; garbage raises only
WireDecodeError."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import commands as c
from raftsched.sched.limits import SETTING_NAMES, Limits
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.sched_codec import FORMAT_VERSION, decode_command, encode_command

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,15}", fullmatch=True)
job_ids = names.filter(lambda s: not s.startswith("auto-"))
job_refs = st.one_of(job_ids, st.builds(lambda n, t: f"{n}@{t}", names, st.integers(0, 2**40)))
ms = st.integers(0, 2**53)
small_ms = st.integers(1, 86_400_000)
keys = st.none() | st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
backoffs = st.builds(
    lambda i, extra, m: c.Backoff(i, m, i + extra),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.floats(1.0, 100.0),
)
tags = st.lists(st.text(min_size=1, max_size=10), max_size=3, unique=True).map(tuple)


@st.composite
def job_specs(draw: st.DrawFn, need_id: bool = False) -> c.JobSpec:
    job_id = draw(job_ids if need_id else st.none() | job_ids)
    deps = draw(st.lists(job_refs, max_size=3, unique=True).map(tuple))
    if job_id in deps:
        deps = ()
    run_at, delay = draw(st.sampled_from([(None, None), ("r", None), (None, "d")]))
    return c.JobSpec(
        id=job_id,
        queue=draw(names),
        payload=draw(json_values),
        priority=draw(st.integers(-(2**31), 2**31)),
        run_at_ms=draw(ms) if run_at else None,
        delay_ms=draw(ms) if delay else None,
        max_attempts=draw(st.none() | st.integers(1, 1000)),
        backoff=draw(backoffs),
        lease_ms=draw(st.none() | small_ms),
        timeout_ms=draw(st.none() | small_ms),
        depends_on=deps,
        tags=draw(tags),
    )


def _unique_ids(specs: list[c.JobSpec]) -> bool:
    ids = [s.id for s in specs if s.id is not None]
    return len(ids) == len(set(ids))


templates = st.builds(
    c.JobTemplate,
    queue=names,
    payload=json_values,
    priority=st.integers(-100, 100),
    max_attempts=st.none() | st.integers(1, 9),
    backoff=backoffs,
    lease_ms=st.none() | small_ms,
    timeout_ms=st.none() | small_ms,
    tags=tags,
)

commands = st.one_of(
    st.builds(
        c.SubmitJobs,
        jobs=st.lists(job_specs(), min_size=1, max_size=4).filter(_unique_ids).map(tuple),
        idempotency_key=keys,
    ),
    st.builds(
        c.SubmitWorkflow,
        workflow_id=names,
        jobs=st.lists(job_specs(need_id=True), min_size=1, max_size=4)
        .filter(_unique_ids)
        .map(tuple),
        idempotency_key=keys,
    ),
    st.builds(
        c.Lease,
        queue=names,
        worker_id=names,
        max_jobs=st.integers(1, 1000),
        wait_ms=st.integers(0, 60_000),
        idempotency_key=keys,
    ),
    st.builds(
        c.HeartbeatLease,
        job_id=job_refs,
        token=st.integers(1, 2**63 - 1),
        extend_ms=st.none() | small_ms,
        idempotency_key=keys,
    ),
    st.builds(
        c.Complete,
        job_id=job_refs,
        token=st.integers(1, 2**63 - 1),
        result=json_values,
        idempotency_key=keys,
    ),
    st.builds(
        c.Fail,
        job_id=job_refs,
        token=st.integers(1, 2**63 - 1),
        error=json_values,
        retryable=st.booleans(),
        idempotency_key=keys,
    ),
    st.builds(
        c.ReportBatch,
        reports=st.lists(
            st.one_of(
                st.builds(
                    c.Complete, job_id=job_refs, token=st.integers(1, 2**63 - 1), result=json_values
                ),
                st.builds(
                    c.Fail,
                    job_id=job_refs,
                    token=st.integers(1, 2**63 - 1),
                    error=json_values,
                    retryable=st.booleans(),
                ),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda r: r.job_id,
        ).map(tuple),
        idempotency_key=keys,
    ),
    st.builds(
        c.Cancel,
        job_id=job_refs,
        reason=st.none() | st.text(min_size=1, max_size=9),
        idempotency_key=keys,
    ),
    st.builds(
        c.WorkerHeartbeat,
        worker_id=names,
        capacity=st.integers(0, 1000),
        queues=st.lists(names, max_size=3, unique=True).map(tuple),
        ttl_ms=st.none() | small_ms,
        idempotency_key=keys,
    ),
    st.builds(
        c.ConfigureQueue,
        queue=names,
        max_in_flight=st.none() | st.integers(0, 99),
        lease_ms=st.none() | small_ms,
        max_attempts=st.none() | st.integers(1, 9),
        paused=st.booleans(),
        idempotency_key=keys,
    ),
    st.builds(
        c.PutSchedule,
        name=names,
        cron=st.sampled_from(["* * * * *", "*/5 * * * * *", "0 9 * * MON-FRI", "@daily"]),
        template=templates,
        timezone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
        misfire=st.sampled_from(c.MISFIRE_POLICIES),
        misfire_cap=st.integers(1, 1000),
        misfire_grace_ms=st.none() | ms,
        paused=st.booleans(),
        idempotency_key=keys,
    ),
    st.builds(c.DeleteSchedule, name=names, idempotency_key=keys),
    st.builds(lambda n, a, b, k: c.Backfill(n, min(a, b), max(a, b), k), names, ms, ms, keys),
    st.builds(c.Tick, idempotency_key=keys),
    st.builds(
        lambda v, k: c.Bootstrap(settings=Limits(retention_ms=v), idempotency_key=k),
        st.integers(1, 2**53),
        keys,
    ),
    st.builds(
        lambda d, k: c.UpdateSettings(changes=tuple(sorted(d.items())), idempotency_key=k),
        st.dictionaries(
            st.sampled_from(SETTING_NAMES), st.integers(1, 2**53), min_size=1, max_size=3
        ),
        keys,
    ),
    st.builds(c.AcceptClockJump, to_ms=ms, idempotency_key=keys),
    st.builds(
        c.RequeueDead,
        job_ids=st.lists(job_refs, min_size=1, max_size=3, unique=True).map(tuple),
        max_attempts=st.none() | st.integers(1, 9),
        idempotency_key=keys,
    ),
    st.builds(
        c.PurgeDead,
        job_ids=st.lists(job_refs, min_size=1, max_size=3, unique=True).map(tuple),
        idempotency_key=keys,
    ),
    st.builds(
        c.CancelWorkflow,
        workflow_id=names,
        reason=st.none() | st.text(min_size=1, max_size=9),
        idempotency_key=keys,
    ),
)


@given(commands)
@settings(max_examples=300, deadline=None)
def test_round_trip(cmd: c.Command) -> None:
    data = encode_command(cmd)
    assert decode_command(data) == cmd
    assert encode_command(decode_command(data)) == data


@given(commands, st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_bytes_raise_only_wire_decode_error(cmd: c.Command, data: st.DataObject) -> None:
    raw = bytearray(encode_command(cmd))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decoded = decode_command(candidate)
        except WireDecodeError:
            continue
        assert type(decoded) in c.KIND_BY_TYPE  # it decoded to a valid command


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_wire_decode_error(raw: bytes) -> None:
    with contextlib.suppress(WireDecodeError):
        decode_command(raw)


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        _pack([FORMAT_VERSION, "tick"]),
        _pack([FORMAT_VERSION + 1, "tick", {}]),
        _pack([True, "tick", {}]),
        _pack([FORMAT_VERSION, "reboot", {}]),
        _pack([FORMAT_VERSION, "tick", []]),
        _pack([FORMAT_VERSION, "tick", {"extra": 1}]),
        _pack([FORMAT_VERSION, "complete", {"job_id": "a", "token": True}]),
        _pack([FORMAT_VERSION, "complete", {"job_id": b"a", "token": 1}]),
        _pack([FORMAT_VERSION, "report_batch", {"reports": []}]),
        _pack([FORMAT_VERSION, "report_batch", {"reports": [{"job_id": "a", "token": 0}]}]),
        _pack(
            [
                FORMAT_VERSION,
                "report_batch",
                {"reports": [{"job_id": "a", "token": 1}, {"job_id": "a", "token": 2}]},
            ]
        ),
        _pack(
            [
                FORMAT_VERSION,
                "report_batch",
                {"reports": [{"job_id": "a", "token": 1, "result": 1, "retryable": True}]},
            ]
        ),
        _pack([FORMAT_VERSION, "submit_jobs", {"jobs": [{"queue": "q", "payload": b"x"}]}]),
        _pack([FORMAT_VERSION, "submit_jobs", {"jobs": [{"queue": "q", "payload": {1: 2}}]}]),
        _pack(
            [
                FORMAT_VERSION,
                "put_schedule",
                {"name": "s", "cron": "bad", "template": {"queue": "q"}},
            ]
        ),
        _pack([FORMAT_VERSION, "tick", {}]) + b"\x00",
        _pack([FORMAT_VERSION, "tick", {}])[:-1],
        _pack({"v": 1}),
        b"\xc1",
    ],
)
def test_malformed_commands_are_refused(raw: bytes) -> None:
    with pytest.raises(WireDecodeError):
        decode_command(raw)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(WireDecodeError):
        decode_command("tick")  # type: ignore[arg-type]


@given(st.lists(st.tuples(commands, st.integers(0, 120_000)), max_size=25))
@settings(max_examples=150, deadline=None)
def test_apply_never_raises_on_any_decodable_command(entries: list[tuple[c.Command, int]]) -> None:
    """Whatever a committed entry holds, if it decodes, every replica applies it without
    crashing, and a snapshot taken after it restores to the same state."""
    from raftsched.sched import Ok, Refused, SchedulerState

    state = SchedulerState()
    now = 1_700_000_000_000
    for index, (cmd, step_ms) in enumerate(entries, start=1):
        now += step_ms
        result = state.apply(decode_command(encode_command(cmd)), index, now)
        assert isinstance(result, Ok | Refused)
    assert SchedulerState.restore(state.snapshot()).state_hash() == state.state_hash()

"""The trusted decode of committed commands: the same command as the full decode for what a
leader encodes, only WireDecodeError on garbage, and nothing it lets through crashes apply."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import Ok, Refused, SchedulerState
from raftsched.sched import commands as c
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.sched_codec import FORMAT_VERSION, decode_command, encode_command
from raftsched.wire.sched_trusted import TRUSTED, decode_committed
from tests.sched.test_sched_codec import commands


@given(commands)
@settings(max_examples=300, deadline=None)
def test_same_command_as_the_full_decode(cmd: c.Command) -> None:
    data = encode_command(cmd)
    assert decode_committed(data) == decode_command(data) == cmd


@given(st.lists(commands, min_size=1, max_size=4), st.data())
@settings(max_examples=200, deadline=None)
def test_mutated_bytes_raise_only_wire_decode_error_and_never_crash_apply(
    cmds: list[c.Command], data: st.DataObject
) -> None:
    state = SchedulerState()
    now = 1_700_000_000_000
    for index, cmd in enumerate(cmds, start=1):
        raw = bytearray(encode_command(cmd))
        for _ in range(data.draw(st.integers(0, 4))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
        try:
            decoded = decode_committed(bytes(raw))
        except WireDecodeError:
            continue
        assert type(decoded) in c.KIND_BY_TYPE
        now += 1_000
        assert isinstance(state.apply(decoded, index, now), Ok | Refused)
    assert SchedulerState.restore(state.snapshot()).state_hash() == state.state_hash()


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_random_bytes_raise_only_wire_decode_error(raw: bytes) -> None:
    with contextlib.suppress(WireDecodeError):
        decode_committed(raw)


def _cmd(kind: str, fields: Any) -> bytes:
    packed: bytes = msgpack.packb([FORMAT_VERSION, kind, fields], use_bin_type=True)
    return packed


_DEFAULT_BACKOFF = {"initial_ms": 1_000, "multiplier": 2.0, "max_ms": 300_000}
_DEFAULT_BACKOFF_FLOAT_MS = {**_DEFAULT_BACKOFF, "initial_ms": 1_000.0}


def _one_job(backoff: dict[str, Any]) -> c.JobSpec:
    cmd = decode_committed(_cmd("submit_jobs", {"jobs": [{"queue": "q", "backoff": backoff}]}))
    assert isinstance(cmd, c.SubmitJobs) and len(cmd.jobs) == 1
    return cmd.jobs[0]


def test_the_default_backoff_is_shared_and_equal() -> None:
    assert _one_job(_DEFAULT_BACKOFF).backoff is c.DEFAULT_BACKOFF
    other = _one_job({**_DEFAULT_BACKOFF, "max_ms": 9_000}).backoff
    assert other == c.Backoff(initial_ms=1_000, multiplier=2.0, max_ms=9_000)


@pytest.mark.parametrize(
    "raw",
    [
        _cmd("submit_jobs", {"jobs": []}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "priority": True}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "surprise": 1}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": ""}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "run_at": 1, "delay_ms": 1}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "backoff": {"multiplier": 0.5}}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "tags": "a"}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "tags": [""]}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "depends_on": {}}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "id": ""}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "max_attempts": 0}]}),
        # Equal to the default backoff by value, but not by type: the shortcut that shares
        # the default must not accept what the checks refuse.
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "backoff": _DEFAULT_BACKOFF_FLOAT_MS}]}),
        _cmd("submit_jobs", {"jobs": [{"queue": "q", "backoff": {**_DEFAULT_BACKOFF, "x": 1}}]}),
        _cmd("submit_workflow", {"id": "w", "jobs": [{"queue": "q"}]}),
        _cmd("lease", {"queue": "q", "worker_id": "w", "max_jobs": 0}),
        _cmd("complete", {"job_id": "j", "token": 0}),
        _cmd("fail", {"job_id": "j", "token": 1, "retryable": 1}),
        _cmd("cancel", {"job_id": 5}),
        _cmd("tick", {"x": 1}),
        _cmd("tick", []),
        _cmd("no_such_kind", {}),
        msgpack.packb([2, "tick", {}]),
    ],
)
def test_structural_defects_are_refused(raw: bytes) -> None:
    with pytest.raises(WireDecodeError):
        decode_committed(raw)


def test_rare_kinds_take_the_full_parse() -> None:
    assert "put_schedule" not in TRUSTED
    bad_cron = _cmd("put_schedule", {"name": "s", "cron": "not a cron", "template": {"queue": "q"}})
    with pytest.raises(WireDecodeError):
        decode_committed(bad_cron)

"""Bad input (issue 7 defect 8): every parser, fed arbitrary JSON-like values and unicode
(lone surrogates included), raises only ValidationError; what it accepts encodes on the wire
and in a snapshot. Old code: a lone surrogate in a payload raised UnicodeEncodeError (an HTTP
500), and in a tag, a cancel reason or an idempotency key it was accepted and later broke the
wire encoder and `snapshot()`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import SchedulerState, ValidationError
from raftsched.sched import commands as c
from raftsched.sched.parse import PARSERS, parse_command
from raftsched.wire.sched_codec import decode_command, encode_command

# Any unicode, surrogates included (hypothesis leaves out category Cs unless asked).
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)

# Field names each parser knows, so the values reach the field checks, not just "unknown".
FIELDS = sorted(
    {
        "queue",
        "worker_id",
        "job_id",
        "token",
        "result",
        "error",
        "reason",
        "id",
        "jobs",
        "payload",
        "tags",
        "name",
        "cron",
        "template",
        "from",
        "to",
        "capacity",
        "queues",
        "ttl_ms",
        "max_jobs",
        "wait_ms",
        "extend_ms",
        "retryable",
        "paused",
        "max_in_flight",
        "settings",
        "job_ids",
        "idempotency_key",
        "incarnation",
        "timezone",
        "misfire",
        "priority",
        "depends_on",
        "run_at",
        "delay_ms",
        "backoff",
    }
)


def _check(kind: str, body: Any) -> None:
    try:
        cmd = parse_command(kind, body)
    except ValidationError:
        return
    data = encode_command(cmd)  # accepted: it must travel and be stored
    assert decode_command(data) == cmd
    state = SchedulerState()
    state.apply(cmd, 1, 1_700_000_000_000)
    SchedulerState.restore(state.snapshot())


@pytest.mark.parametrize("kind", sorted(PARSERS))
@given(body=json_like)
@settings(max_examples=40, deadline=None)
def test_any_value_as_a_body_is_refused_cleanly(kind: str, body: Any) -> None:
    _check(kind, body)


@pytest.mark.parametrize("kind", sorted(PARSERS))
@given(body=st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=6))
@settings(max_examples=60, deadline=None)
def test_any_value_in_known_fields_is_refused_cleanly(kind: str, body: Any) -> None:
    _check(kind, body)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("submit_jobs", {"jobs": [{"queue": "q", "payload": "\ud800"}]}),
        ("submit_jobs", {"jobs": [{"queue": "q", "payload": {"\udfff": 1}}]}),
        ("submit_jobs", {"jobs": [{"queue": "q", "tags": ["ok", "\ud800"]}]}),
        ("cancel", {"job_id": "a", "reason": "\ud800"}),
        ("cancel", {"job_id": "a", "idempotency_key": "\ud800"}),
        ("complete", {"job_id": "a", "token": 1, "result": ["\udc00"]}),
        ("worker_heartbeat", {"worker_id": "w", "capacity": 1, "incarnation": "\ud800"}),
    ],
)
def test_lone_surrogates_are_refused_where_they_enter(kind: str, body: Any) -> None:
    with pytest.raises(ValidationError):
        parse_command(kind, body)


def test_surrogate_in_the_idempotency_header_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_command("tick", {}, idempotency_key="\ud800")
    assert parse_command("tick", {}, idempotency_key="é") == c.Tick(idempotency_key="é")

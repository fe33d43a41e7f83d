"""The scheduler entry envelope: round trips, strict decoding, and fuzzing (only
WireDecodeError may escape; whatever decodes re-encodes to the same bytes)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import SubmitJobs, Tick
from raftsched.sched.commands import JobSpec
from raftsched.wire.envelope import ENVELOPE_VERSION, SchedEntry, decode_entry, encode_entry
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.sched_codec import decode_command, encode_command

stamps = st.integers(0, 2**63 - 1)
commands = st.binary(min_size=1, max_size=200)
proposers = st.integers(0, 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(stamps, commands, proposers)
def test_round_trip(stamp_ms: int, command: bytes, proposer_id: int) -> None:
    data = encode_entry(stamp_ms, command, proposer_id)
    assert decode_entry(data) == SchedEntry(stamp_ms, command, proposer_id)
    assert decode_entry(bytearray(data)) == decode_entry(memoryview(data))


def test_round_trip_with_a_real_command() -> None:
    cmd = SubmitJobs((JobSpec(id="a", queue="q", priority=3),), idempotency_key="k")
    entry = decode_entry(encode_entry(1_700_000_000_000, encode_command(cmd), 2))
    assert entry.stamp_ms == 1_700_000_000_000 and entry.proposer_id == 2
    assert decode_command(entry.command) == cmd
    assert decode_command(decode_entry(encode_entry(0, encode_command(Tick()))).command) == Tick()


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        _pack([ENVELOPE_VERSION, 1, b"x"]),  # too short
        _pack([ENVELOPE_VERSION, 1, b"x", 0, 0]),  # too long
        _pack([2, 1, b"x", 0]),  # unknown version
        _pack([True, 1, b"x", 0]),  # a bool is not a version
        _pack([ENVELOPE_VERSION, -1, b"x", 0]),
        _pack([ENVELOPE_VERSION, True, b"x", 0]),
        _pack([ENVELOPE_VERSION, 1.5, b"x", 0]),
        _pack([ENVELOPE_VERSION, 1, "x", 0]),  # str, not bytes
        _pack([ENVELOPE_VERSION, 1, b"", 0]),  # no command
        _pack([ENVELOPE_VERSION, 1, b"x", -3]),
        _pack([ENVELOPE_VERSION, 1, b"x", None]),
        _pack({"stamp_ms": 1}),
        _pack([ENVELOPE_VERSION, 1, b"x", 0]) + b"\x00",  # trailing bytes
        _pack([ENVELOPE_VERSION, 1, b"xyz", 0])[:-2],  # truncated
    ],
)
def test_malformed_envelopes_are_refused(data: bytes) -> None:
    with pytest.raises(WireDecodeError):
        decode_entry(data)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(WireDecodeError):
        decode_entry("not bytes")


def _is_canonical(data: bytes) -> bool:
    try:
        entry = decode_entry(data)
    except WireDecodeError:
        return False
    # Accepting never means misreading: what decoded survives another round trip.
    assert decode_entry(encode_entry(entry.stamp_ms, entry.command, entry.proposer_id)) == entry
    return True


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_wire_decode_error(data: bytes) -> None:
    _is_canonical(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(msgpack_values, min_size=0, max_size=6))
def test_random_msgpack_arrays_only_raise_wire_decode_error(items: list[Any]) -> None:
    _is_canonical(_pack(items))


@settings(max_examples=500, deadline=None)
@given(stamps, commands, proposers, st.data())
def test_mutated_envelopes_only_raise_wire_decode_error(
    stamp_ms: int,
    command: bytes,
    proposer_id: int,
    data: st.DataObject,
) -> None:
    good = bytearray(encode_entry(stamp_ms, command, proposer_id))
    position = data.draw(st.integers(0, len(good) - 1))
    match data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"])):
        case "flip":
            good[position] ^= 1 << data.draw(st.integers(0, 7))
        case "truncate":
            del good[position:]
        case "insert":
            good.insert(position, data.draw(st.integers(0, 255)))
        case _:
            del good[position]
    _is_canonical(bytes(good))

"""Fuzzing the decoders: garbage may only ever raise WireDecodeError.

Three sources of garbage: random bytes; random msgpack values (every msgpack type, nested);
and mutations of valid encodings, both byte-level (bit flips, truncation, insertion,
deletion) and structural (swap two fields, replace one with a random value, drop or add a
field, the same inside an entry or a membership). Whatever a decoder accepts must survive
another round trip unchanged, so acceptance never means misreading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.raft.messages import AppendEntries
from raftsched.raft.types import HardState
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.raft_codec import (
    TYPE_BY_TAG,
    VERSION_BY_TYPE,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)

from .strategies import (
    MESSAGE_STRATEGIES,
    append_entries,
    hard_states,
    messages,
    snapshot_metas,
    standalone_entries,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "message": (decode_message, encode_message),
    "hard_state": (decode_hard_state, encode_hard_state),
    "snapshot_meta": (decode_snapshot_meta, encode_snapshot_meta),
    "entry": (decode_entry, encode_entry),
}


def decodes_or_refuses(data: bytes) -> int:
    """Runs every decoder on `data`; returns how many accepted it. Anything other than
    WireDecodeError escapes and fails the test; an accepted value must round-trip."""
    accepted = 0
    for decode, encode in DECODERS.values():
        try:
            value = decode(data)
        except WireDecodeError as exc:
            assert str(exc), "a decode error names what was wrong"
            continue
        accepted += 1
        assert decode(encode(value)) == value
    return accepted


# Every msgpack type, including the ones the codec never uses (str, map, float, nil, ext).
msgpack_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=20),
    st.text(max_size=10),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.one_of(st.integers(0, 9), st.text(max_size=3)), children, max_size=3),
    ),
    max_leaves=30,
)
# Values near what the codec expects: a valid header, then random fields.
plausible_records = st.builds(
    lambda tag, fields: [VERSION_BY_TYPE[TYPE_BY_TAG[tag]], tag, *fields],
    st.sampled_from(sorted(TYPE_BY_TAG)),
    st.lists(
        st.one_of(
            st.integers(0, 20),
            st.booleans(),
            st.binary(max_size=4),
            st.lists(st.lists(st.integers(0, 20), max_size=4), max_size=3),
            st.lists(st.one_of(st.integers(0, 20), st.binary(max_size=2)), max_size=4),
        ),
        max_size=11,
    ),
)
any_valid_record = st.one_of(
    messages().map(encode_message),
    hard_states.map(encode_hard_state),
    snapshot_metas.map(encode_snapshot_meta),
    standalone_entries.map(encode_entry),
)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(msgpack_values)
def test_random_msgpack_values(value: Any) -> None:
    decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(plausible_records)
def test_plausible_records(value: list[Any]) -> None:
    decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(any_valid_record, st.data())
def test_byte_mutations_of_valid_records(raw: bytes, data: st.DataObject) -> None:
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(("flip", "truncate", "insert", "delete", "replace")))
        if not mutated:
            break
        at = data.draw(st.integers(0, len(mutated) - 1))
        if op == "flip":
            mutated[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "truncate":
            del mutated[at:]
        elif op == "insert":
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del mutated[at]
        else:
            mutated[at] = data.draw(st.integers(0, 255))
    decodes_or_refuses(bytes(mutated))


def _paths(value: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths to every element of nested lists (the fields, entries and entry fields)."""
    out: list[tuple[int, ...]] = []
    if isinstance(value, list):
        for i, child in enumerate(value):
            out.append((*path, i))
            out.extend(_paths(child, (*path, i)))
    return out


def _parent(root: list[Any], path: tuple[int, ...]) -> list[Any]:
    node = root
    for i in path[:-1]:
        node = node[i]
    return node


RECORD_STRATEGIES: dict[str, st.SearchStrategy[bytes]] = {
    **{
        cls.__name__: strategy.map(encode_message)
        for cls, strategy in MESSAGE_STRATEGIES.items()
        if cls is not AppendEntries
    },
    # At least one entry, so that mutations reach inside entries.
    "AppendEntries": append_entries(min_entries=1, max_entries=4).map(encode_message),
    "HardState": hard_states.map(encode_hard_state),
    "SnapshotMeta": snapshot_metas.map(encode_snapshot_meta),
    "Entry": standalone_entries.map(encode_entry),
}


@pytest.mark.parametrize("record", sorted(RECORD_STRATEGIES))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_structural_mutations_of_valid_records(record: str, data: st.DataObject) -> None:
    tree = msgpack.unpackb(data.draw(RECORD_STRATEGIES[record]))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = _parent(tree, path)
        at = path[-1]
        op = data.draw(st.sampled_from(("swap", "replace", "drop", "add", "wrap")))
        if op == "swap" and len(parent) > 1:
            other = data.draw(st.integers(0, len(parent) - 1))
            parent[at], parent[other] = parent[other], parent[at]
        elif op == "replace":
            parent[at] = data.draw(msgpack_values)
        elif op == "drop":
            del parent[at]
        elif op == "add":
            parent.insert(at, data.draw(msgpack_scalars))
        else:
            parent[at] = [parent[at]]
    decodes_or_refuses(msgpack.packb(tree, use_bin_type=True))


def test_deep_nesting_is_a_decode_error() -> None:
    deep = b"\x91" * 100_000 + b"\x00"  # 100,000 nested one-element arrays
    with pytest.raises(WireDecodeError):
        decode_message(deep)


def test_mutations_are_actually_refused() -> None:
    # The fuzzers above only prove "no other exception". This proves refusals happen, i.e.
    # the decoders are not vacuously accepting: a flipped version byte is refused by all.
    raw = bytearray(encode_hard_state(HardState(5, 2, 4)))
    raw[1] ^= 0x02  # the version fixint
    assert decodes_or_refuses(bytes(raw)) == 0

"""raft_codec: round trips for every record type, the exact layout, and strict rejection."""

from __future__ import annotations

import re
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
)
from raftsched.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from raftsched.wire.errors import WireDecodeError, WireError
from raftsched.wire.raft_codec import (
    FIELDS_BY_TYPE,
    MESSAGE_FORMAT_VERSION,
    STORAGE_FORMAT_VERSION,
    TAG_BY_TYPE,
    DecodeLimits,
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
    hard_states,
    messages,
    snapshot_metas,
    standalone_entries,
)

# Timing is not what these tests check; a loaded CI machine must not fail them.
NO_DEADLINE = settings(deadline=None)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def entries(prev_index: int, terms: list[int]) -> tuple[Entry, ...]:
    return tuple(
        Entry(t, prev_index + 1 + i, EntryKind.NORMAL, b"cmd%d" % i) for i, t in enumerate(terms)
    )


MEMBERSHIP = Membership(frozenset({3, 1, 2}), frozenset({5}), frozenset({4}))
APPEND = AppendEntries(
    term=7, src=1, dst=2, prev_index=10, prev_term=6, entries=entries(10, [6, 7]), commit=9
)


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@NO_DEADLINE
@given(data=st.data())
def test_every_message_type_round_trips(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[cls])
    decoded = decode_message(encode_message(msg))
    assert decoded == msg
    assert type(decoded) is cls


@NO_DEADLINE
@given(messages())
def test_decoded_fields_have_exact_types(msg: Message) -> None:
    decoded = decode_message(encode_message(msg))
    for name, _ in FIELDS_BY_TYPE[type(msg)]:
        assert type(getattr(decoded, name)) is type(getattr(msg, name)), name
    if isinstance(decoded, AppendEntries):
        assert isinstance(decoded.entries, tuple)
        assert all(type(e.kind) is EntryKind for e in decoded.entries)


@NO_DEADLINE
@given(hard_states)
def test_hard_state_round_trips(hard_state: HardState) -> None:
    assert decode_hard_state(encode_hard_state(hard_state)) == hard_state


@NO_DEADLINE
@given(snapshot_metas)
def test_snapshot_meta_round_trips(meta: SnapshotMeta) -> None:
    assert decode_snapshot_meta(encode_snapshot_meta(meta)) == meta


@NO_DEADLINE
@given(standalone_entries)
def test_entry_round_trips(entry: Entry) -> None:
    assert decode_entry(encode_entry(entry)) == entry


@NO_DEADLINE
@given(snapshot_metas)
def test_membership_encoding_is_canonical(meta: SnapshotMeta) -> None:
    # Sets have no order; the bytes must not depend on iteration order.
    rebuilt = SnapshotMeta(
        meta.index,
        meta.term,
        Membership(
            frozenset(sorted(meta.membership.voters, reverse=True)),
            frozenset(sorted(meta.membership.learners, reverse=True)),
            frozenset(sorted(meta.membership.removed, reverse=True)),
        ),
    )
    assert encode_snapshot_meta(rebuilt) == encode_snapshot_meta(meta)


# --- the layout is the documented one (a change here breaks old peers and disks) --------------


def test_append_entries_layout_is_positional() -> None:
    assert msgpack.unpackb(encode_message(APPEND)) == [
        MESSAGE_FORMAT_VERSION, 1, 7, 1, 2, 10, 6,
        [[6, 11, 0, b"cmd0"], [7, 12, 0, b"cmd1"]],
        9,
    ]  # fmt: skip


def test_install_snapshot_layout_has_sorted_membership() -> None:
    msg = InstallSnapshot(
        term=3,
        src=1,
        dst=2,
        snapshot_index=40,
        snapshot_term=2,
        membership=MEMBERSHIP,
        offset=0,
        data=b"state",
        done=True,
    )
    assert msgpack.unpackb(encode_message(msg)) == [
        MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 40, 2, [[1, 2, 3], [5], [4]], 0, b"state", True,
    ]  # fmt: skip


def test_hard_state_and_snapshot_meta_layouts() -> None:
    assert msgpack.unpackb(encode_hard_state(HardState(5, 2, 4))) == [
        STORAGE_FORMAT_VERSION,
        32,
        5,
        2,
        4,
    ]
    assert msgpack.unpackb(encode_snapshot_meta(SnapshotMeta(9, 3, MEMBERSHIP))) == [
        STORAGE_FORMAT_VERSION, 33, 9, 3, [[1, 2, 3], [5], [4]],
    ]  # fmt: skip
    assert msgpack.unpackb(encode_entry(Entry(2, 8, EntryKind.CONFIG, b"c"))) == [
        STORAGE_FORMAT_VERSION, 34, 2, 8, 2, b"c",
    ]  # fmt: skip


def test_tags_are_frozen() -> None:
    # Renumbering a tag silently corrupts every stored log: this list may only grow.
    assert {cls.__name__: tag for cls, tag in TAG_BY_TYPE.items()} == {
        "AppendEntries": 1, "AppendEntriesResponse": 2, "RequestVote": 3,
        "RequestVoteResponse": 4, "Heartbeat": 5, "HeartbeatResponse": 6,
        "InstallSnapshot": 7, "InstallSnapshotResponse": 8, "TimeoutNow": 9,
        "ReadIndexRequest": 10, "ReadIndexResponse": 11,
        "HardState": 32, "SnapshotMeta": 33, "Entry": 34,
    }  # fmt: skip


def test_data_stays_bin_and_encoding_is_compact() -> None:
    raw = encode_message(TimeoutNow(term=1, src=2, dst=3))
    assert raw == bytes([0x95, MESSAGE_FORMAT_VERSION, 9, 1, 2, 3])  # fixarray of 5 fixints
    raw = encode_message(APPEND)
    assert b"\xc4\x04cmd0" in raw  # bin 8, never str


# --- strict decoding: each bad input is refused with a message naming the problem -------------

HEARTBEAT_FIELDS = [MESSAGE_FORMAT_VERSION, 5, 3, 1, 2, 8, 0]  # Heartbeat(term 3, 1->2, commit 8)


def with_field(base: list[Any], position: int, value: Any) -> list[Any]:
    out = list(base)
    out[position] = value
    return out


def append_fields(
    entries_raw: Any, term: int = 7, prev_index: int = 10, prev_term: int = 6
) -> list[Any]:
    return [MESSAGE_FORMAT_VERSION, 1, term, 1, 2, prev_index, prev_term, entries_raw, 9]


BAD_MESSAGES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty input"),
    ("truncated", encode_message(APPEND)[:-3], "truncated"),
    ("trailing bytes", encode_message(APPEND) + b"\x00", "trailing bytes"),
    ("not an array", pack(5), "record: expected an array"),
    ("a map", pack({1: 2}), "record: expected an array"),
    ("a map field", pack(with_field(HEARTBEAT_FIELDS, 5, {})), "Heartbeat.commit: expected"),
    ("a big map field", pack(with_field(HEARTBEAT_FIELDS, 5, {1: 2})), "malformed msgpack"),
    ("a str field", pack(with_field(HEARTBEAT_FIELDS, 5, "8")), "Heartbeat.commit: malformed"),
    ("an ext", pack(msgpack.ExtType(1, b"x")), "record: expected an array"),
    ("an ext field", pack(with_field(HEARTBEAT_FIELDS, 5, msgpack.ExtType(1, b"x"))), "malformed"),
    ("no tag", pack([MESSAGE_FORMAT_VERSION]), "no [version, tag]"),
    ("future version", pack(with_field(HEARTBEAT_FIELDS, 0, 3)), "unsupported format version 3"),
    ("old message version", pack(with_field(HEARTBEAT_FIELDS, 0, 1)), "version 1 for Heartbeat"),
    ("bool version", pack(with_field(HEARTBEAT_FIELDS, 0, True)), "format version must be"),
    (
        "success with a rejection field",
        pack([MESSAGE_FORMAT_VERSION, 2, 3, 1, 2, True, 5, 4, 0, 0, False]),
        "a success carries no rejection fields",
    ),
    (
        "rejection with a match index",
        pack([MESSAGE_FORMAT_VERSION, 2, 3, 1, 2, False, 5, 6, 4, 1, False]),
        "a rejection carries no match_index",
    ),
    (
        "needs_snapshot with a hint",
        pack([MESSAGE_FORMAT_VERSION, 2, 3, 1, 2, False, 0, 6, 4, 1, True]),
        "needs_snapshot carries no rejected_index or hint",
    ),
    (
        "hint without a rejected index",
        pack([MESSAGE_FORMAT_VERSION, 2, 3, 1, 2, False, 0, 0, 4, 1, False]),
        "a hint needs the rejected_index",
    ),
    (
        "version-1 AppendEntriesResponse layout",
        pack([MESSAGE_FORMAT_VERSION, 2, 3, 1, 2, False, 6, 4, 1]),
        "AppendEntriesResponse: expected 9 fields, got 7",
    ),
    ("unknown tag", pack(with_field(HEARTBEAT_FIELDS, 1, 99)), "unknown record tag"),
    ("bool tag", pack(with_field(HEARTBEAT_FIELDS, 1, True)), "unknown record tag"),
    ("hard state as message", encode_hard_state(HardState()), "is not a message"),
    ("missing field", pack(HEARTBEAT_FIELDS[:-1]), "Heartbeat: expected 5 fields, got 4"),
    ("extra field", pack([*HEARTBEAT_FIELDS, 0]), "Heartbeat: expected 5 fields, got 6"),
    ("bool for int", pack(with_field(HEARTBEAT_FIELDS, 5, True)), "Heartbeat.commit"),
    ("negative int", pack(with_field(HEARTBEAT_FIELDS, 2, -1)), "Heartbeat.term"),
    ("float for int", pack(with_field(HEARTBEAT_FIELDS, 5, 8.0)), "Heartbeat.commit"),
    ("nil for int", pack(with_field(HEARTBEAT_FIELDS, 5, None)), "Heartbeat.commit"),
    ("zero node id", pack(with_field(HEARTBEAT_FIELDS, 3, 0)), "Heartbeat.src"),
    (
        "int for bool",
        pack([MESSAGE_FORMAT_VERSION, 4, 3, 1, 2, 1, False]),
        "RequestVoteResponse.granted: expected a bool",
    ),
    (
        "bytes for bool",
        pack([MESSAGE_FORMAT_VERSION, 4, 3, 1, 2, False, b"\x01"]),
        "RequestVoteResponse.pre_vote",
    ),
    (
        "entries not an array",
        pack(append_fields(b"entries")),
        "AppendEntries.entries: expected an array",
    ),
    ("entry too short", pack(append_fields([[7, 11, 0]])), "expected [term, index, kind, data]"),
    ("entry bool term", pack(append_fields([[True, 11, 0, b""]])), "expected int term"),
    ("entry int data", pack(append_fields([[7, 11, 0, 5]])), "bytes data"),
    ("entry str data", pack(append_fields([[7, 11, 0, "x"]])), "entries: malformed msgpack"),
    ("entry unknown kind", pack(append_fields([[7, 11, 3, b""]])), "unknown EntryKind 3"),
    ("entry bool kind", pack(append_fields([[7, 11, True, b""]])), "expected int term"),
    ("entry gap", pack(append_fields([[7, 12, 0, b""]])), "index 12 is not contiguous"),
    (
        "entry term decreases",
        pack(append_fields([[7, 11, 0, b""], [6, 12, 0, b""]])),
        "term 6 out of order",
    ),
    ("entry term newer than message", pack(append_fields([[8, 11, 0, b""]])), "term 8"),
    ("entry older than prev", pack(append_fields([[5, 11, 0, b""]])), "term 5"),
    ("prev_term newer than term", pack(append_fields([], prev_term=8)), "prev_term 8 exceeds"),
    (
        "membership overlap",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[1, 2], [2], []], 0, b"", True]),
        "ids [2] are voter and learner",
    ),
    (
        "removed member",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[1, 2], [], [1]], 0, b"", True]),
        "removed ids [1] are still members",
    ),
    (
        "membership unsorted",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[2, 1], [], []], 0, b"", True]),
        "strictly ascending",
    ),
    (
        "membership duplicate",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[1, 1], [], []], 0, b"", True]),
        "strictly ascending",
    ),
    (
        "membership zero id",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[0], [], []], 0, b"", True]),
        "InstallSnapshot.membership.voters[0]",
    ),
    (
        "membership of two parts",
        pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[1], []], 0, b"", True]),
        "expected [voters, learners, removed]",
    ),
]


@pytest.mark.parametrize(
    ("data", "problem"), [c[1:] for c in BAD_MESSAGES], ids=[c[0] for c in BAD_MESSAGES]
)
def test_bad_message_is_refused_with_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(WireDecodeError, match=re.escape(problem)):
        decode_message(data)


def test_bad_fixtures_differ_from_a_good_one_only_in_the_flaw() -> None:
    # Guards the table above: the unflawed versions of its fixtures decode.
    assert decode_message(pack(HEARTBEAT_FIELDS)) == Heartbeat(
        term=3, src=1, dst=2, commit=8, context=0
    )
    decoded = decode_message(pack(append_fields([[6, 11, 0, b""], [7, 12, 1, b"x"]])))
    assert isinstance(decoded, AppendEntries)
    assert [e.kind for e in decoded.entries] == [EntryKind.NORMAL, EntryKind.NOOP]
    ok = pack([MESSAGE_FORMAT_VERSION, 7, 3, 1, 2, 4, 2, [[1, 2], [3], [4]], 0, b"", True])
    assert isinstance(decode_message(ok), InstallSnapshot)
    assert decode_message(pack([MESSAGE_FORMAT_VERSION, 4, 3, 1, 2, True, False])).granted is True  # type: ignore[union-attr]


def test_records_of_another_type_are_refused() -> None:
    with pytest.raises(WireDecodeError, match="expected a HardState record, got AppendEntries"):
        decode_hard_state(encode_message(APPEND))
    with pytest.raises(WireDecodeError, match="expected a SnapshotMeta record, got HardState"):
        decode_snapshot_meta(encode_hard_state(HardState(1, 0, 0)))
    with pytest.raises(WireDecodeError, match="term and index start at 1"):
        decode_entry(pack([STORAGE_FORMAT_VERSION, 34, 0, 1, 0, b""]))


def test_hard_state_vote_may_be_zero_but_not_negative() -> None:
    assert decode_hard_state(pack([STORAGE_FORMAT_VERSION, 32, 4, 0, 2])) == HardState(4, 0, 2)
    with pytest.raises(WireDecodeError, match=r"HardState\.vote"):
        decode_hard_state(pack([STORAGE_FORMAT_VERSION, 32, 4, -1, 2]))


# --- size limits ------------------------------------------------------------------------------


def test_message_bytes_limit() -> None:
    raw = encode_message(APPEND)
    limits = DecodeLimits(max_message_bytes=len(raw) - 1)
    with pytest.raises(WireDecodeError, match=f"record of {len(raw)} bytes exceeds"):
        decode_message(raw, limits)
    assert decode_message(raw, DecodeLimits(max_message_bytes=len(raw))) == APPEND


def test_entries_per_message_limit() -> None:
    msg = AppendEntries(
        term=7, src=1, dst=2, prev_index=0, prev_term=0, entries=entries(0, [7] * 5), commit=0
    )
    with pytest.raises(WireDecodeError, match=r"entries: 5 elements exceed the limit of 4"):
        decode_message(encode_message(msg), DecodeLimits(max_entries_per_message=4))
    assert decode_message(encode_message(msg), DecodeLimits(max_entries_per_message=5)) == msg


def test_huge_array_header_is_refused_without_allocating() -> None:
    # An array header claiming 2**32 - 1 elements followed by nothing.
    with pytest.raises(WireDecodeError):
        decode_message(b"\xdd\xff\xff\xff\xff")
    with pytest.raises(WireDecodeError):
        decode_message(bytes([0x92, MESSAGE_FORMAT_VERSION]) + b"\xc6\xff\xff\xff\xff")


NESTED_BIG_ARRAYS = b"\xdc\xff\xff" * 1000  # 1,000 nested headers, each "65,535 elements"


@pytest.mark.parametrize(
    "data",
    [
        NESTED_BIG_ARRAYS,
        bytes([0x97, MESSAGE_FORMAT_VERSION, 5]) + NESTED_BIG_ARRAYS,  # as a scalar field
        # As the entries of an AppendEntries: the entries header itself is within limits.
        bytes([0x99, MESSAGE_FORMAT_VERSION, 1, 7, 1, 2, 10, 6]) + NESTED_BIG_ARRAYS,
    ],
    ids=["record", "field", "entries"],
)
def test_nested_array_headers_cannot_make_the_decoder_allocate(data: bytes) -> None:
    # msgpack.unpackb allocates an array's slots on reading its header: these 3 KB would
    # cost it over 80 MB. The decoder must refuse them having allocated next to nothing.
    tracemalloc.start()
    try:
        with pytest.raises(WireDecodeError, match="exceed"):
            decode_message(data)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1 << 20


def test_membership_size_limit() -> None:
    meta = SnapshotMeta(1, 1, Membership(frozenset(range(1, 6))))
    with pytest.raises(WireDecodeError, match=r"voters: 5 elements exceed the limit of 4"):
        decode_snapshot_meta(encode_snapshot_meta(meta), DecodeLimits(max_membership_ids=4))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries_per_message"):
        DecodeLimits(max_entries_per_message=0)


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(WireDecodeError, match="expected bytes, got str"):
        decode_message("hello")  # type: ignore[arg-type]


# --- encoding refuses what no peer would accept -------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (Heartbeat(term=True, src=1, dst=2, commit=0), "Heartbeat.term"),
        (Heartbeat(term=-1, src=1, dst=2, commit=0), "Heartbeat.term"),
        (Heartbeat(term=1, src=0, dst=2, commit=0), "Heartbeat.src"),
        (Heartbeat(term=1 << 64, src=1, dst=2, commit=0), "Heartbeat"),
        (
            RequestVote(term=1, src=1, dst=2, last_index=0, last_term=0, pre_vote=1),  # type: ignore[arg-type]
            "RequestVote.pre_vote",
        ),
        (
            AppendEntries(
                term=7, src=1, dst=2, prev_index=10, prev_term=6, entries=entries(11, [7]), commit=0
            ),
            "breaks log order",
        ),
        (
            AppendEntries(
                term=7, src=1, dst=2, prev_index=10, prev_term=6, entries=entries(10, [8]), commit=0
            ),
            "breaks log order",
        ),
        (
            AppendEntries(
                term=7,
                src=1,
                dst=2,
                prev_index=10,
                prev_term=6,
                entries=entries(10, [7, 6]),
                commit=0,
            ),
            "breaks log order",
        ),
        (
            AppendEntries(
                term=True, src=1, dst=2, prev_index=10, prev_term=0, entries=(), commit=0
            ),
            "AppendEntries.term",
        ),
    ],
)
def test_encoding_refuses_unrepresentable_messages(msg: Message, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        encode_message(msg)


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (
            AppendEntriesResponse(term=1, src=2, dst=1, success=True, match_index=3, hint_index=2),
            "a success carries no rejection fields",
        ),
        (
            AppendEntriesResponse(term=1, src=2, dst=1, success=False, match_index=3),
            "a rejection carries no match_index",
        ),
        (
            AppendEntriesResponse(
                term=1, src=2, dst=1, success=False, rejected_index=3, needs_snapshot=True
            ),
            "needs_snapshot carries no rejected_index",
        ),
    ],
)
def test_encoding_refuses_mixed_append_responses(msg: Message, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        encode_message(msg)


def test_append_response_rejection_layout() -> None:
    msg = AppendEntriesResponse(
        term=3, src=2, dst=1, success=False, rejected_index=9, hint_index=6, hint_term=2
    )
    assert msgpack.unpackb(encode_message(msg)) == [
        MESSAGE_FORMAT_VERSION, 2, 3, 2, 1, False, 0, 9, 6, 2, False,
    ]  # fmt: skip
    assert decode_message(encode_message(msg)) == msg
    assert MESSAGE_FORMAT_VERSION == 2 and STORAGE_FORMAT_VERSION == 1


def test_encoding_a_non_message_is_refused() -> None:
    with pytest.raises(WireError, match="not a Raft message"):
        encode_message(HardState())  # type: ignore[arg-type]


def test_encoding_refuses_entries_of_term_zero_and_bad_membership_ids() -> None:
    with pytest.raises(WireError, match="breaks log order"):
        encode_message(
            AppendEntries(
                term=0, src=1, dst=2, prev_index=0, prev_term=0, entries=entries(0, [0]), commit=0
            )
        )
    with pytest.raises(WireError, match=r"SnapshotMeta\.membership: node id 0"):
        encode_snapshot_meta(SnapshotMeta(1, 1, Membership(frozenset({0, 1}))))

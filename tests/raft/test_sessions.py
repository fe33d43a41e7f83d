"""Client sessions (dissertation §6.3): table-driven cases, then a model-based property test.

The property test drives `SessionTable` and a deliberately naive model (plain dicts, eviction
by a linear scan) with the same random apply protocol, and checks three things after every
step: both give the same outcome; no (client_id, seq) is ever applied twice; and a table
rebuilt from `snapshot()` continues exactly like the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from raftsched.raft.errors import RaftError
from raftsched.raft.sessions import (
    SNAPSHOT_FORMAT_VERSION,
    SessionExpiredError,
    SessionHit,
    SessionSnapshotError,
    SessionTable,
    StaleRequestError,
)


def apply(
    table: SessionTable,
    client_id: int,
    seq: int,
    stamp: int,
    first_unacked_seq: int = 0,
) -> tuple[str, bytes]:
    """The state machine's apply step. Returns ("applied" | "cached", response)."""
    hit = table.lookup(client_id, seq)
    if hit is not None:
        return "cached", hit.response
    response = b"%d:%d@%d" % (client_id, seq, stamp)
    table.record(client_id, seq, response, stamp, first_unacked_seq=first_unacked_seq)
    return "applied", response


# --- table-driven ---------------------------------------------------------------------------


def test_a_retry_gets_the_first_answer_and_is_not_applied_again() -> None:
    table = SessionTable(max_sessions=4)
    table.register(10, stamp=10)
    assert apply(table, 10, 1, stamp=11) == ("applied", b"10:1@11")
    assert apply(table, 10, 1, stamp=12) == ("cached", b"10:1@11")
    assert table.lookup(10, 1) == SessionHit(1, b"10:1@11")
    assert table.lookup(10, 2) is None


def test_out_of_order_seqs_in_flight_each_keep_their_answer() -> None:
    table = SessionTable(max_sessions=4)
    table.register(3, stamp=3)
    assert apply(table, 3, 2, stamp=4)[0] == "applied"
    assert apply(table, 3, 1, stamp=5)[0] == "applied"  # seq 1 was delayed, not lost
    assert apply(table, 3, 2, stamp=6) == ("cached", b"3:2@4")
    assert apply(table, 3, 1, stamp=7) == ("cached", b"3:1@5")


@pytest.mark.parametrize(
    ("first_unacked_seq", "seq_retried", "outcome"),
    [
        (0, 1, "cached"),  # nothing acknowledged: the answer is kept
        (2, 1, StaleRequestError),  # acknowledged: discarded, a retry is refused
        (2, 2, "cached"),  # not yet acknowledged
        (9, 3, "cached"),  # an ack never covers the command carrying it (seq 3)
        (9, 2, StaleRequestError),  # ... but covers everything below it
    ],
)
def test_acknowledged_responses_are_discarded(
    first_unacked_seq: int, seq_retried: int, outcome: str | type[Exception]
) -> None:
    table = SessionTable(max_sessions=4)
    table.register(7, stamp=7)
    apply(table, 7, 1, stamp=8)
    apply(table, 7, 2, stamp=9)
    apply(table, 7, 3, stamp=10, first_unacked_seq=first_unacked_seq)
    if isinstance(outcome, str):
        assert apply(table, 7, seq_retried, stamp=11)[0] == outcome
    else:
        with pytest.raises(outcome, match=f"seq {seq_retried} is below the lowest retained"):
            table.lookup(7, seq_retried)


def test_per_session_responses_are_bounded_and_dropped_ones_are_stale() -> None:
    table = SessionTable(max_sessions=2, max_responses_per_session=3)
    table.register(1, stamp=1)
    for seq in range(1, 6):
        apply(table, 1, seq, stamp=1 + seq)
    assert table.lowest_seq(1) == 3
    assert [table.lookup(1, s) is not None for s in (3, 4, 5)] == [True, True, True]
    with pytest.raises(StaleRequestError) as info:
        table.lookup(1, 2)
    assert (info.value.client_id, info.value.seq, info.value.lowest_seq) == (1, 2, 3)


def test_least_recently_used_session_is_evicted_and_then_refused() -> None:
    table = SessionTable(max_sessions=2)
    assert table.register(1, stamp=1) is None
    assert table.register(2, stamp=2) is None
    apply(table, 1, 1, stamp=3)  # session 1 is now the most recently used
    assert table.register(4, stamp=4) == 2
    assert 2 not in table and 1 in table and 4 in table
    with pytest.raises(SessionExpiredError, match="client session 2 has expired") as info:
        apply(table, 2, 1, stamp=5)
    assert info.value.client_id == 2
    assert len(table) == 2


def test_eviction_ties_break_by_client_id() -> None:
    table = SessionTable(max_sessions=3)
    for client_id in (5, 6, 9):
        table.register(client_id, stamp=100)  # e.g. the same state-machine clock ms
    assert table.register(10, stamp=100) == 5
    assert table.register(11, stamp=100) == 6


def test_eviction_stays_exact_after_many_touches() -> None:
    # Each touch leaves a stale pair in the eviction heap; the heap is rebuilt now and then.
    table = SessionTable(max_sessions=4, max_responses_per_session=2)
    for client_id in (1, 2, 3, 4):
        table.register(client_id, stamp=client_id)
    stamp = 4
    for seq in range(300):  # session 1 stays idle throughout
        for client_id in (4, 2, 3) if seq % 2 else (3, 4, 2):
            stamp += 1
            apply(table, client_id, seq, stamp)
    # Session 1 is least recently used; then the last round touched 4, 2, 3 in that order.
    assert table.register(stamp + 1, stamp=stamp + 1) == 1
    assert table.register(stamp + 2, stamp=stamp + 2) == 4
    assert table.register(stamp + 3, stamp=stamp + 3) == 2
    assert len(table._eviction_heap) <= 4 * (len(table) + 4)  # bounded (white-box)


def test_unknown_and_closed_sessions_are_refused() -> None:
    table = SessionTable(max_sessions=2)
    table.register(3, stamp=3)
    with pytest.raises(SessionExpiredError, match="client session 8 was never registered"):
        table.lookup(8, 1)
    assert table.close(3) is True
    assert table.close(3) is False
    with pytest.raises(SessionExpiredError, match="client session 3 has expired"):
        table.lookup(3, 1)
    with pytest.raises(SessionExpiredError):
        table.record(3, 1, b"", stamp=4)


def test_errors_are_raft_errors() -> None:
    assert issubclass(SessionExpiredError, RaftError)
    assert issubclass(StaleRequestError, RaftError)
    assert issubclass(SessionSnapshotError, RaftError)


def test_invariant_violations_are_assertions() -> None:
    table = SessionTable(max_sessions=2)
    table.register(5, stamp=5)
    with pytest.raises(AssertionError, match="only grow"):
        table.register(5, stamp=6)
    table.record(5, 1, b"r", stamp=6)
    with pytest.raises(AssertionError, match="applied twice"):
        table.record(5, 1, b"r", stamp=7)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        SessionTable(max_sessions=0)
    with pytest.raises(ValueError, match="max_responses_per_session"):
        SessionTable(max_sessions=1, max_responses_per_session=0)


def test_snapshot_layout_is_plain_and_sorted() -> None:
    table = SessionTable(max_sessions=3, max_responses_per_session=5)
    table.register(9, stamp=9)
    table.register(4 + 7, stamp=11)
    apply(table, 11, 2, stamp=12)
    apply(table, 11, 1, stamp=13)
    apply(table, 9, 1, stamp=14)
    assert table.snapshot() == [
        SNAPSHOT_FORMAT_VERSION,
        3,
        5,
        11,
        [
            [9, 14, 0, [[1, b"9:1@14"]]],
            [11, 13, 0, [[1, b"11:1@13"], [2, b"11:2@12"]]],
        ],
    ]


def test_restore_of_msgpack_round_tripped_snapshot() -> None:
    table = SessionTable(max_sessions=3)
    table.register(2, stamp=2)
    apply(table, 2, 1, stamp=3)
    packed = msgpack.packb(table.snapshot(), use_bin_type=True)
    for use_list in (True, False):
        restored = SessionTable.restore(msgpack.unpackb(packed, use_list=use_list))
        assert restored.snapshot() == table.snapshot()
        assert apply(restored, 2, 1, stamp=4) == ("cached", b"2:1@3")
        assert restored.highest_client_id == 2


GOOD = [SNAPSHOT_FORMAT_VERSION, 2, 4, 9, [[3, 5, 1, [[1, b"a"], [2, b"b"]]], [9, 9, 0, []]]]


def mutated(path: tuple[int, ...], value: Any) -> list[Any]:
    out: Any = msgpack.unpackb(msgpack.packb(GOOD))  # a deep copy
    node = out
    for i in path[:-1]:
        node = node[i]
    node[path[-1]] = value
    return out  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("snapshot", "expected a list"),
        (GOOD[:4], "expected 5 elements"),
        (mutated((0,), 2), "unsupported session snapshot version 2"),
        (mutated((1,), 0), "max_sessions: expected an int >= 1"),
        (mutated((1,), 1), "2 sessions exceed max_sessions 1"),
        (mutated((1,), True), "max_sessions"),
        (mutated((3,), 8), "ids must ascend and not exceed highest_client_id"),
        (mutated((4, 0, 0), 9), "ids must ascend"),
        (mutated((4, 0, 1), -1), "stamp"),
        (mutated((4, 0, 3, 0, 0), 0), "seq: expected an int >= 1"),  # below lowest_seq 1
        (mutated((4, 0, 3, 1, 0), 1), "seq: expected an int >= 2"),  # duplicate seq
        (mutated((4, 0, 3, 0, 1), "a"), "response must be bytes"),
        (mutated((2,), 1), "more than 1 responses"),
    ],
)
def test_restore_refuses_invalid_snapshots(data: Any, problem: str) -> None:
    assert SessionTable.restore(GOOD).snapshot() == GOOD  # the fixture itself is valid
    with pytest.raises(SessionSnapshotError, match=problem):
        SessionTable.restore(data)


# --- model-based property test ----------------------------------------------------------------


@dataclass
class ModelSession:
    stamp: int
    lowest_seq: int = 0
    responses: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Model:
    """The specification, written as plainly as possible."""

    max_sessions: int
    max_responses: int
    sessions: dict[int, ModelSession] = field(default_factory=dict)
    highest: int = 0

    def register(self, client_id: int, stamp: int) -> int | None:
        evicted = None
        if len(self.sessions) == self.max_sessions:
            evicted = min(self.sessions, key=lambda c: (self.sessions[c].stamp, c))
            del self.sessions[evicted]
        self.sessions[client_id] = ModelSession(stamp)
        self.highest = client_id
        return evicted

    def apply(self, client_id: int, seq: int, stamp: int, ack: int) -> tuple[str, bytes] | str:
        s = self.sessions.get(client_id)
        if s is None:
            return "expired"
        if seq < s.lowest_seq:
            return "stale"
        if seq in s.responses:
            return "cached", s.responses[seq]
        response = b"%d:%d@%d" % (client_id, seq, stamp)
        s.lowest_seq = max(s.lowest_seq, min(ack, seq))
        s.responses = {q: r for q, r in s.responses.items() if q >= s.lowest_seq}
        s.responses[seq] = response
        if len(s.responses) > self.max_responses:
            oldest = min(s.responses)
            del s.responses[oldest]
            s.lowest_seq = oldest + 1
        s.stamp = max(s.stamp, stamp)
        return "applied", response


operations = st.lists(
    st.one_of(
        st.tuples(st.just("register")),
        st.tuples(st.just("close"), st.integers(0, 12)),
        st.tuples(st.just("snapshot")),
        # (client pick, seq, ack, stamp step: 0 makes ties); apply weighs 3x.
        *[
            st.tuples(
                st.just("apply"),
                st.integers(0, 12),
                st.integers(0, 4),
                st.integers(0, 3),
                st.integers(0, 1),
            )
        ]
        * 3,
    ),
    min_size=5,
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 4), operations)
def test_table_matches_the_model(
    max_sessions: int, max_responses: int, initial_sessions: int, ops: list[Any]
) -> None:
    table = SessionTable(max_sessions, max_responses)
    twin = SessionTable(max_sessions, max_responses)  # fed the same calls: canonical snapshots
    model = Model(max_sessions, max_responses)
    applied: set[tuple[int, int]] = set()
    log_index = 0  # stamps and client ids come from the log, as in production
    registered: list[int] = []

    def pick_client(pick: int) -> int:
        # Mostly a live session; else any id ever registered (evicted or closed) or one never
        # registered.
        live = sorted(model.sessions)
        if pick % 4 and live:
            return live[pick % len(live)]
        candidates = [*registered, log_index + 1]
        return candidates[pick % len(candidates)]

    for op in [("register",)] * initial_sessions + ops:
        if op[0] == "register":
            log_index += 1
            registered.append(log_index)
            evicted = table.register(log_index, stamp=log_index)
            assert twin.register(log_index, stamp=log_index) == evicted
            assert model.register(log_index, log_index) == evicted
        elif op[0] == "close":
            client_id = pick_client(op[1])
            closed = table.close(client_id)
            assert twin.close(client_id) == closed
            assert closed == (model.sessions.pop(client_id, None) is not None)
        elif op[0] == "snapshot":
            table = SessionTable.restore(table.snapshot())
        else:
            _, pick, seq, ack, step = op
            log_index += step
            client_id = pick_client(pick)
            expected = model.apply(client_id, seq, log_index, ack)
            outcomes: list[tuple[str, bytes] | str] = []
            for t in (table, twin):
                try:
                    outcomes.append(apply(t, client_id, seq, log_index, ack))
                except SessionExpiredError:
                    outcomes.append("expired")
                except StaleRequestError:
                    outcomes.append("stale")
            assert outcomes == [expected, expected]
            event(expected if isinstance(expected, str) else expected[0])
            if expected[0] == "applied":
                assert (client_id, seq) not in applied, "at most once (§6.3)"
                applied.add((client_id, seq))
        assert table.snapshot() == twin.snapshot()
        assert len(table) == len(model.sessions) <= max_sessions
        assert table.highest_client_id == model.highest

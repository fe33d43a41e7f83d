"""The linearizability checker must accept linearizable histories and catch the rest.

Hand-made histories (table-driven, each with the reason), histories from the literature,
property tests (generated linearizable histories, then one mutated read), agreement with a
brute-force checker on small random histories, HistoryError cases, the time limit, and a
10,000-operation performance check.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.sim.history import Event, EventType
from raftsched.sim.linearizability import CheckResult, HistoryError, check_history
from raftsched.sim.models import KVModel, RegisterModel

INVOKE, OK, FAIL, INFO = EventType.INVOKE, EventType.OK, EventType.FAIL, EventType.INFO
TYPES = {"invoke": INVOKE, "ok": OK, "fail": FAIL, "info": INFO}
NEVER_WRITTEN = "never-written"  # no generator ever writes this value


def history(*rows: tuple[Any, ...]) -> list[Event]:
    """Rows (process, type, f, value[, key]) in the order they happened; time = position."""
    events = []
    for time_, row in enumerate(rows):
        process, type_, f, value = row[:4]
        key = row[4] if len(row) > 4 else "x"
        events.append(Event(process, TYPES[type_], f, key, value, time_))
    return events


def check(events: Sequence[Event], time_limit_s: float = 10.0) -> CheckResult:
    return check_history(events, KVModel(), time_limit_s=time_limit_s)


# ---------------------------------------------------------------------------------------------
# Hand-made histories


@dataclass(frozen=True)
class Case:
    name: str
    events: list[Event]
    linearizable: bool
    why: str


CASES = [
    Case(
        "sequential write then read",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        ),
        True,
        "the read follows the write and sees it",
    ),
    Case(
        "stale read after a completed write",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
        ),
        False,
        "the write completed before the read began, so the read must see 1, not the initial None",
    ),
    Case(
        "read of a value never written",
        history(
            (1, "invoke", "write", 1),
            (2, "invoke", "read", None),
            (2, "ok", "read", 7),
            (1, "ok", "write", None),
        ),
        False,
        "the read overlaps a write of 1, but nobody ever wrote 7",
    ),
    Case(
        "two sequential writes read in reverse order",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (1, "invoke", "write", 2),
            (2, "invoke", "read", None),
            (2, "ok", "read", 2),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
            (1, "ok", "write", None),
        ),
        False,
        "write 1 finished before write 2 began; once a read saw 2, a later read cannot see 1",
    ),
    Case(
        "lost write",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "write", 2),
            (2, "ok", "write", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
        ),
        False,
        "write 2 was acknowledged after write 1, yet a later read sees 1: write 2 was lost",
    ),
    Case(
        "cas succeeds from the wrong state",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "cas", [2, 3]),
            (2, "ok", "cas", None),
        ),
        False,
        "the register held 1, so cas 2->3 cannot have swapped",
    ),
    Case(
        "cas succeeds from the right state",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "cas", [1, 3]),
            (2, "ok", "cas", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 3),
        ),
        True,
        "the register held 1, cas 1->3 swapped, the read sees 3",
    ),
    Case(
        "concurrent writes take effect in the opposite order of their invokes",
        history(
            (1, "invoke", "write", 1),
            (2, "invoke", "write", 2),
            (3, "invoke", "read", None),
            (3, "ok", "read", 2),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
            (1, "ok", "write", None),
            (2, "ok", "write", None),
        ),
        True,
        "write 2 (invoked second) lands first, then write 1: read 2 then read 1 is fine",
    ),
    Case(
        "concurrent cas chain only works in one order",
        history(
            (1, "invoke", "cas", [2, 3]),
            (2, "invoke", "cas", [1, 2]),
            (3, "invoke", "cas", [None, 1]),
            (1, "ok", "cas", None),
            (2, "ok", "cas", None),
            (3, "ok", "cas", None),
            (4, "invoke", "read", None),
            (4, "ok", "read", 3),
        ),
        True,
        "the three cas ops overlap; the only legal order is the reverse of their invokes",
    ),
    Case(
        "read concurrent with a write may see either value",
        history(
            (1, "invoke", "write", 1),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
            (1, "ok", "write", None),
        ),
        True,
        "both reads overlap the write: one before it, one after",
    ),
    Case(
        "info write that happened",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        ),
        True,
        "an indeterminate write may have taken effect",
    ),
    Case(
        "info write that did not happen",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
        ),
        True,
        "an indeterminate write may never have taken effect",
    ),
    Case(
        "info write takes effect long after its client gave up",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        ),
        True,
        "an indeterminate operation may take effect at any time after its invoke",
    ),
    Case(
        "info write cannot take effect before its invoke",
        history(
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
        ),
        False,
        "the read of 1 completed before anyone tried to write 1",
    ),
    Case(
        "info write cannot take effect twice",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
            (3, "invoke", "write", 2),
            (3, "ok", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        ),
        False,
        "write 1 took effect before the first read; write 2 then completed, so 1 cannot return",
    ),
    Case(
        "an invoke never completed counts as info",
        history((1, "invoke", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", 1)),
        True,
        "the write is still outstanding at the end, so it may have happened",
    ),
    Case(
        "info cas may have swapped",
        history(
            (1, "invoke", "cas", [None, 5]),
            (1, "info", "cas", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 5),
        ),
        True,
        "an indeterminate cas from the right state may have swapped",
    ),
    Case(
        "info cas cannot swap from the wrong state",
        history(
            (3, "invoke", "write", 1),
            (3, "ok", "write", None),
            (1, "invoke", "cas", [None, 5]),
            (1, "info", "cas", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 5),
        ),
        False,
        "the register held 1 for the whole life of the cas None->5, so 5 was never written",
    ),
    Case(
        "two identical info writes can both take effect",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (2, "invoke", "write", 1),
            (2, "info", "write", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
            (4, "invoke", "write", 2),
            (4, "ok", "write", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
        ),
        True,
        "one write of 1 lands before the first read, the other after write 2",
    ),
    Case(
        "an identical info write invoked too late cannot help",
        history(
            (1, "invoke", "write", 1),
            (1, "info", "write", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
            (4, "invoke", "write", 2),
            (4, "ok", "write", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
            (2, "invoke", "write", 1),
            (2, "info", "write", None),
        ),
        False,
        "the second write of 1 was invoked after the last read, so 1 cannot return after 2",
    ),
    Case(
        "info cas chain in the only order that works",
        history(
            (1, "invoke", "cas", [1, 2]),
            (1, "info", "cas", None),
            (2, "invoke", "cas", [None, 1]),
            (2, "info", "cas", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 2),
        ),
        True,
        "both indeterminate cas ops took effect back to back, the later-invoked one first",
    ),
    Case(
        "an info write needed late, after a path that used it early was seen",
        history(
            (0, "invoke", "cas", [None, 1]),
            (1, "invoke", "write", 1),
            (2, "invoke", "write", 0),
            (2, "ok", "write", None),
            (1, "ok", "write", None),
            (1, "invoke", "cas", [1, 0]),
            (2, "invoke", "write", 1),
            (1, "ok", "cas", None),
            (0, "ok", "cas", None),
            (1, "invoke", "read", None),
            (0, "invoke", "read", None),
            (1, "info", "read", None),
            (0, "ok", "read", 0),
            (3, "invoke", "cas", [1, 1]),
            (3, "ok", "cas", None),
            (2, "info", "write", None),
            (3, "invoke", "cas", [0, 0]),
            (0, "invoke", "cas", [None, 1]),
        ),
        True,
        "cas None->1, write 0, write 1, cas 1->0, read 0, then p2's info write 1, cas 1->1. "
        "Found by the brute-force comparison: the search first reaches the same known set and "
        "state through a path that spends p2's write early, so a memo that pruned the path "
        "keeping it unspent (a superset of options) would answer False",
    ),
    Case(
        "failed write is ignored",
        history(
            (1, "invoke", "write", 1),
            (1, "fail", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
        ),
        True,
        "a FAIL write did not happen: the register still holds None",
    ),
    Case(
        "failed write must not be seen",
        history(
            (1, "invoke", "write", 1),
            (1, "fail", "write", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        ),
        False,
        "a FAIL write did not happen, so nobody can read its value",
    ),
    Case(
        "failed cas and failed read are ignored",
        history(
            (1, "invoke", "write", 1),
            (1, "ok", "write", None),
            (2, "invoke", "cas", [7, 8]),
            (2, "fail", "cas", None),
            (3, "invoke", "read", None),
            (3, "fail", "read", None),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
        ),
        True,
        "the cas compare failed (no effect) and the failed read tells nothing",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hand_made_history(case: Case) -> None:
    result = check(case.events)
    assert result.ok is case.linearizable, f"{case.why}\n{result.explanation}"
    assert result.partitions_checked == 1
    assert result.operations == sum(1 for e in case.events if e.type is INVOKE)
    # The brute-force checker agrees on every hand-made case.
    assert brute_force_linearizable(case.events) is case.linearizable


def test_register_model_treats_the_history_as_one_register() -> None:
    events = CASES[1].events  # the stale read
    assert check_history(events, RegisterModel()).ok is False
    assert check_history(CASES[0].events, RegisterModel()).ok is True


def test_explanation_names_key_operations_and_prefix() -> None:
    # A stale read: write 1 completed, then process 2 reads None.
    result = check(CASES[1].events)
    assert result.ok is False
    assert result.failed_partition == "x"
    assert "key 'x'" in result.explanation
    assert "process 2" in result.explanation and "read -> None" in result.explanation
    assert "invoked t=2" in result.explanation and "returned t=3" in result.explanation
    assert "longest linearizable prefix: 1 operations" in result.explanation
    assert [op.f for op in result.longest_prefix] == ["write"]
    assert [(op.process, op.f, op.output) for op in result.unlinearizable] == [(2, "read", None)]


def test_violation_on_one_key_is_found_amid_many_linearizable_keys() -> None:
    rng = random.Random(7)
    events, _ = linearizable_history(rng, ops_count=2000, keys_count=40, processes=8)
    bad_key = "k17"
    events = mutate_one_read(events, rng, key=bad_key)
    result = check(events)
    assert result.ok is False, result.explanation
    assert result.failed_partition == bad_key
    assert f"key {bad_key!r}" in result.explanation
    assert NEVER_WRITTEN in result.explanation
    # Keys are checked in order of first appearance, and checking stops at the bad one.
    key_order = list(dict.fromkeys(event.key for event in events))
    assert result.partitions_checked == key_order.index(bad_key) + 1 < 40
    # Without the mutation, every key is fine.
    events_ok, _ = linearizable_history(random.Random(7), 2000, 40, 8)
    result_ok = check(events_ok)
    assert result_ok.ok is True and result_ok.partitions_checked == 40


def test_keys_are_independent() -> None:
    # On one register this is a stale read; on two keys each read sees its own key's value.
    events = history(
        (1, "invoke", "write", 1, "a"),
        (1, "ok", "write", None, "a"),
        (2, "invoke", "read", None, "b"),
        (2, "ok", "read", None, "b"),
    )
    assert check(events).ok is True
    assert check(events).partitions_checked == 2
    assert check_history(events, RegisterModel()).ok is False


def test_json_lines_round_trip_gives_the_same_verdicts() -> None:
    # The jepsen harness writes histories as JSON lines: cas arguments come back as lists.
    rng = random.Random(11)
    events, values = linearizable_history(rng, 300, 3, 5, info_rate=0.1, phantom_rate=0.1)
    events = append_final_reads(events, values)
    for history_events, expected in ((events, True), (mutate_one_read(events, rng), False)):
        lines = [json.dumps(event.to_json()) for event in history_events]
        loaded = [Event.from_json(json.loads(line)) for line in lines]
        assert check(loaded).ok is expected


# ---------------------------------------------------------------------------------------------
# Histories from the literature, as register operations


def test_lamport_new_old_inversion_is_not_linearizable() -> None:
    # Lamport, "On interprocess communication" (1986): a *regular* register lets two
    # sequential reads overlapping one write return the new value then the old one. An atomic
    # (linearizable) register does not.
    events = history(
        (1, "invoke", "write", 0),
        (1, "ok", "write", None),
        (1, "invoke", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 0),
        (1, "ok", "write", None),
    )
    assert check(events).ok is False


def test_lamport_safe_register_garbage_is_not_linearizable() -> None:
    # Lamport's *safe* register lets a read overlapping a write return any value at all.
    events = history(
        (1, "invoke", "write", 0),
        (1, "ok", "write", None),
        (1, "invoke", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 42),
        (1, "ok", "write", None),
    )
    assert check(events).ok is False


def test_sequentially_consistent_but_not_linearizable() -> None:
    # Attiya & Welch (1994): sequential consistency may reorder non-overlapping operations of
    # different processes; linearizability may not. Here p2's read could be ordered before
    # p1's write under sequential consistency, but it started after the write completed.
    events = history(
        (1, "invoke", "write", 1),
        (1, "ok", "write", None),
        (2, "invoke", "read", None),
        (2, "ok", "read", None),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
    )
    assert check(events).ok is False


def test_mit_6824_example_concurrent_reads_linearizable() -> None:
    # MIT 6.824 linearizability lecture: W1 then W2 on C1; C2 reads 2 over a long interval
    # that overlaps both writes; C3 reads 1 inside it. Order: W1, R1 (C3), W2, R2 (C2).
    events = history(
        (1, "invoke", "write", 1),
        (2, "invoke", "read", None),
        (1, "ok", "write", None),
        (3, "invoke", "read", None),
        (3, "ok", "read", 1),
        (1, "invoke", "write", 2),
        (1, "ok", "write", None),
        (2, "ok", "read", 2),
    )
    assert check(events).ok is True


def test_mit_6824_example_read_after_write_not_linearizable() -> None:
    # The same, but C3's read of 1 starts after W2 completed and after C2 already saw 2.
    events = history(
        (1, "invoke", "write", 1),
        (1, "ok", "write", None),
        (2, "invoke", "read", None),
        (1, "invoke", "write", 2),
        (1, "ok", "write", None),
        (2, "ok", "read", 2),
        (3, "invoke", "read", None),
        (3, "ok", "read", 1),
    )
    assert check(events).ok is False


def test_mit_6824_example_readers_disagree_on_write_order() -> None:
    # MIT 6.824: two concurrent writes W1 and W2; reader C3 sees 2 then 1, reader C4 sees 1
    # then 2, each pair of reads sequential and all reads overlapping both writes. C3 puts W2
    # before W1, C4 puts W1 before W2: no single order satisfies both.
    events = history(
        (1, "invoke", "write", 1),
        (2, "invoke", "write", 2),
        (3, "invoke", "read", None),
        (3, "ok", "read", 2),
        (4, "invoke", "read", None),
        (4, "ok", "read", 1),
        (3, "invoke", "read", None),
        (3, "ok", "read", 1),
        (4, "invoke", "read", None),
        (4, "ok", "read", 2),
        (1, "ok", "write", None),
        (2, "ok", "write", None),
    )
    assert check(events).ok is False
    # Drop C4's second read and a single order exists again: W2, R2, W1, R1, R1.
    assert check(events[:8] + events[10:]).ok is True


def test_herlihy_wing_locality() -> None:
    # Herlihy & Wing (1990) Theorem 1 (locality): a history is linearizable iff each object's
    # sub-history is. Each process writes one register, then reads the other's after both
    # writes completed and sees the write: fine for x and for y, hence for the map.
    events = history(
        (1, "invoke", "write", 1, "x"),
        (2, "invoke", "write", 1, "y"),
        (1, "ok", "write", None, "x"),
        (2, "ok", "write", None, "y"),
        (1, "invoke", "read", None, "y"),
        (2, "invoke", "read", None, "x"),
        (1, "ok", "read", 1, "y"),
        (2, "ok", "read", 1, "x"),
    )
    assert check(events).ok is True
    # Store-buffering (both reads see None after both writes completed) violates each object.
    stale = [replace(e, value=None) if e.type is OK and e.f == "read" else e for e in events]
    assert check(stale).ok is False


# ---------------------------------------------------------------------------------------------
# Generated histories


def linearizable_history(
    rng: random.Random,
    ops_count: int,
    keys_count: int,
    processes: int,
    *,
    info_rate: float = 0.05,
    phantom_rate: float = 0.05,
    width: int = 40,
    value_space: int = 5,
) -> tuple[list[Event], dict[str, Hashable]]:
    """A concurrent history that is linearizable by construction, and the final values.

    Run `ops_count` operations sequentially against a dict of registers at instants 10, 20,
    ...; give each to one of `processes` client slots; then widen each into an interval
    around its instant that does not overlap its slot's neighbours. Some take effect but end
    INFO (the slot then gets a fresh process id, and the INFO is sometimes never recorded);
    some "phantoms" never take effect and end FAIL or INFO.
    """
    keys = [f"k{i}" for i in range(keys_count)]
    values: dict[str, Hashable] = {}
    slots: list[list[tuple[int, str, str, Any, Any, str]]] = [[] for _ in range(processes)]
    for index in range(ops_count):
        instant = 10 * (index + 1)
        key = rng.choice(keys)
        current = values.get(key)
        f = rng.choice(["read", "read", "write", "write", "cas"])
        if f == "read":
            arg: Any = None
        elif f == "write":
            arg = rng.randrange(value_space)
        else:
            old = current if rng.random() < 0.6 else rng.randrange(value_space)
            arg = [old, rng.randrange(value_space)]
        if rng.random() < phantom_rate:
            outcome, result = ("fail" if rng.random() < 0.5 else "info"), None
        elif f == "read":
            outcome, result = "ok", current
        elif f == "write":
            values[key] = arg
            outcome, result = "ok", None
        elif arg[0] == current:
            values[key] = arg[1]
            outcome, result = "ok", None
        else:
            outcome, result = "fail", None  # compare failed: no effect
        if outcome == "ok" and rng.random() < info_rate:
            outcome = "info"  # it took effect, but the client never learned
        slots[rng.randrange(processes)].append((instant, f, key, arg, result, outcome))

    stamped: list[tuple[int, int, Event]] = []  # (time, tiebreak, event)
    next_pid = processes
    for slot_index, ops in enumerate(slots):
        pid = slot_index
        previous_return = 0
        for position, (instant, f, key, arg, result, outcome) in enumerate(ops):
            next_instant = ops[position + 1][0] if position + 1 < len(ops) else instant + width
            invoke_time = rng.randint(max(previous_return + 1, instant - width), instant)
            return_time = rng.randint(instant, min(next_instant - 1, instant + width))
            previous_return = return_time
            invoke = Event(pid, INVOKE, f, key, arg, invoke_time)
            stamped.append((invoke_time, len(stamped), invoke))
            if outcome == "info" and rng.random() < 0.3:
                pass  # never completed: counts as INFO
            else:
                event = Event(pid, TYPES[outcome], f, key, result, return_time)
                stamped.append((return_time, len(stamped), event))
            if outcome == "info":
                pid, next_pid = next_pid, next_pid + 1
    stamped.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in stamped], values


def append_final_reads(events: list[Event], values: dict[str, Hashable]) -> list[Event]:
    """A read of every written key after everything else, on fresh processes."""
    end = (events[-1].time if events else 0) + 1
    pid = 1 + max((e.process for e in events), default=0)
    tail = []
    for offset, (key, value) in enumerate(sorted(values.items())):
        tail.append(Event(pid + offset, INVOKE, "read", key, None, end))
        tail.append(Event(pid + offset, OK, "read", key, value, end))
    return events + tail


def mutate_one_read(events: list[Event], rng: random.Random, key: str | None = None) -> list[Event]:
    """Make one OK read return a value nobody ever wrote."""
    reads = [
        i
        for i, e in enumerate(events)
        if e.type is OK and e.f == "read" and (key is None or e.key == key)
    ]
    assert reads, "no OK read to mutate"
    index = rng.choice(reads)
    mutated = list(events)
    mutated[index] = replace(events[index], value=NEVER_WRITTEN)
    return mutated


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    ops_count=st.integers(0, 80),
    keys_count=st.integers(1, 4),
    processes=st.integers(1, 8),
    info_rate=st.sampled_from([0.0, 0.1, 0.3]),
    phantom_rate=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_generated_histories_are_linearizable_and_a_mutated_read_is_not(
    *,
    seed: int,
    ops_count: int,
    keys_count: int,
    processes: int,
    info_rate: float,
    phantom_rate: float,
) -> None:
    rng = random.Random(seed)
    events, values = linearizable_history(
        rng, ops_count, keys_count, processes, info_rate=info_rate, phantom_rate=phantom_rate
    )
    events = append_final_reads(events, values)
    result = check(events)
    assert result.ok is True, result.explanation
    if any(e.type is OK and e.f == "read" for e in events):
        mutated = check(mutate_one_read(events, rng))
        assert mutated.ok is False, mutated.explanation


# ---------------------------------------------------------------------------------------------
# Brute force: every subset of the indeterminate operations, every permutation consistent with
# real-time order, run against a plain dict. Written independently of the checker.


def brute_force_linearizable(events: Sequence[Event]) -> bool:
    """Try every order of every subset of the indeterminate ops (all the certain ones)."""
    open_ops: dict[int, int] = {}
    ops: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.type is INVOKE:
            open_ops[event.process] = len(ops)
            ops.append(
                {
                    "f": event.f,
                    "key": event.key,
                    "arg": event.value,
                    "start": index,
                    "end": None,
                    "type": None,
                    "result": None,
                }
            )
        else:
            op = ops[open_ops.pop(event.process)]
            op.update(end=index, type=event.type, result=event.value)
    ops = [op for op in ops if op["type"] is not FAIL]
    certain = [op for op in ops if op["type"] is OK]

    def extend(order: list[dict[str, Any]], registers: dict[str, Any]) -> bool:
        if all(any(op is placed for placed in order) for op in certain):
            return True
        for op in ops:
            if any(op is placed for placed in order):
                continue
            # Real time: every certain op that completed before this one began goes first.
            if any(
                other["end"] < op["start"]
                for other in certain
                if not any(other is placed for placed in order)
            ):
                continue
            after = apply_sequentially(op, registers)
            if after is not None and extend([*order, op], after):
                return True
        return False

    return extend([], {})


def apply_sequentially(op: dict[str, Any], registers: dict[str, Any]) -> dict[str, Any] | None:
    """The registers after op, or None if op is illegal in them."""
    current = registers.get(op["key"])
    if op["f"] == "read":
        legal = op["type"] is not OK or op["result"] == current
        return dict(registers) if legal else None
    if op["f"] == "write":
        return {**registers, op["key"]: op["arg"]}
    old, new = op["arg"]
    return {**registers, op["key"]: new} if current == old else None


def random_small_history(
    rng: random.Random, ops_max: int, values: Sequence[int] = (0, 1, 2), info_weight: int = 1
) -> list[Event]:
    """Any well-formed history: random ops, interleavings, completions and results."""
    processes = rng.randint(1, 4)
    keys = ["x", "y"][: rng.randint(1, 2)]
    completions = [OK, OK, OK, OK, FAIL] + [INFO] * info_weight
    outstanding: dict[int, Event] = {}
    pids = list(range(processes))
    next_pid = processes
    events: list[Event] = []
    invoked = 0
    while invoked < ops_max or outstanding:
        slot = rng.randrange(processes)
        pid = pids[slot]
        if pid in outstanding:
            invoke = outstanding.pop(pid)
            type_ = rng.choice(completions)
            value = rng.choice([None, *values]) if invoke.f == "read" and type_ is OK else None
            events.append(Event(pid, type_, invoke.f, invoke.key, value, len(events)))
            if type_ is INFO:
                pids[slot], next_pid = next_pid, next_pid + 1
        elif invoked < ops_max:
            f = rng.choice(["read", "write", "cas"])
            arg: Any = None
            if f == "write":
                arg = rng.choice(values)
            elif f == "cas":
                arg = [rng.choice([None, *values]), rng.choice(values)]
            event = Event(pid, INVOKE, f, rng.choice(keys), arg, len(events))
            outstanding[pid] = event
            events.append(event)
            invoked += 1
        elif rng.random() < 0.2:
            break  # leave the rest outstanding: incomplete operations
    return events


@settings(max_examples=300, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), ops_max=st.integers(1, 6))
def test_checker_agrees_with_brute_force(seed: int, ops_max: int) -> None:
    events = random_small_history(random.Random(seed), ops_max)
    assert check(events).ok is brute_force_linearizable(events)


@pytest.mark.parametrize(
    ("values", "info_weight", "ops_max"),
    [((0, 1, 2), 1, 6), ((0, 1), 3, 8), ((0,), 4, 8)],
    ids=["mixed", "many-info-twins", "one-value-twins"],
)
def test_brute_force_comparison_covers_both_answers(
    values: tuple[int, ...], info_weight: int, ops_max: int
) -> None:
    # Few values and many INFO ops make identical indeterminate operations ("twins") common,
    # which exercises the checker's twin and dominance pruning.
    verdicts = {True: 0, False: 0}
    for seed in range(300):
        events = random_small_history(random.Random(seed), ops_max, values, info_weight)
        expected = brute_force_linearizable(events)
        assert check(events).ok is expected, f"seed {seed}: {events}"
        verdicts[expected] += 1
    assert verdicts[True] >= 30 and verdicts[False] >= 30, verdicts


# ---------------------------------------------------------------------------------------------
# Malformed histories


def e(process: int, type_: str, f: str, value: Any = None, *, t: int = 0, key: str = "x") -> Event:
    return Event(process, TYPES[type_], f, key, value, t)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([e(1, "ok", "read")], "without an outstanding invoke"),
        ([e(1, "invoke", "read"), e(1, "invoke", "write", 1)], "still outstanding"),
        (
            [e(1, "invoke", "write", 1), e(1, "info", "write"), e(1, "invoke", "read")],
            "after its INFO",
        ),
        ([e(1, "invoke", "write", 1), e(1, "ok", "read")], "does not match"),
        ([e(1, "invoke", "write", 1), e(1, "ok", "write", key="y")], "does not match"),
        ([e(1, "invoke", "read", t=5), e(1, "ok", "read", t=4)], "back in time"),
        ([e(1, "invoke", "dequeue"), e(1, "ok", "dequeue")], "does not know operation"),
        ([e(1, "invoke", "cas", 3), e(1, "ok", "cas")], "cas needs value"),
    ],
    ids=[
        "completion-without-invoke",
        "two-outstanding",
        "after-info",
        "mismatched-f",
        "mismatched-key",
        "time-backwards",
        "unknown-f",
        "bad-cas",
    ],
)
def test_malformed_history_raises(events: list[Event], message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        check(events)


# ---------------------------------------------------------------------------------------------
# Time limit and performance


def test_gives_up_at_the_time_limit() -> None:
    # 22 overlapping acknowledged writes of distinct values, then a read of a value none of
    # them wrote: the search must try every subset of the writes (millions) before saying no.
    writers = range(22)
    events = [e(p, "invoke", "write", p) for p in writers]
    events += [e(p, "ok", "write", t=1) for p in writers]
    events += [e(100, "invoke", "read", t=2), e(100, "ok", "read", NEVER_WRITTEN, t=3)]
    started = time.monotonic()
    result = check(events, time_limit_s=0.2)
    elapsed = time.monotonic() - started
    assert result.ok is None, result.explanation
    assert "gave up" in result.explanation and "'x'" in result.explanation
    assert elapsed < 2.0
    # The same shape with a few writers is decided (and is not linearizable).
    small = [ev for ev in events if ev.process in (0, 1, 2, 100)]
    assert check(small).ok is False


def test_ten_thousand_operations_check_fast() -> None:
    events, _ = linearizable_history(random.Random(2026), 10_000, 50, 10)
    assert sum(1 for ev in events if ev.type is INVOKE) == 10_000
    started = time.monotonic()
    result = check(events)
    elapsed = time.monotonic() - started
    assert result.ok is True, result.explanation
    assert result.operations == 10_000 and result.partitions_checked == 50
    assert elapsed < 3.0, f"10k operations took {elapsed:.2f}s"  # typically ~0.1-0.3 s
    mutated = check(mutate_one_read(events, random.Random(1)))
    assert mutated.ok is False


# -- exact value equality (JSON types kept apart) ----------------------------------------


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (True, 1),
        (False, 0),
        (1, True),
        ({"a": 1}, [["a", 1]]),
        ([["a", 1]], {"a": 1}),
        ([1, 2], {1, 2}),
        ({"a": True}, {"a": 1}),
    ],
)
def test_a_read_of_a_different_json_type_is_not_linearizable(written: object, read: object) -> None:
    """The old freeze turned lists and dicts into plain tuples (and Python has True == 1),
    so these reads of a value never written passed."""
    history = [
        Event(1, EventType.INVOKE, "write", "k", written, 0),
        Event(1, EventType.OK, "write", "k", None, 1),
        Event(2, EventType.INVOKE, "read", "k", None, 2),
        Event(2, EventType.OK, "read", "k", read, 3),
    ]
    assert check_history(history, model=KVModel()).ok is False


@pytest.mark.parametrize("value", [True, 1, 1.5, "x", None, [1, [2]], {"a": [1, {"b": False}]}])
def test_a_json_round_trip_reads_back_equal(value: object) -> None:
    history = [
        Event(1, EventType.INVOKE, "write", "k", value, 0),
        Event(1, EventType.OK, "write", "k", None, 1),
        Event(2, EventType.INVOKE, "read", "k", None, 2),
        Event(2, EventType.OK, "read", "k", json.loads(json.dumps(value)), 3),
    ]
    assert check_history(history, model=KVModel()).ok is True

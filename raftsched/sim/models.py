"""Sequential specifications for the linearizability checker.

Theory of operation: a model is a pure sequential object. `init()` gives its first state and
`step(state, op)` says whether `op`, applied to `state` with the result the client saw, is
legal, and what state follows. The checker (raftsched/sim/linearizability.py) searches for an
order of the concurrent operations in which every step is legal. States must be hashable and
compare by value (ints, strings, tuples, frozensets): the checker memoizes (linearized set,
state) pairs to never explore one configuration twice.

`partition(events)` splits a history into independent sub-histories (Herlihy & Wing's
locality, "P-compositionality"): a history is linearizable iff each part is. An operation's
INVOKE and its completion must land in the same part.

Operations whose outcome is unknown (INFO, or an INVOKE never completed) reach `step` with
`op.known == False`: the model must then accept any result the operation could have had and
return the state it would leave (one state: models are deterministic). It need not model
"never happened" -- the checker covers that by leaving the operation out. `unknown_effect(op)`
tells the checker what such an op can do (nothing / a blind overwrite / depends on the
state), which it uses to prune; when unsure, answer DEPENDS.

Contract: `step` looks at an operation only through f, key, input, output and known -- never
process, times or ids -- so two indeterminate ops with the same f, key and input are
interchangeable (the checker relies on this to explore only one of them).

A future queue-with-leases model fits the same protocol: its state is a tuple of jobs and
leases, its step checks a lease's job and token against that state, `unknown_effect` answers
DEPENDS for lease/complete and NONE for reads, and `partition` splits by queue.

Register convention (RegisterModel and KVModel), for `Event` values:
  f="read"  INVOKE value None      -> OK value: the value read (None if never written)
  f="write" INVOKE value v         -> OK value: None (ignored)
  f="cas"   INVOKE value [old, new] -> OK: it swapped (the register held old, now holds new);
                                       FAIL: the compare failed. A definite compare-failed
                                       answer means the cas changed nothing, so the checker
                                       may drop it like any other FAIL.
The initial value of every register is None. Values are frozen (`freeze`) so that they
compare exactly as JSON values: arrays and objects by content but never with each other,
booleans never equal to numbers; JSON round-trips compare equal.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from raftsched.sim.history import Event

State = TypeVar("State", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Operation:
    """One invoke/completion pair, as the checker and the models see it."""

    id: int  # dense index within its partition: the bit in the linearized-set bitset
    process: int
    f: str
    key: str
    input: Any  # the INVOKE value, frozen (hashable)
    output: Any  # the OK value, frozen; None when not known
    known: bool  # False for INFO and never-completed operations: output is not known
    invoke_time: int
    return_time: int | None  # None: never returned (INFO / incomplete)
    invoke_index: int  # position of the INVOKE in the whole history
    return_index: int | None  # position of the completion; None for INFO / incomplete


class UnknownEffect(enum.Enum):
    """What an operation with an unknown outcome can do to the state, for the search.

    Claiming less than DEPENDS is an optimization that must be true of every state, or the
    checker may wrongly answer False.
    """

    NONE = "none"  # always legal, changes nothing (a read): the checker leaves it out
    BLIND = "blind"  # always legal, the next state does not depend on the current one
    DEPENDS = "depends"  # anything else (cas, dequeue, ...)


class Model(Protocol[State]):
    """A sequential specification; see the module docstring."""

    def init(self) -> State: ...

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        """(legal, next state). When op.known is False, accept any output."""
        ...

    def partition(self, events: Sequence[Event]) -> Mapping[str, Sequence[Event]]:
        """Independent sub-histories by name, each in history order."""
        ...

    def unknown_effect(self, op: Operation) -> UnknownEffect:
        """What op does when its outcome is unknown; lets the checker prune (see the enum)."""
        ...

    def describe_op(self, op: Operation) -> str: ...

    def describe_state(self, state: State) -> str: ...


@dataclass(frozen=True, slots=True)
class JsonBool:
    """A frozen JSON boolean: never equal to the numbers 1 and 0 (Python's True == 1)."""

    value: bool

    def __repr__(self) -> str:
        return "true" if self.value else "false"


class FrozenList(tuple[Hashable, ...]):
    """A frozen JSON array: equal only to another array with equal items."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is FrozenList and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("array", tuple(self)))


class FrozenObject(tuple[tuple[str, Hashable], ...]):
    """A frozen JSON object, as its (key, value) pairs sorted by key: equal only to another
    object with the same pairs (never to an array of pairs)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is FrozenObject and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("object", tuple(self)))


def freeze(value: Any) -> Hashable:
    """A hashable form of a JSON-like value that compares exactly as JSON values do: a
    boolean is not a number, an object is not an array of pairs, an array is not a set.
    Numbers compare by value (JSON has one number type: 1 == 1.0)."""
    if isinstance(value, bool):
        return JsonBool(value)
    if isinstance(value, list | tuple):
        return FrozenList(freeze(item) for item in value)
    if isinstance(value, dict):
        items = ((str(k), freeze(v)) for k, v in value.items())
        return FrozenObject(sorted(items, key=lambda kv: kv[0]))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(item) for item in value)
    assert isinstance(value, Hashable), f"unfreezable value {value!r}"
    return value


class HistoryError(ValueError):
    """A malformed history: the checker cannot give it a meaning.

    Defined here so models can raise it for operations they do not know; the checker
    re-exports it as raftsched.sim.linearizability.HistoryError.
    """


def _register_step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    """One register: read/write/cas. The shared step of RegisterModel and KVModel."""
    f = op.f
    if f == "read":
        # Unknown output: a read changes nothing, so it is always legal.
        return (not op.known or op.output == state), state
    if f == "write":
        return True, op.input
    if f == "cas":
        old, new = op.input
        # A cas that reaches the checker either swapped (OK) or its outcome is unknown. An
        # unknown cas whose compare would fail changed nothing, the same as never happening,
        # which the checker already explores; so it is only legal when it swaps.
        if state == old:
            return True, new
        return False, state
    raise HistoryError(f"register model does not know operation f={f!r}")


def _register_unknown_effect(op: Operation) -> UnknownEffect:
    if op.f == "read":
        return UnknownEffect.NONE
    if op.f == "write":
        return UnknownEffect.BLIND
    return UnknownEffect.DEPENDS


def _describe_register_op(op: Operation) -> str:
    if op.f == "read":
        text = "read"
        result = repr(op.output) if op.known else "?"
    elif op.f == "write":
        text = f"write {op.input!r}"
        result = "ok" if op.known else "?"
    else:
        old, new = op.input
        text = f"cas {old!r}->{new!r}"
        result = "ok" if op.known else "?"
    return f"{text} -> {result}"


def _check_register_event(event: Event) -> None:
    if event.f not in ("read", "write", "cas"):
        raise HistoryError(f"register model does not know operation f={event.f!r} ({event})")
    if event.f == "cas" and event.type.value == "invoke":
        value = event.value
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise HistoryError(f"cas needs value [old, new], got {value!r} ({event})")


class RegisterModel:
    """A single read/write/cas register; the whole history is one partition."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        return _register_step(state, op)

    def partition(self, events: Sequence[Event]) -> Mapping[str, Sequence[Event]]:
        for event in events:
            _check_register_event(event)
        keys = {event.key for event in events}
        name = next(iter(keys)) if len(keys) == 1 else "*"
        return {name: list(events)}

    def unknown_effect(self, op: Operation) -> UnknownEffect:
        return _register_unknown_effect(op)

    def describe_op(self, op: Operation) -> str:
        return _describe_register_op(op)

    def describe_state(self, state: Hashable) -> str:
        return repr(state)


class KVModel:
    """A map of independent registers, partitioned by key.

    Each partition holds one key, so a partition's state is just that key's register value.
    """

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        return _register_step(state, op)

    def partition(self, events: Sequence[Event]) -> Mapping[str, Sequence[Event]]:
        by_key: dict[str, list[Event]] = {}
        for event in events:
            _check_register_event(event)
            by_key.setdefault(event.key, []).append(event)
        return by_key

    def unknown_effect(self, op: Operation) -> UnknownEffect:
        return _register_unknown_effect(op)

    def describe_op(self, op: Operation) -> str:
        return f"{op.key}: {_describe_register_op(op)}"

    def describe_state(self, state: Hashable) -> str:
        return repr(state)

"""Linearizability checker: Wing & Gong's search with Lowe's memoization, per partition.

Theory of operation. A history is linearizable when each operation can be given a single
instant between its invoke and its completion such that, taken in that order, the operations
are a legal sequential run of the model (Herlihy & Wing 1990).

1. Validate the history (`HistoryError` on malformed input) and pair each INVOKE with its
   completion. FAIL operations certainly did not happen and are dropped. INFO operations, and
   INVOKEs with no completion, may have happened at any time after their invoke, with any
   result, or never: they return at +infinity, reach the model with `known=False`, and the
   search may leave them out.
2. Split the history with `model.partition` (P-compositionality, Herlihy & Wing's locality:
   a history is linearizable iff every independent object's sub-history is) and check each
   part alone, stopping at the first part that is not linearizable.
3. Per part, Wing & Gong's depth-first search: the operations' call and return entries sit in
   a doubly linked list in history order (unknown ops' calls in separate ones, see 4).
   Walking the list, a call entry is a candidate to linearize next; if the model accepts it,
   lift its call and return out of the list, push it on a stack and restart from the head.
   Reaching a return entry means that operation had to be linearized already: backtrack
   (pop, unlift, try the next candidate). Lowe's improvement: remember every (set of
   linearized operations as a bitset int, model state) reached; entering a remembered
   configuration again cannot succeed where it failed before, so it is skipped. The search
   succeeds when every operation with a known outcome is linearized (the remaining INFO
   operations never took effect).
4. Unknown (INFO) operations never return, so they stay candidates forever and would make
   the search exponential in their number. Four rules keep that in check, each sound
   because an unknown op may always be left out: (a) they are tried only after the known
   candidates of a configuration; (b) a configuration is skipped when one that used a
   subset of its unknown ops reached the same known set and state (`_Memo`); (c) all
   unknown candidates of a configuration are entered in the memo before any is explored,
   so "u then v" is pruned by "v"; (d) of identical unknown ops only the earliest unused
   one is tried, and the model can declare ops that never matter (reads) or that overwrite
   blindly (writes, never tried right after another unknown op).

Cost: with known outcomes only, about (operations x 2^concurrency) configurations at worst,
typically a few per operation. Every unknown op adds a candidate at every later
configuration, so keep histories per key short (as Jepsen does with independent keys): a
non-linearizable key with hundreds of INFO ops over a tiny value domain can exhaust the
time limit (ok None), never a wrong answer.

Real-time order is the order of events in the history list (the record says they are in the
order they happened; times must not go backwards), like Knossos: operation A precedes B iff
A's completion comes before B's invoke in the list.

Elapsed time is measured with time.monotonic(): this is analysis code, not replicated state.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftsched.sim.history import Event, EventType
from raftsched.sim.models import HistoryError, Model, Operation, UnknownEffect, freeze

__all__ = ["CheckResult", "HistoryError", "check_history", "operations_of"]

# The search looks at the clock once per this many steps (a power of two minus one: a mask).
CLOCK_CHECK_MASK = 4095
# How many operations of the longest linearizable prefix the explanation shows.
EXPLANATION_PREFIX_OPS_MAX = 10
# Bound on the operations listed as "could not be linearized" in an explanation.
EXPLANATION_FRONTIER_OPS_MAX = 20


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool | None  # True linearizable, False not, None gave up at the time limit
    explanation: str
    partitions_checked: int  # partitions whose search ran (stops at the first failure)
    operations: int  # operations (INVOKEs) in the whole history, FAIL ones included
    failed_partition: str | None = None  # the key found not linearizable (ok is False)
    # For ok False: the longest linearizable prefix found, in linearization order, and the
    # operations none of which could extend it.
    longest_prefix: tuple[Operation, ...] = field(default_factory=tuple)
    unlinearizable: tuple[Operation, ...] = field(default_factory=tuple)
    elapsed_s: float = 0.0


# ---------------------------------------------------------------------------------------------
# Validation and pairing


def _validate(events: Sequence[Event]) -> None:
    """Raise HistoryError unless every process runs one operation at a time, properly."""
    outstanding: dict[int, tuple[int, Event]] = {}  # process -> (index, its INVOKE)
    crashed: dict[int, int] = {}  # process -> index of its INFO
    last_time: int | None = None
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise HistoryError(f"event {index} is not an Event: {event!r}")
        if last_time is not None and event.time < last_time:
            raise HistoryError(
                f"event {index} goes back in time: time {event.time} after {last_time} ({event})"
            )
        last_time = event.time
        process = event.process
        if process in crashed:
            raise HistoryError(
                f"event {index} on process {process} after its INFO at event "
                f"{crashed[process]}: a process whose operation is indeterminate never "
                f"issues another; give the client a fresh process id ({event})"
            )
        if event.type is EventType.INVOKE:
            if process in outstanding:
                first_index, first = outstanding[process]
                raise HistoryError(
                    f"event {index}: process {process} invokes {event.f} while its {first.f} "
                    f"invoked at event {first_index} is still outstanding ({event})"
                )
            outstanding[process] = (index, event)
            continue
        if process not in outstanding:
            raise HistoryError(
                f"event {index}: {event.type.value} completion on process {process} "
                f"without an outstanding invoke ({event})"
            )
        invoke_index, invoke = outstanding.pop(process)
        if (invoke.f, invoke.key) != (event.f, event.key):
            raise HistoryError(
                f"event {index}: completion f={event.f!r} key={event.key!r} does not match "
                f"its invoke at event {invoke_index}, f={invoke.f!r} key={invoke.key!r}"
            )
        if event.type is EventType.INFO:
            crashed[process] = index


def operations_of(events: Sequence[Event]) -> list[Operation]:
    """Pair INVOKEs with completions; drop FAIL; INFO and incomplete become unknown.

    `events` must be valid (see `_validate`) and hold whole operations. Operation ids are
    dense in invoke order; `invoke_index`/`return_index` are positions in `events`.
    """
    pending: dict[int, tuple[int, Event]] = {}
    pairs: list[tuple[int, Event, int | None, Event | None]] = []
    slot_of: dict[int, int] = {}  # process -> index into pairs of its open operation
    for index, event in enumerate(events):
        if event.type is EventType.INVOKE:
            pending[event.process] = (index, event)
            slot_of[event.process] = len(pairs)
            pairs.append((index, event, None, None))
        else:
            assert event.process in pending, (
                f"completion without its invoke in a partition: model.partition must keep "
                f"an operation's invoke and completion together ({event})"
            )
            invoke_index, invoke = pending.pop(event.process)
            pairs[slot_of.pop(event.process)] = (invoke_index, invoke, index, event)
    ops: list[Operation] = []
    for invoke_index, invoke, done_index, done in pairs:
        if done is not None and done.type is EventType.FAIL:
            continue  # certainly did not happen
        known = done is not None and done.type is EventType.OK
        ops.append(
            Operation(
                id=len(ops),
                process=invoke.process,
                f=invoke.f,
                key=invoke.key,
                input=freeze(invoke.value),
                output=freeze(done.value) if known and done is not None else None,
                known=known,
                invoke_time=invoke.time,
                return_time=done.time if known and done is not None else None,
                invoke_index=invoke_index,
                return_index=done_index if known else None,
            )
        )
    return ops


# ---------------------------------------------------------------------------------------------
# The search


class _TimeLimit(Exception):
    """The search ran out of time."""


@dataclass(slots=True)
class _Outcome:
    ok: bool
    best_path: tuple[int, ...]  # op ids of the longest linearizable prefix, in order
    configurations: int


class _Memo:
    """Configurations entered so far, with Lowe's pruning extended to INFO operations.

    A configuration is (known ops linearized, unknown ops linearized, state). Lowe: entering
    one again cannot succeed where it failed before. Extension: (K, U, s) is dominated by an
    entered (K, U', s) with U' a subset of U, since an unknown op may always be left out --
    the dominated one has only fewer options (unknown ops never return, so they never
    constrain real-time order). Without INFO operations every U is 0 and this is exactly
    Lowe's memo.

    Proof sketch that the search stays complete: every entered configuration is explored
    unless the search succeeds first. Suppose it failed although a success existed; take the
    entered configuration with the shortest successful continuation. Its first step can be
    taken to be one the search tries (swap an unknown op for its earliest unused twin; a
    blind op right after unknown op u could have been taken instead of u, as u's sibling),
    and leads to a configuration entered or dominated by an entered one, whose continuation
    is shorter: a contradiction.
    """

    __slots__ = ("_by_known", "configurations")

    def __init__(self) -> None:
        # (known bitset, state) -> unknown bitsets entered, none a subset of another
        self._by_known: dict[tuple[int, Hashable], list[int]] = {}
        self.configurations = 0

    def enter(self, known: int, unknown: int, state: Hashable) -> bool:
        """Record the configuration; False if it (or one dominating it) was entered."""
        key = (known, state)
        entered = self._by_known.get(key)
        if entered is None:
            self._by_known[key] = [unknown]
        else:
            for prior in entered:
                if prior & ~unknown == 0:  # prior is a subset of unknown: dominated
                    return False
            # Drop the entries the new one dominates; they can never prune anything it cannot.
            entered[:] = [prior for prior in entered if unknown & ~prior != 0]
            entered.append(unknown)
        self.configurations += 1
        return True


# Entry kinds in the search's linked lists.
_SENTINEL, _CALL, _RETURN, _UNKNOWN_CALL = 0, 1, 2, 3


def _search(ops: Sequence[Operation], model: Model[Any], deadline: float) -> _Outcome:
    """Wing & Gong / Lowe depth-first search over one partition's operations.

    Three doubly linked lists share the arrays below. The main list holds the calls and
    returns of the known operations in history order. Unknown (INFO) operations never
    return, so their calls sit in two more lists (blind ones and the rest), in invoke order,
    and are tried after the known candidates of a configuration: the search first looks for
    an explanation without them, which makes later configurations that use them easy to
    prune (see _Memo).
    """
    known = [op for op in ops if op.known]
    effects = {op.id: model.unknown_effect(op) for op in ops if not op.known}
    unknown = [op for op in ops if not op.known and effects[op.id] is not UnknownEffect.NONE]
    # Unknown ops that overwrite blindly (a write) are never tried right after another
    # unknown op: "u then b" is dominated by "b" alone, a sibling of u. They get a list of
    # their own so that skipping them costs nothing.
    blind = [op for op in unknown if effects[op.id] is UnknownEffect.BLIND]
    depends = [op for op in unknown if effects[op.id] is not UnknownEffect.BLIND]
    main_head = 0
    main_tail = 2 * len(known) + 1
    depends_head = main_tail + 1
    depends_tail = depends_head + len(depends) + 1
    blind_head = depends_tail + 1
    blind_tail = blind_head + len(blind) + 1
    size = blind_tail + 1
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    for tail, head in ((main_tail, depends_head), (depends_tail, blind_head)):
        nxt[tail], prv[head] = -1, -1  # separate lists
    kind = [_SENTINEL] * size
    entry_op = [-1] * size
    position = [0] * size  # the entry's index in the history
    match = [-1] * size  # known call entry -> its return entry
    order = sorted(
        [(op.invoke_index, _CALL, op.id) for op in known]
        + [(op.return_index or 0, _RETURN, op.id) for op in known]
    )
    call_entry_of: dict[int, int] = {}
    for entry, (index, entry_kind, op_id) in enumerate(order, start=main_head + 1):
        kind[entry], entry_op[entry], position[entry] = entry_kind, op_id, index
        if entry_kind == _CALL:
            call_entry_of[op_id] = entry
        else:
            assert op_id in call_entry_of, "return entry before its call"
            match[call_entry_of[op_id]] = entry
    # Unknown ops with the same (f, key, input) are interchangeable once both are invoked:
    # only ever linearize the earliest invoked one not yet linearized (`twins_before`).
    twins_before = [0] * size  # unknown call entry -> bitset of earlier identical ops
    twins_seen: dict[tuple[str, str, Hashable], int] = {}
    unknown_entries = [
        *enumerate(depends, start=depends_head + 1),
        *enumerate(blind, start=blind_head + 1),
    ]
    for entry, op in sorted(unknown_entries, key=lambda item: item[1].invoke_index):
        kind[entry], entry_op[entry], position[entry] = _UNKNOWN_CALL, op.id, op.invoke_index
        signature = (op.f, op.key, op.input)
        twins_before[entry] = twins_seen.get(signature, 0)
        twins_seen[signature] = twins_before[entry] | (1 << op.id)

    step = model.step
    state: Hashable = model.init()
    linearized = 0  # bitset of linearized op ids
    required = len(known)  # known ops not yet linearized
    known_mask = sum(1 << op.id for op in known)
    unknown_mask = sum(1 << op.id for op in unknown)
    memo = _Memo()
    # Frames: (call entry, state before it, siblings, index). siblings is None for a known op,
    # tried while walking the main list. For an unknown op it is the list of (call entry,
    # state after) of every unknown op that could follow the parent configuration, all
    # entered in the memo at once before any is explored, and index is this op's place in it.
    # Entering siblings first is what lets the memo prune a later sequence "u then v" as
    # dominated by "v" alone, instead of exploring every subset of the unknown ops.
    stack: list[tuple[int, Hashable, list[tuple[int, Hashable]] | None, int]] = []
    path: tuple[Any, ...] | None = None  # cons list (op id, rest) of the linearized ops
    # The longest prefix is measured in known ops: a path that ends in indeterminate ops is
    # no longer, only noisier to read.
    best_known = 0
    best_path: tuple[Any, ...] | None = None
    steps = 0
    entry = nxt[main_head]
    siblings: list[tuple[int, Hashable]] | None = None  # None: walking the main list
    index = 0
    while required > 0:
        steps += 1
        if steps & CLOCK_CHECK_MASK == 0 and time.monotonic() > deadline:
            raise _TimeLimit
        if siblings is None:
            entry_kind = kind[entry]
            if entry_kind == _CALL:
                op = ops[entry_op[entry]]
                legal, new_state = step(state, op)
                if legal:
                    new_linearized = linearized | (1 << op.id)
                    if memo.enter(
                        new_linearized & known_mask, new_linearized & unknown_mask, new_state
                    ):
                        stack.append((entry, state, None, 0))
                        state = new_state
                        linearized = new_linearized
                        required -= 1
                        path = (op.id, path)
                        if len(known) - required > best_known:
                            best_known, best_path = len(known) - required, path
                        # Lift the call and its return out of the main list.
                        ret = match[entry]
                        nxt[prv[entry]] = nxt[entry]
                        prv[nxt[entry]] = prv[entry]
                        nxt[prv[ret]] = nxt[ret]
                        prv[nxt[ret]] = prv[ret]
                        entry = nxt[main_head]
                        continue
                entry = nxt[entry]
                continue
            # A return entry: this op had to be linearized by now, so no other known op can
            # come next. The candidates left are the unknown ops invoked before this return.
            assert entry_kind == _RETURN, "walked off the main list with known operations left"
            bound = position[entry]
            siblings = []
            after_unknown = bool(stack) and stack[-1][2] is not None
            for head in (depends_head,) if after_unknown else (depends_head, blind_head):
                candidate = nxt[head]
                while kind[candidate] == _UNKNOWN_CALL and position[candidate] < bound:
                    twins = twins_before[candidate]
                    if linearized & twins == twins:
                        op = ops[entry_op[candidate]]
                        legal, new_state = step(state, op)
                        if legal:
                            new_linearized = linearized | (1 << op.id)
                            unknown_bits = new_linearized & unknown_mask
                            if memo.enter(new_linearized & known_mask, unknown_bits, new_state):
                                siblings.append((candidate, new_state))
                    candidate = nxt[candidate]
            index = 0
        if index < len(siblings):
            entry, new_state = siblings[index]
            op = ops[entry_op[entry]]
            stack.append((entry, state, siblings, index))
            state = new_state
            linearized |= 1 << op.id
            path = (op.id, path)
            nxt[prv[entry]] = nxt[entry]  # lift the call out of the unknown list
            prv[nxt[entry]] = prv[entry]
            entry = nxt[main_head]
            siblings = None
            continue
        # Every candidate of this configuration failed. Backtrack.
        if not stack:
            return _Outcome(False, _unwind(best_path), memo.configurations)
        entry, state, siblings, index = stack.pop()
        op = ops[entry_op[entry]]
        linearized &= ~(1 << op.id)
        assert path is not None and path[0] == op.id
        path = path[1]
        # Unlift in reverse order of lifting.
        if siblings is None:
            required += 1
            ret = match[entry]
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry
        if siblings is None:
            entry = nxt[entry]
        else:
            index += 1
    return _Outcome(True, _unwind(path), memo.configurations)


def _unwind(path: tuple[Any, ...] | None) -> tuple[int, ...]:
    ids: list[int] = []
    while path is not None:
        ids.append(path[0])
        path = path[1]
    ids.reverse()
    return tuple(ids)


# ---------------------------------------------------------------------------------------------
# Explanations


def _describe(model: Model[Any], op: Operation) -> str:
    returned = f"returned t={op.return_time}" if op.known else "never returned (info)"
    return f"process {op.process} {model.describe_op(op)}  [invoked t={op.invoke_time}, {returned}]"


def _frontier(ops: Sequence[Operation], linearized: set[int], model: Model[Any]) -> list[Operation]:
    """The candidates to come next after `linearized`: ops invoked before the first return.

    Known ops first, by return (the first had to be linearized before its return), then the
    unknown ops that could matter.
    """
    remaining = [op for op in ops if op.id not in linearized]
    first_return = min(
        (op.return_index for op in remaining if op.return_index is not None), default=None
    )
    assert first_return is not None, "a failed search leaves a known operation"
    candidates = [op for op in remaining if op.invoke_index < first_return]
    known = sorted((op for op in candidates if op.known), key=lambda op: op.return_index or 0)
    unknown = [
        op
        for op in candidates
        if not op.known and model.unknown_effect(op) is not UnknownEffect.NONE
    ]
    return known + unknown


def _explain_failure(
    key: str, ops: Sequence[Operation], model: Model[Any], best_path: tuple[int, ...]
) -> tuple[str, tuple[Operation, ...], tuple[Operation, ...]]:
    prefix = tuple(ops[op_id] for op_id in best_path)
    states: list[Hashable] = []
    state: Hashable = model.init()
    for op in prefix:
        legal, state = model.step(state, op)
        assert legal, "the longest prefix replays legally"
        states.append(state)
    frontier = _frontier(ops, set(best_path), model)
    known_ops = sum(1 for op in ops if op.known)
    shown_from = max(0, len(prefix) - EXPLANATION_PREFIX_OPS_MAX)
    lines = [
        f"not linearizable: key {key!r} ({len(ops)} operations, "
        f"{len(ops) - known_ops} of them indeterminate)",
        f"longest linearizable prefix: {len(prefix)} operations"
        + (f" (the last {len(prefix) - shown_from})" if shown_from else "")
        + ":",
    ]
    for op, after in zip(prefix[shown_from:], states[shown_from:], strict=True):
        lines.append(f"  {_describe(model, op)}  => state {model.describe_state(after)}")
    lines.append(f"state after the prefix: {model.describe_state(state)}")
    lines.append("no operation can extend it; the candidates:")
    for position, op in enumerate(frontier[:EXPLANATION_FRONTIER_OPS_MAX]):
        legal, _ = model.step(state, op)
        verdict = "legal here, but every order of the rest fails" if legal else "illegal here"
        if position == 0:
            verdict += "; it returned first, so it had to be linearized by then"
        lines.append(f"  {_describe(model, op)}  -- {verdict}")
    if len(frontier) > EXPLANATION_FRONTIER_OPS_MAX:
        lines.append(f"  ... and {len(frontier) - EXPLANATION_FRONTIER_OPS_MAX} more")
    return "\n".join(lines), prefix, tuple(frontier)


# ---------------------------------------------------------------------------------------------
# Entry point


def check_history(
    events: Sequence[Event], model: Model[Any], time_limit_s: float = 10.0
) -> CheckResult:
    """Is `events` linearizable with respect to `model`? See the module docstring."""
    started = time.monotonic()
    deadline = started + time_limit_s
    events = list(events)
    _validate(events)
    operations = sum(1 for event in events if event.type is EventType.INVOKE)
    partitions = model.partition(events)
    checked = 0
    for key, part in partitions.items():
        ops = operations_of(part)
        checked += 1
        try:
            outcome = _search(ops, model, deadline)
        except _TimeLimit:
            elapsed = time.monotonic() - started
            return CheckResult(
                ok=None,
                explanation=(
                    f"gave up after {elapsed:.2f}s (time limit {time_limit_s}s) while checking "
                    f"key {key!r} ({len(ops)} operations); {checked - 1} of "
                    f"{len(partitions)} partitions were linearizable"
                ),
                partitions_checked=checked,
                operations=operations,
                elapsed_s=elapsed,
            )
        if not outcome.ok:
            explanation, prefix, frontier = _explain_failure(key, ops, model, outcome.best_path)
            return CheckResult(
                ok=False,
                explanation=explanation,
                partitions_checked=checked,
                operations=operations,
                failed_partition=key,
                longest_prefix=prefix,
                unlinearizable=frontier,
                elapsed_s=time.monotonic() - started,
            )
    elapsed = time.monotonic() - started
    return CheckResult(
        ok=True,
        explanation=(
            f"linearizable: {operations} operations in {checked} partitions, "
            f"checked in {elapsed:.3f}s"
        ),
        partitions_checked=checked,
        operations=operations,
        elapsed_s=elapsed,
    )

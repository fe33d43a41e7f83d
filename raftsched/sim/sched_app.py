"""The scheduler state machine as the simulator's replicated application.

Theory of operation: a NORMAL entry carries an entry envelope (raftsched/wire/envelope.py)
holding the leader's stamp and an encoded scheduler command (raftsched/wire/sched_codec.py),
exactly what the production runtime logs. Applying decodes both with the strict wire codecs
and calls `SchedulerState.apply(command, entry.index, stamp_ms)`: the index is the Raft index,
so a lease's fencing token is the index of the entry that granted it. Other entries (the
leader's no-op, configuration changes) only advance the applied index and the chained hash.

A request is answered by the entry it was proposed as: the waiter's key is (index, term) of
that entry, unique cluster-wide (log matching). A retry is a new proposal; the scheduler's own
idempotency keys and job ids make it apply once. The answer is `Ok(result)` with the
scheduler's `Ok | Refused` as value: either way the command was applied.

Like kv.py, the app keeps a running chained hash of the applied log (the invariant checker's
cheap state machine safety check); `state_hash()` is the scheduler's own hash of its whole
state, which an observer (sched_checks.py) samples every few entries to compare replicas.
The snapshot is the scheduler's snapshot plus the applied index and chained hash.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from raftsched.raft.types import Entry, EntryKind
from raftsched.sched import Command, Result, SchedulerState
from raftsched.wire.envelope import SchedEntry, decode_entry, encode_entry
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.sched_codec import decode_command, encode_command

from .app import AppAnswer, ReplicatedApp
from .kv import CHAIN_HASH_START, chain


@dataclass(frozen=True, slots=True)
class SchedRequest:
    """A client's scheduler command, as handed to a host's `propose`."""

    command: Command


class SchedApplyObserver(Protocol):
    """Hears every scheduler command a replica applies (sched_checks.py)."""

    def on_sched_apply(self, app: SchedApp, entry: Entry, *, envelope: SchedEntry,
                       command: Command, result: Result, clock_before_ms: int) -> None: ...


class SchedApp:
    """One replica's scheduler state, fed the committed log."""

    def __init__(self, observer: SchedApplyObserver | None = None,
                 state: SchedulerState | None = None, replica: int = 0) -> None:
        self.state = state if state is not None else SchedulerState()
        self.replica = replica  # which build of its kind this is (bugs.py's nondeterminism)
        self.applied_index = 0
        self.chain_hash = CHAIN_HASH_START
        self.observer = observer
        self.lagging_stamps = 0  # stamps below the clock: the max rule kept time from going back

    def apply(self, entry: Entry) -> AppAnswer | None:
        assert entry.index == self.applied_index + 1, (
            f"applying {entry.index} after {self.applied_index}: entries must come in order")
        self.applied_index = entry.index
        self.chain_hash = chain(self.chain_hash, entry)
        if entry.kind != EntryKind.NORMAL:
            return None
        key = (entry.index, entry.term)
        try:
            envelope = decode_entry(entry.data)
            command = decode_command(envelope.command)
        except WireDecodeError as err:
            # Deterministic on every replica: the entry is skipped, its proposer told.
            return AppAnswer(key, False, f"undecodable entry: {err}")
        clock_before_ms = self.state.clock_ms
        result = self._apply_command(command, entry.index, envelope.stamp_ms)
        # SPEC §4: the clock is the max stamp applied, whatever the proposer's clock said.
        # (>=, not ==: a seeded bug may add to it; the replicas' hashes then differ.)
        assert self.state.clock_ms >= max(clock_before_ms, envelope.stamp_ms)
        if envelope.stamp_ms < clock_before_ms:
            self.lagging_stamps += 1
        if self.observer is not None:
            self.observer.on_sched_apply(self, entry, envelope=envelope, command=command,
                                         result=result, clock_before_ms=clock_before_ms)
        return AppAnswer(key, True, result)

    def _apply_command(self, command: Command, index: int, stamp_ms: int) -> Result:
        """The one call into the scheduler (bugs.py overrides it)."""
        return self.state.apply(command, index, stamp_ms)

    def snapshot(self) -> bytes:
        blob: bytes = msgpack.packb(
            {"state": self.state.snapshot(), "applied_index": self.applied_index,
             "chain_hash": self.chain_hash},
            use_bin_type=True,
        )
        return blob

    def state_hash(self) -> str:
        return self.state.state_hash()

    def read(self, key: str) -> Any:
        """A local read of one job document (linearizable only after a ReadIndex, §6.4)."""
        return self.state.get_job(key)

    def next_deadline_ms(self) -> int | None:
        return self.state.next_deadline_ms()


class SchedAppKind:
    """Builds scheduler apps of one class, all reporting to one observer."""

    name = "sched"

    def __init__(self, observer: SchedApplyObserver | None = None,
                 app_class: type[SchedApp] = SchedApp) -> None:
        self.observer = observer
        self.app_class = app_class
        self._built = 0  # apps built so far: a deterministic replica number

    def restore(self, blob: bytes, index: int) -> ReplicatedApp:
        self._built += 1
        if not blob:
            assert index == 0, f"an empty snapshot must be at index 0, not {index}"
            return self.app_class(self.observer, replica=self._built)
        obj = msgpack.unpackb(blob, raw=False)
        assert obj["applied_index"] == index, "snapshot data and metadata disagree"
        app = self.app_class(self.observer, SchedulerState.restore(bytes(obj["state"])),
                             replica=self._built)
        app.applied_index = index
        app.chain_hash = bytes(obj["chain_hash"])
        return app

    def encode_proposal(self, request: object, stamp_ms: int, proposer_id: int) -> bytes:
        assert isinstance(request, SchedRequest)
        return encode_entry(stamp_ms, encode_command(request.command), proposer_id)

    def proposal_key(self, request: object, index: int, term: int) -> Hashable:
        return (index, term)

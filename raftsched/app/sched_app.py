"""`SchedApp`: the scheduler state machine fed the committed Raft log, one entry at a time.

Theory of operation. A NORMAL entry carries an entry envelope (raftsched/wire/envelope.py):
the proposing leader's stamp, its node id and an encoded scheduler command
(raftsched/wire/sched_codec.py). `apply` decodes both (the command with the structural
checks of raftsched/wire/sched_trusted.py: the proposing leader already ran the full parse,
and the proposing leader itself may pass its parsed command instead) and calls
`SchedulerState.apply(command, entry.index, stamp_ms)`: the index is the Raft index, so a
lease's fencing token is the index of the entry that granted it, and the state machine's
clock is the largest stamp applied (SPEC §4), never a clock read here. Other entries (the
leader's no-op, configuration changes) only advance the applied index and the chain hash.
An entry that does not decode is skipped the same way on every replica (deterministic) and
its proposer is told so.

How a runtime uses it (all calls from one thread or task, in log order; no I/O inside):

    app = SchedApp()                         # or app.restore(snapshot.data) at startup
    index, term = node.propose(encode_proposal(command, stamp_ms=..., proposer_id=me))
    waiters[(index, term)] = future          # (index, term) names one entry cluster-wide
    ...
    for entry in rd.committed_entries:       # after the Ready's snapshot was restored
        if entry.index <= app.applied_index: continue   # already in the restored snapshot
        applied = app.apply(entry)
        if applied is not None and (w := waiters.pop(applied.key, None)):
            w.set_result(applied.result)     # Ok | Refused: either way it was applied
    blob = app.snapshot()                    # at app.applied_index, for storage.create_snapshot

A waiter whose (index, term) is overwritten by another leader's entry at that index never
gets an answer from `apply`: the runtime fails it when it sees a different term applied at
that index (outcome unknown for the client, who retries with its idempotency key).

`chain_hash` is the running hash of the applied prefix (chain.py): equal on replicas that
applied the same prefix. `state_hash()` hashes the whole scheduler state (costs a snapshot).
The snapshot is the scheduler's snapshot plus the applied index and chain hash, so a replica
restored from it continues the same chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgpack

from raftsched.raft.types import Entry, EntryKind
from raftsched.sched import Command, Refused, Result, SchedulerState, ValidationError
from raftsched.wire.envelope import SchedEntry, decode_entry, encode_entry
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.sched_codec import encode_command
from raftsched.wire.sched_trusted import decode_committed
from raftsched.wire.strict import unpack_strict

from .chain import CHAIN_HASH_START, chain

SNAPSHOT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class AppliedResult:
    """The answer for the request proposed as the NORMAL entry (index, term)."""

    index: int
    term: int
    result: Result  # Ok | Refused from the scheduler; an undecodable entry is Refused
    proposer_id: int = 0  # the stamping leader's node id from the envelope (0: unknown)
    decoded: bool = True  # False: the entry did not decode and changed nothing

    @property
    def key(self) -> tuple[int, int]:
        """The waiter's key: what `RaftNode.propose` returned for this entry."""
        return (self.index, self.term)


class ApplyObserver(Protocol):
    """Hears every scheduler command applied (the simulator's checks; a runtime's wakeups)."""

    def on_sched_apply(
        self,
        app: SchedApp,
        entry: Entry,
        *,
        envelope: SchedEntry,
        command: Command,
        result: Result,
        clock_before_ms: int,
    ) -> None: ...


def encode_proposal(command: Command, *, stamp_ms: int, proposer_id: int) -> bytes:
    """The bytes a leader proposes for `command`, stamped with its wall clock in ms."""
    return encode_entry(stamp_ms, encode_command(command), proposer_id)


class SchedApp:
    """One replica's scheduler state plus the applied index and the chain hash."""

    def __init__(self, *, observer: ApplyObserver | None = None) -> None:
        self.state = SchedulerState()
        self.applied_index = 0
        self.chain_hash = CHAIN_HASH_START
        self.observer = observer
        self.lagging_stamps = 0  # stamps below the clock: the max rule kept time from going back

    def apply(self, entry: Entry, command: Command | None = None) -> AppliedResult | None:
        """Apply the next committed entry; the answer for a NORMAL entry, None otherwise.

        `command`: the leader's own parsed command for an entry it proposed, when
        `entry.data` is the very bytes `encode_proposal(command, ...)` returned: it skips
        decoding the command, which gives back an equal one (decode(encode(c)) == c)."""
        assert entry.index == self.applied_index + 1, (
            f"applying {entry.index} after {self.applied_index}: entries must come in order"
        )
        self.applied_index = entry.index
        self.chain_hash = chain(self.chain_hash, entry)
        if entry.kind != EntryKind.NORMAL:
            return None
        try:
            envelope = decode_entry(entry.data)
            if command is None:
                command = decode_committed(envelope.command)
        except WireDecodeError as err:
            refusal = Refused(ValidationError("entry", f"undecodable entry: {err}"))
            return AppliedResult(entry.index, entry.term, refusal, decoded=False)
        clock_before_ms = self.state.clock_ms
        result = self._apply_command(command, entry.index, envelope.stamp_ms)
        # SPEC §4: the clock is the max stamp applied, whatever the proposer's clock said.
        # (>=, not ==: a seeded bug may add to it; the replicas' hashes then differ.)
        assert self.state.clock_ms >= max(clock_before_ms, envelope.stamp_ms)
        if envelope.stamp_ms < clock_before_ms:
            self.lagging_stamps += 1
        if self.observer is not None:
            self.observer.on_sched_apply(
                self,
                entry,
                envelope=envelope,
                command=command,
                result=result,
                clock_before_ms=clock_before_ms,
            )
        return AppliedResult(entry.index, entry.term, result, envelope.proposer_id)

    def _apply_command(self, command: Command, index: int, stamp_ms: int) -> Result:
        """The one call into the scheduler (the simulator's seeded bugs override it)."""
        return self.state.apply(command, index, stamp_ms)

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The state at `applied_index`: [version, applied_index, chain_hash, state]."""
        blob: bytes = msgpack.packb(
            [SNAPSHOT_VERSION, self.applied_index, self.chain_hash, self.state.snapshot()],
            use_bin_type=True,
        )
        return blob

    def restore(self, blob: bytes) -> None:
        """Discard all state and load `blob` (from `snapshot`; b"" is the empty state at 0).
        Raises WireDecodeError on a malformed snapshot, leaving the app unchanged."""
        if not blob:
            state, applied_index, chain_hash = SchedulerState(), 0, CHAIN_HASH_START
        else:
            obj: Any = unpack_strict(blob, "app snapshot")
            if type(obj) is not list or len(obj) != 4 or obj[0] != SNAPSHOT_VERSION:
                raise WireDecodeError("an app snapshot is [1, applied_index, chain_hash, state]")
            _, applied_index, chain_hash, state_blob = obj
            if type(applied_index) is not int or applied_index < 0:
                raise WireDecodeError(f"bad applied index {applied_index!r} in app snapshot")
            if type(chain_hash) is not bytes or len(chain_hash) != len(CHAIN_HASH_START):
                raise WireDecodeError("bad chain hash in app snapshot")
            if type(state_blob) is not bytes:
                raise WireDecodeError("bad scheduler state in app snapshot")
            state = SchedulerState.restore(state_blob)
        self.state = state
        self.applied_index = applied_index
        self.chain_hash = chain_hash

    # -- reads ----------------------------------------------------------------------------

    def state_hash(self) -> str:
        """The scheduler's hash of its whole state (costs a snapshot: sample it)."""
        return self.state.state_hash()

    def next_deadline_ms(self) -> int | None:
        """When the leader should next propose a Tick (by the state machine's clock)."""
        return self.state.next_deadline_ms()

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """A local read of one job; linearizable only after a ReadIndex (§6.4)."""
        return self.state.get_job(job_id)


__all__ = ["SNAPSHOT_VERSION", "AppliedResult", "ApplyObserver", "SchedApp", "encode_proposal"]

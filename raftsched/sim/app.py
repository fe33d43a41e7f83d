"""The replicated application a simulated node runs on top of the Raft core.

Theory of operation: the node host (node_host.py) knows nothing of what the log means. It
asks an `AppKind` to turn a client request into entry bytes (stamping it with the proposing
node's clock, SPEC §4) and to name the waiter the answer goes to; it hands every committed
entry, in order, to its `ReplicatedApp`, which applies it and may answer one waiter; it takes
and restores snapshots through the app; and it reports the app's running chained hash of
the applied prefix to the invariant checker. Two kinds exist: the key-value map of kv.py
(`KV_APP`, the default, behaviour byte-for-byte what it was before this split) and the
scheduler (sched_app.py, an adapter over raftsched/app's `SchedApp`, the production apply
path).

Time: a node's wall clock is the virtual time mapped to ms (`MS_PER_UNIT`), plus that node's
clock skew; only stamps read it, never the core.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from raftsched.raft.types import Entry

from .kv import MAX_SESSIONS, REGISTER, Applied, Command, KVStateMachine

MS_PER_UNIT = 10
SESSION_EXPIRED = "expired session"
"""The KV app's answer to a command whose session was evicted: it was not applied now, but
an earlier attempt may have been, so the client records the outcome as unknown."""
"""Virtual time units to wall-clock ms: a tick (events.UNITS_PER_TICK units) is 100 ms."""


@dataclass(frozen=True, slots=True)
class AppAnswer:
    """What applying one entry tells the client waiting for it (if any is)."""

    key: Hashable  # the waiter it answers (AppKind.proposal_key of the request)
    ok: bool
    value: Any  # ok: the result; not ok: an error description
    definite: bool = True  # not ok and definite: the request certainly had no effect


class ReplicatedApp(Protocol):
    """A deterministic state machine fed the committed log, one entry at a time."""

    @property
    def applied_index(self) -> int: ...

    @property
    def chain_hash(self) -> bytes: ...

    def apply_entry(self, entry: Entry) -> AppAnswer | None: ...
    def snapshot(self) -> bytes: ...
    def state_hash(self) -> str: ...
    def read(self, key: str) -> Any: ...


class AppKind(Protocol):
    """The codec side of an application: proposals in, empty or restored apps out."""

    name: str

    def restore(self, blob: bytes, index: int) -> ReplicatedApp: ...
    def encode_proposal(self, request: object, stamp_ms: int, proposer_id: int) -> bytes: ...
    def proposal_key(self, request: object, index: int, term: int) -> Hashable: ...
    def filler(self, n: int) -> object:
        """A harmless request, to grow the log (the simulator's staged scenarios)."""
        ...


class KVApp:
    """kv.py's state machine behind the ReplicatedApp protocol (no behaviour of its own)."""

    __slots__ = ("kv",)

    def __init__(self, kv: KVStateMachine) -> None:
        self.kv = kv

    @property
    def applied_index(self) -> int:
        return self.kv.applied_index

    @property
    def chain_hash(self) -> bytes:
        return self.kv.chain_hash

    def apply_entry(self, entry: Entry) -> AppAnswer | None:
        outcome: Applied | None = self.kv.apply(entry)
        if outcome is None:
            return None
        key = (outcome.command.client_id, outcome.command.seq)
        if outcome.expired:
            return AppAnswer(key, False, SESSION_EXPIRED, definite=False)
        if outcome.stale:
            return AppAnswer(key, False, "stale request", definite=False)
        return AppAnswer(key, True, outcome.result)

    def snapshot(self) -> bytes:
        return self.kv.snapshot()

    def state_hash(self) -> str:
        return self.kv.chain_hash.hex()  # the map is a function of the chained log

    def read(self, key: str) -> Any:
        return self.kv.read(key)


class KVAppKind:
    """`max_sessions`: the session table's size (dissertation §6.3); a workload with more
    clients than that sees sessions evicted and commands refused as expired."""

    name = "kv"

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions

    def restore(self, blob: bytes, index: int) -> ReplicatedApp:
        return KVApp(KVStateMachine.restore(blob, index, self.max_sessions))

    def encode_proposal(self, request: object, stamp_ms: int, proposer_id: int) -> bytes:
        assert isinstance(request, Command)
        return request.encode()  # the KV map has no clock: the stamp is not needed

    def proposal_key(self, request: object, index: int, term: int) -> Hashable:
        # Session dedup answers a retry from whichever copy applies first (§6.3).
        assert isinstance(request, Command)
        return (request.client_id, request.seq)

    def filler(self, n: int) -> object:
        # A session registration: it changes no key, and nonces 10**9+ are never a client's.
        return Command(0, 1_000_000_000 + n, REGISTER, "", None)


KV_APP: AppKind = KVAppKind()

"""The simulator's replicated state machine: a key-value map with read/write/cas.

Theory of operation: a NORMAL log entry carries one command, `[client_id, seq, op, key,
value]` as JSON. Applying it is deterministic. Commands are deduplicated by client session
(Raft dissertation §6.3) with the core's `SessionTable` (raftsched/raft/sessions.py): a
client first commits a `register` command, whose log index becomes its client id; then it
issues one command at a time with increasing `seq` and retries an uncertain one with the
same (client_id, seq). The table keeps the response of the unacknowledged seq, so a retry
applied twice in the log takes effect once and gets the first answer; a late duplicate of an
acknowledged seq is refused as stale, and a command of an unknown (evicted) session as
expired, neither applied.

The state machine also keeps a running chained hash of every applied entry (like
hashicorp/raft's fuzzy tests): two replicas that applied the same prefix have the same hash,
so comparing (applied_index, chain_hash) checks state machine safety cheaply. The hash is in
the snapshot so a replica restored from one continues the same chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack

from raftsched.app.chain import CHAIN_HASH_START, chain
from raftsched.raft.sessions import SessionExpiredError, SessionTable, StaleRequestError
from raftsched.raft.types import Entry, EntryKind

READ = "read"
WRITE = "write"
CAS = "cas"
REGISTER = "register"  # opens a client session; its entry's index is the client id
OPS = (READ, WRITE, CAS, REGISTER)
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Command:
    client_id: int
    seq: int
    op: str
    key: str
    value: Any  # WRITE: the value; CAS: [old, new]; READ: None
    # REGISTER has no session yet: client_id 0 and `seq` a nonce naming the request.

    def encode(self) -> bytes:
        return json.dumps([self.client_id, self.seq, self.op, self.key, self.value]).encode()

    @staticmethod
    def decode(data: bytes) -> Command:
        client_id, seq, op, key, value = json.loads(data)
        assert op in OPS, f"unknown op {op!r}"
        return Command(int(client_id), int(seq), str(op), str(key), value)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one NORMAL entry produced."""

    command: Command
    result: Any  # READ: value; WRITE: None; CAS: True if swapped
    duplicate: bool  # the session already had this (client_id, seq): result is the cached one
    stale: bool  # an old seq: refused, result None
    expired: bool = False  # no such session: refused, result None


class KVStateMachine:
    """A key-value map plus client sessions plus the chained hash of the applied log."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.data: dict[str, Any] = {}
        self.sessions = SessionTable(max_sessions)
        self.applied_index = 0
        self.chain_hash = CHAIN_HASH_START

    def apply(self, entry: Entry) -> Applied | None:
        """Apply the next entry; returns the outcome of a NORMAL entry, None otherwise."""
        assert entry.index == self.applied_index + 1, (
            f"applying {entry.index} after {self.applied_index}: entries must come in order"
        )
        self.applied_index = entry.index
        self.chain_hash = chain(self.chain_hash, entry)
        if entry.kind != EntryKind.NORMAL:
            return None
        command = Command.decode(entry.data)
        if command.op == REGISTER:
            self.sessions.register(entry.index, stamp=entry.index)
            return Applied(command, entry.index, duplicate=False, stale=False)
        try:
            hit = self.sessions.lookup(command.client_id, command.seq)
        except StaleRequestError:
            return Applied(command, None, duplicate=False, stale=True)
        except SessionExpiredError:
            return Applied(command, None, duplicate=False, stale=False, expired=True)
        if hit is not None:
            return Applied(command, json.loads(hit.response), duplicate=True, stale=False)
        result = self._execute(command)
        # One command at a time per client: this seq acknowledges every earlier one.
        self.sessions.record(
            command.client_id,
            command.seq,
            json.dumps(result).encode(),
            entry.index,
            first_unacked_seq=command.seq,
        )
        return Applied(command, result, duplicate=False, stale=False)

    def _execute(self, command: Command) -> Any:
        if command.op == WRITE:
            self.data[command.key] = command.value
            return None
        if command.op == CAS:
            old, new = command.value
            if self.data.get(command.key) == old:
                self.data[command.key] = new
                return True
            return False
        return self.data.get(command.key)  # a read through the log

    def read(self, key: str) -> Any:
        """A local read; linearizable only after a confirmed ReadIndex (§6.4)."""
        return self.data.get(key)

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        blob: bytes = msgpack.packb(
            {
                "data": sorted(self.data.items()),
                "sessions": self.sessions.snapshot(),
                "applied_index": self.applied_index,
                "chain_hash": self.chain_hash,
            },
            use_bin_type=True,
        )
        return blob

    @staticmethod
    def restore(blob: bytes, index: int, max_sessions: int = MAX_SESSIONS) -> KVStateMachine:
        """Rebuild from a snapshot taken at `index` (an empty blob: the empty state)."""
        kv = KVStateMachine(max_sessions)
        if not blob:
            assert index == 0, f"an empty snapshot must be at index 0, not {index}"
            return kv
        obj = msgpack.unpackb(blob, raw=False)
        assert obj["applied_index"] == index, "snapshot data and metadata disagree"
        kv.data = {str(key): value for key, value in obj["data"]}
        kv.sessions = SessionTable.restore(obj["sessions"])
        kv.applied_index = index
        kv.chain_hash = bytes(obj["chain_hash"])
        return kv

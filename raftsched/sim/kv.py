"""The simulator's replicated state machine: a key-value map with read/write/cas.

Theory of operation: a NORMAL log entry carries one command, `[client_id, seq, op, key,
value]` as JSON. Applying it is deterministic. Commands are deduplicated by client session
(Raft dissertation §6.3): each client issues one command at a time with increasing `seq` and
retries an uncertain one with the same (client_id, seq); the session remembers the last
applied seq and its response, so a retry applied twice in the log takes effect once and gets
the first answer, and a stale duplicate of an older seq is refused.

The state machine also keeps a running chained hash of every applied entry (like
hashicorp/raft's fuzzy tests): two replicas that applied the same prefix have the same hash,
so comparing (applied_index, chain_hash) checks state machine safety cheaply. The hash is in
the snapshot so a replica restored from one continues the same chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from raftsched.raft.types import Entry, EntryKind

READ = "read"
WRITE = "write"
CAS = "cas"
OPS = (READ, WRITE, CAS)

CHAIN_HASH_START = b"\x00" * 16


@dataclass(frozen=True, slots=True)
class Command:
    client_id: int
    seq: int
    op: str
    key: str
    value: Any  # WRITE: the value; CAS: [old, new]; READ: None

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


def chain(previous: bytes, entry: Entry) -> bytes:
    h = hashlib.blake2b(previous, digest_size=16)
    h.update(entry.index.to_bytes(8, "little"))
    h.update(entry.term.to_bytes(8, "little"))
    h.update(bytes((int(entry.kind),)))
    h.update(entry.data)
    return h.digest()


class KVStateMachine:
    """A key-value map plus client sessions plus the chained hash of the applied log."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sessions: dict[int, tuple[int, Any]] = {}  # client_id -> (last seq, response)
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
        session = self.sessions.get(command.client_id)
        if session is not None:
            last_seq, response = session
            if command.seq == last_seq:
                return Applied(command, response, duplicate=True, stale=False)
            if command.seq < last_seq:
                return Applied(command, None, duplicate=False, stale=True)
        result = self._execute(command)
        self.sessions[command.client_id] = (command.seq, result)
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
        return json.dumps(
            {
                "data": self.data,
                "sessions": [[cid, seq, resp] for cid, (seq, resp) in self.sessions.items()],
                "applied_index": self.applied_index,
                "chain_hash": self.chain_hash.hex(),
            },
            sort_keys=True,
        ).encode()

    @staticmethod
    def restore(blob: bytes, index: int) -> KVStateMachine:
        """Rebuild from a snapshot taken at `index` (an empty blob: the empty state)."""
        kv = KVStateMachine()
        if not blob:
            assert index == 0, f"an empty snapshot must be at index 0, not {index}"
            return kv
        obj = json.loads(blob)
        assert obj["applied_index"] == index, "snapshot data and metadata disagree"
        kv.data = dict(obj["data"])
        kv.sessions = {int(cid): (int(seq), resp) for cid, seq, resp in obj["sessions"]}
        kv.applied_index = index
        kv.chain_hash = bytes.fromhex(obj["chain_hash"])
        return kv

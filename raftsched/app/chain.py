"""The running chained hash of an applied log (hashicorp/raft's fuzzy tests do the same).

Two replicas that applied the same prefix of the log have the same chain hash, so comparing
(applied_index, chain_hash) checks state machine safety in O(1) per entry: the simulator's
invariant checker does it on every apply, a runtime can expose it in its status. Every entry
counts, whatever its kind (no-ops and configuration changes too).
"""

from __future__ import annotations

import hashlib
from typing import Final

from raftsched.raft.types import Entry

CHAIN_HASH_START: Final = b"\x00" * 16
"""The chain hash of the empty log (applied index 0)."""


def chain(previous: bytes, entry: Entry) -> bytes:
    """The chain hash after applying `entry` on top of a prefix whose hash is `previous`."""
    assert len(previous) == len(CHAIN_HASH_START), f"chain hash of {len(previous)} bytes"
    h = hashlib.blake2b(previous, digest_size=16)
    h.update(entry.index.to_bytes(8, "little"))
    h.update(entry.term.to_bytes(8, "little"))
    h.update(bytes((int(entry.kind),)))
    h.update(entry.data)
    return h.digest()


__all__ = ["CHAIN_HASH_START", "chain"]

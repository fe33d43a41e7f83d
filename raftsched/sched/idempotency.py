"""The idempotency table: key -> (command fingerprint, first result, expiry).

A command carrying an `idempotency_key` that is already in the table is not applied again: the
stored result is returned (SPEC §1 promise 4), whether it was an `Ok` or a `Refused`. The same
key with a different command (different fingerprint) is refused with `IdempotencyKeyReused`
rather than answered with an unrelated result.

Entries expire `Limits.idempotency_ttl_ms` after their creation on the state-machine clock. The
clock never goes backwards and the ttl is fixed, so insertion order is expiry order: the dict's
own order is the expiry queue, and evicting the oldest when the table is full
(`Limits.idempotency_max_entries`) is deterministic too. An OrderedDict, because popping the
front of a plain dict over and over makes finding the new front O(n) until it resizes.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from .commands import Command, command_kind, to_plain
from .result import Result


def fingerprint(cmd: Command) -> bytes:
    """16 bytes identifying the command apart from its idempotency key."""
    plain = to_plain(cmd)
    plain.pop("idempotency_key", None)
    text = json.dumps([command_kind(cmd), plain], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class IdempotencyTable:
    __slots__ = ("entries",)

    def __init__(self) -> None:
        # key -> (fingerprint, result, created_ms); insertion order is creation order.
        self.entries: OrderedDict[str, tuple[bytes, Result, int]] = OrderedDict()

    def get(self, key: str) -> tuple[bytes, Result] | None:
        entry = self.entries.get(key)
        return None if entry is None else (entry[0], entry[1])

    def put(self, key: str, fp: bytes, result: Result, now_ms: int, max_entries: int) -> None:
        assert key not in self.entries
        self.entries[key] = (fp, result, now_ms)
        while len(self.entries) > max_entries:
            self.entries.popitem(last=False)

    def expire(self, now_ms: int, ttl_ms: int) -> int:
        """Drop entries whose expiry (creation + ttl, the replicated setting) has come."""
        entries = self.entries
        removed = 0
        oldest_kept_ms = now_ms - ttl_ms
        while entries:
            key = next(iter(entries))
            if entries[key][2] > oldest_kept_ms:
                break
            entries.popitem(last=False)
            removed += 1
        return removed

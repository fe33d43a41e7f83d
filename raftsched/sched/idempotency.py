"""The idempotency table: key -> (command fingerprint, first answer, creation time).

A command carrying an `idempotency_key` that is already in the table is not applied again: the
stored answer is returned (SPEC §1 promise 4). The same key with a different command (different
fingerprint) is refused with `IdempotencyKeyReused` rather than answered with an unrelated
result.

A guarantee, not best effort (issue 7 defect 3): a key is remembered for its full window,
`Limits.idempotency_ttl_ms` after its creation on the state-machine clock. When the table holds
`Limits.idempotency_max_entries` live keys, a new keyed command is refused `overloaded` (429,
retry later) instead of evicting a live key, which would let a retry apply twice.

Transient refusals (429: a full queue, an overloaded cluster, too many workers or schedules)
are never stored: the retry the client makes later must be applied, not answered with the old
refusal for the window. Answers are stored compactly: a lease's grants keep ids and tokens only and
are rebuilt from the jobs when replayed (payloads are not copied into the table, so a keyed
lease of 1,000 large payloads does not double the snapshot).

The clock never goes backwards, so insertion order is creation order: a deque of the keys in
insertion order is the expiry queue (keys leave only from its front). The entries live in 64
dicts chosen by the key's hash, like the job table (job_table.py): the table holds up to a
million keys (the client keys every submit), and one dict of them would copy itself whole in
the single apply that makes it grow (37 ms at 699,051 keys, 100 ms at 1.4M).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .commands import Command, Lease, command_kind, to_plain
from .result import Ok, Refused, Result

if TYPE_CHECKING:
    from .state import Budget, SchedulerState

TRANSIENT_STATUS = 429
_COMPACT = "_compact"


def fingerprint(cmd: Command) -> bytes:
    """16 bytes identifying the command apart from its idempotency key."""
    plain = to_plain(cmd)
    plain.pop("idempotency_key", None)
    text = json.dumps([command_kind(cmd), plain], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def storable(result: Result) -> bool:
    """Whether a first answer is kept: not a transient refusal."""
    return not (isinstance(result, Refused) and result.error.http_status == TRANSIENT_STATUS)


def compact(cmd: Command, result: Result) -> Result:
    if isinstance(cmd, Lease) and isinstance(result, Ok):
        rows = [
            [g["job_id"], g["token"], g["lease_expires_at"], g["attempt"], g["max_attempts"]]
            for g in result.value["leases"]
        ]
        return Ok({_COMPACT: "lease", "rows": rows})
    return result


def expand(st: SchedulerState, stored: Result) -> Result:
    """The stored answer as the client first saw it (grants rebuilt from the jobs)."""
    if (
        not isinstance(stored, Ok)
        or not isinstance(stored.value, dict)
        or _COMPACT not in stored.value
    ):
        return stored
    grants: list[dict[str, Any]] = []
    for job_id, token, expires_ms, attempt, max_attempts in stored.value["rows"]:
        job = st.jobs.get(job_id)
        spec = job.spec if job is not None else None
        grants.append(
            {
                "job_id": job_id,
                "queue": spec.queue if spec else None,
                "payload": spec.payload if spec else None,
                "token": token,
                "lease_expires_at": expires_ms,
                "attempt": attempt,
                "max_attempts": max_attempts,
                "timeout_ms": spec.timeout_ms if spec else None,
                "tags": list(spec.tags) if spec else [],
            }
        )
    return Ok({"leases": grants})


_SHARD_BITS = 6
_MASK = (1 << _SHARD_BITS) - 1
Entry = tuple[bytes, Result, int]  # fingerprint, stored answer, created_ms


class IdempotencyTable:
    __slots__ = ("_order", "_shards")

    def __init__(self) -> None:
        self._shards: list[dict[str, Entry]] = [{} for _ in range(1 << _SHARD_BITS)]
        self._order: deque[str] = deque()  # keys in creation order: the expiry queue

    def __len__(self) -> int:
        return len(self._order)

    def get(self, key: str) -> tuple[bytes, Result] | None:
        entry = self._shards[hash(key) & _MASK].get(key)
        return None if entry is None else (entry[0], entry[1])

    def put(self, key: str, fp: bytes, result: Result, now_ms: int) -> None:
        shard = self._shards[hash(key) & _MASK]
        assert key not in shard
        shard[key] = (fp, result, now_ms)
        self._order.append(key)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every entry in creation order (the snapshot's order)."""
        shards = self._shards
        return ((key, shards[hash(key) & _MASK][key]) for key in self._order)

    def load(self, items: Iterable[tuple[str, Entry]]) -> None:
        """Fill an empty table from `items` in creation order (snapshot restore)."""
        assert not self._order
        for key, (fp, result, created_ms) in items:
            self.put(key, fp, result, created_ms)

    def oldest_created_ms(self) -> int | None:
        if not self._order:
            return None
        key = self._order[0]
        return self._shards[hash(key) & _MASK][key][2]

    def expire(self, now_ms: int, ttl_ms: int, budget: Budget) -> int:
        """Drop entries whose expiry (creation + ttl, the replicated setting) has come, one
        budget unit each."""
        order, shards = self._order, self._shards
        removed = 0
        oldest_kept_ms = now_ms - ttl_ms
        while order and budget.left > 0:
            key = order[0]
            shard = shards[hash(key) & _MASK]
            if shard[key][2] > oldest_kept_ms:
                break
            order.popleft()
            del shard[key]
            budget.left -= 1
            removed += 1
        return removed

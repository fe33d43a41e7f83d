"""Registered workers: capacity, liveness, incarnation and the jobs each one holds.

A worker is registered by a WorkerHeartbeat (capacity, queues, ttl_ms, optionally the worker
process's own `incarnation` string) and stays registered while clock < last_seen_ms + ttl_ms.
Leasing and lease heartbeats also refresh last_seen_ms: they are proof of life too. A Lease
from a worker that is not registered registers it implicitly with
`Limits.default_worker_capacity` and `Limits.default_worker_ttl_ms`.

Incarnations: each registration gets `incarnation` = the Raft index of the entry that made it
(unique, increasing). A registration that expired, or a heartbeat naming another incarnation
string (the worker process restarted), starts a new incarnation: the leases of the old one are
released at once (each counts as a failed attempt), since nobody runs them any more. A lease is
live only while its job is in the `leased` dict of the worker registered under its id, so a
late report from an old incarnation finds its lease released.

A worker's `queues` (when not empty) are the only queues it may lease from.

Expiry uses the worker index of the state (key `(index_ms, id)`): `index_ms` is where the
worker sits; refreshing last_seen_ms does not move it (that would cost two index updates per
complete), so when the key comes due and the worker was refreshed meanwhile, it is re-indexed
at its real expiry. `index_ms` is part of the snapshot, so a restored replica re-indexes on
exactly the same entries as the original and the due-work budget stays deterministic.
"""

from __future__ import annotations

from typing import Any

from .job import Job


class Worker:
    __slots__ = (
        "capacity",
        "id",
        "incarnation",
        "index_ms",
        "last_seen_ms",
        "leased",
        "process",
        "queues",
        "registered_ms",
        "ttl_ms",
    )

    def __init__(
        self,
        worker_id: str,
        capacity: int,
        queues: tuple[str, ...],
        ttl_ms: int,
        now_ms: int,
        *,
        incarnation: int = 0,
        process: str | None = None,
    ) -> None:
        self.id = worker_id
        self.capacity = capacity
        self.queues = queues
        self.ttl_ms = ttl_ms
        self.last_seen_ms = now_ms
        self.registered_ms = now_ms
        self.incarnation = incarnation
        self.process = process  # the worker's own incarnation string, if it sends one
        self.leased: dict[str, Job] = {}
        self.index_ms = 0  # time of this worker's key in the worker index

    @property
    def expires_ms(self) -> int:
        return self.last_seen_ms + self.ttl_ms

    def room(self) -> int:
        return max(0, self.capacity - len(self.leased))

    def may_lease(self, queue: str) -> bool:
        return not self.queues or queue in self.queues

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "capacity": self.capacity,
            "queues": list(self.queues),
            "ttl_ms": self.ttl_ms,
            "last_seen_at": self.last_seen_ms,
            "registered_at": self.registered_ms,
            "expires_at": self.expires_ms,
            "incarnation": self.incarnation,
            "process": self.process,
            "leased": list(self.leased),
        }

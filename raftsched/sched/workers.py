"""Registered workers: capacity, liveness and the jobs each one holds.

A worker is registered by a WorkerHeartbeat (capacity, queues, ttl_ms) and stays registered while
clock < last_seen_ms + ttl_ms. Leasing and lease heartbeats also refresh last_seen_ms: they are
proof of life too. A Lease from a worker that is not registered registers it implicitly with
`Limits.default_worker_capacity` and `Limits.default_worker_ttl_ms` (a worker agent that leases
before its first heartbeat still gets work; its capacity is still bounded).

When a registration expires the state machine releases all the worker's leases at once (SPEC §4
worker failover) and forgets the worker. `leased` is an insertion-ordered dict used as a set,
so releasing them happens in a deterministic order on every replica.
"""

from __future__ import annotations

from typing import Any

from .job import Job


class Worker:
    __slots__ = ("capacity", "heap_ms", "id", "last_seen_ms", "leased", "queues", "registered_ms",
                 "ttl_ms")

    def __init__(self, worker_id: str, capacity: int, queues: tuple[str, ...], ttl_ms: int,
                 now_ms: int) -> None:
        self.id = worker_id
        self.capacity = capacity
        self.queues = queues
        self.ttl_ms = ttl_ms
        self.last_seen_ms = now_ms
        self.registered_ms = now_ms
        self.leased: dict[str, Job] = {}
        self.heap_ms = 0  # time of this worker's entry in the expiry heap

    @property
    def expires_ms(self) -> int:
        return self.last_seen_ms + self.ttl_ms

    def room(self) -> int:
        return max(0, self.capacity - len(self.leased))

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "capacity": self.capacity,
            "queues": list(self.queues),
            "ttl_ms": self.ttl_ms,
            "last_seen_at": self.last_seen_ms,
            "registered_at": self.registered_ms,
            "expires_at": self.expires_ms,
            "leased": list(self.leased),
        }

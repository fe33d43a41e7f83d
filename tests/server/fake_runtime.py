"""A small in-process stand-in for the node Runtime, for unit tests of the HTTP API only.

It applies each proposed command to a real SchedulerState at the next index with the wall
clock as stamp (no Raft). Knobs: `role` / `leader_url` (follower behaviour), `raise_next`
(an exception the next propose / cluster operation raises once, e.g. Overloaded),
`no_leader` (read_barrier fails), `barrier_error` (read_barrier raises it, e.g. NotLeader to
make the API forward a read), `level_triggered` (wait_for_work returns at once while the
queue has pending jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from raftsched.sched import Command, Limits, Result, SchedulerState
from raftsched.server.api_runtime import HistogramSnapshot, RuntimeMetrics
from raftsched.server.errors import NoLeader, NotLeader


@dataclass
class FakeStatus:
    node_id: int
    role: str
    term: int
    leader_id: int | None
    leader_http_url: str | None
    commit_index: int
    applied_index: int
    members: list[dict[str, Any]] = field(default_factory=list)
    disk_healthy: bool = True
    shutting_down: bool = False


@dataclass
class FakeLimits:
    max_body_bytes: int = 1 << 20
    lease_wait_ms_max: int = 2_000
    max_long_polls: int = 100


@dataclass
class FakeConfig:
    auth: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    limits: FakeLimits = field(default_factory=FakeLimits)


class FakeRuntime:
    def __init__(self, config: FakeConfig | None = None, limits: Limits | None = None) -> None:
        self.node_id = 1
        self.config = config or FakeConfig()
        self._state = SchedulerState(limits)
        self.index = 0
        self.role = "leader"
        self.leader_id: int | None = 1
        self.leader_url: str | None = None
        self.raise_next: BaseException | None = None
        self.no_leader = False
        self.barrier_error: BaseException | None = None
        self.level_triggered = False
        self.disk_healthy = True
        self.shutting_down = False
        self.proposed: list[Command] = []
        self.barriers = 0
        self.waits = 0
        self._work = asyncio.Event()
        self.calls: list[tuple[str, Any]] = []

    @property
    def state(self) -> SchedulerState:
        return self._state

    def is_leader(self) -> bool:
        return self.role == "leader"

    def status(self) -> FakeStatus:
        return FakeStatus(
            self.node_id,
            self.role,
            3,
            self.leader_id,
            self.leader_url,
            self.index,
            self.index,
            disk_healthy=self.disk_healthy,
            shutting_down=self.shutting_down,
        )

    def _maybe_raise(self) -> None:
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc

    async def propose(self, command: Command) -> Result:
        self._maybe_raise()
        if self.role != "leader":
            if self.leader_id is None:
                raise NoLeader()
            raise NotLeader(self.leader_id, self.leader_url)
        self.proposed.append(command)
        self.index += 1
        result = self._state.apply(command, self.index, int(time.time() * 1000))
        self._work.set()
        self._work = asyncio.Event()
        return result

    async def read_barrier(self) -> None:
        self.barriers += 1
        if self.no_leader:
            raise NoLeader()
        if self.barrier_error is not None:
            raise self.barrier_error

    async def wait_for_work(self, queue: str, timeout_s: float) -> None:
        self.waits += 1
        queue_state = self._state.queues.get(queue)
        if self.level_triggered and queue_state is not None and queue_state.counts["pending"]:
            return  # like a runtime that wakes on "the queue has pending jobs"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout_s)

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> Any:
        self._maybe_raise()
        self.calls.append(("add_member", (node_id, peer_addr, http_url)))
        return {"node_id": node_id, "voter": False}

    async def remove_member(self, node_id: int) -> Any:
        self._maybe_raise()
        self.calls.append(("remove_member", node_id))

    async def transfer_leadership(self, to: int | None) -> Any:
        self._maybe_raise()
        self.calls.append(("transfer", to))

    async def snapshot_now(self) -> Any:
        self.calls.append(("snapshot", self.index))
        return {"index": self.index}

    async def backup(self) -> tuple[bytes | str, str]:
        self.calls.append(("backup", self.index))
        data = self._state.snapshot()
        return data, hashlib.sha256(data).hexdigest()

    def metrics_snapshot(self) -> RuntimeMetrics:
        return RuntimeMetrics(
            term=3,
            role=self.role,
            commit_index=self.index,
            applied_index=self.index,
            proposals_total={"committed": len(self.proposed)},
            fsync_seconds=HistogramSnapshot(buckets=((0.001, 2), (0.01, 3)), count=3, sum=0.012),
            peer_queue_bytes={2: 10, 3: 0},
        )

"""A small in-process stand-in for the node Runtime, for unit tests of the HTTP API only.

It applies each proposed command to a real SchedulerState at the next index with the wall
clock as stamp (no Raft). Knobs: `role` / `leader_url` (follower behaviour), `raise_next`
(an exception `propose` raises once, e.g. Overloaded), `no_leader` (read_barrier fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from raftsched.sched import Command, Result, SchedulerState
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


@dataclass
class FakeLimits:
    max_body_bytes: int = 1 << 20
    lease_wait_ms_max: int = 2_000


@dataclass
class FakeConfig:
    auth: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    limits: FakeLimits = field(default_factory=FakeLimits)


class FakeRuntime:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.node_id = 1
        self.config = config or FakeConfig()
        self._state = SchedulerState()
        self.index = 0
        self.role = "leader"
        self.leader_id: int | None = 1
        self.leader_url: str | None = None
        self.raise_next: BaseException | None = None
        self.no_leader = False
        self.proposed: list[Command] = []
        self.barriers = 0
        self._work = asyncio.Event()
        self.calls: list[tuple[str, Any]] = []

    @property
    def state(self) -> SchedulerState:
        return self._state

    def status(self) -> FakeStatus:
        return FakeStatus(
            self.node_id, self.role, 3, self.leader_id, self.leader_url, self.index, self.index
        )

    async def propose(self, command: Command) -> Result:
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
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

    async def wait_for_work(self, queue: str, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout_s)

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> Any:
        self.calls.append(("add_member", (node_id, peer_addr, http_url)))
        return {"node_id": node_id, "voter": False}

    async def remove_member(self, node_id: int) -> Any:
        self.calls.append(("remove_member", node_id))

    async def transfer_leadership(self, to: int | None) -> Any:
        self.calls.append(("transfer", to))

    async def snapshot_now(self) -> Any:
        return {"index": self.index}

    async def backup(self) -> Any:
        import hashlib

        data = self._state.snapshot()
        return data, hashlib.sha256(data).hexdigest()

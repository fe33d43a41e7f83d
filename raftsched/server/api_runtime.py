"""What the HTTP API needs from a node's runtime (raftsched/server/runtime.py), as Protocols.

The API depends on these shapes, not on the Runtime class, so the unit tests can drive it with a
small fake and the runtime can evolve behind them. Config fields are read with defaults
(`api_limits`, `api_tokens`) so a config without a field still serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from raftsched.sched import Command, Result, SchedulerState

DEFAULT_MAX_BODY_BYTES = 8 << 20
DEFAULT_LEASE_WAIT_MS_MAX = 30_000


class StatusLike(Protocol):
    node_id: int
    role: str
    term: int
    leader_id: int | None
    leader_http_url: str | None
    commit_index: int
    applied_index: int


class RuntimeLike(Protocol):
    node_id: int
    config: Any

    @property
    def state(self) -> SchedulerState: ...

    def status(self) -> Any: ...

    async def propose(self, command: Command) -> Result: ...

    async def read_barrier(self) -> None: ...

    async def wait_for_work(self, queue: str, timeout_s: float) -> None: ...

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> Any: ...

    async def remove_member(self, node_id: int) -> Any: ...

    async def transfer_leadership(self, to: int | None) -> Any: ...

    async def snapshot_now(self) -> Any: ...

    async def backup(self) -> Any: ...


def plain(value: Any) -> Any:
    """JSON-ready form of an answer: dataclasses become dicts, tuples lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def status_doc(runtime: RuntimeLike) -> dict[str, Any]:
    doc = plain(runtime.status())
    assert isinstance(doc, dict)
    return doc


def _limit(runtime: RuntimeLike, name: str, default: int) -> int:
    limits = getattr(runtime.config, "limits", None)
    value = getattr(limits, name, None)
    return value if isinstance(value, int) and value > 0 else default


def max_body_bytes(runtime: RuntimeLike) -> int:
    return _limit(runtime, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)


def lease_wait_ms_max(runtime: RuntimeLike) -> int:
    return _limit(runtime, "lease_wait_ms_max", DEFAULT_LEASE_WAIT_MS_MAX)


def auth_enabled(runtime: RuntimeLike) -> bool:
    return bool(getattr(runtime.config, "auth", False))


def token_roles(runtime: RuntimeLike) -> Mapping[str, str]:
    tokens = getattr(runtime.config, "tokens", None)
    return tokens if isinstance(tokens, Mapping) else {}

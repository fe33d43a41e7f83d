"""What the HTTP API needs from a node's runtime (raftsched/server/runtime.py), as Protocols.

The API depends on these shapes, not on the Runtime class, so the unit tests drive it with a
small fake (tests/server/fake_runtime.py) and the runtime can evolve behind them. The contract
each method keeps is written beside it; docs/api.md and /work/notes/interfaces.md repeat it.

Config fields are read with defaults (`auth`, `tokens`, `limits.max_body_bytes`,
`limits.lease_wait_ms_max`, `limits.max_long_polls`) so a config without a field still
serves; the runtime's `NodeConfig` (raftsched/server/config.py) owns them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from raftsched.sched import Command, Result, SchedulerState

DEFAULT_MAX_BODY_BYTES = 8 << 20
DEFAULT_LEASE_WAIT_MS_MAX = 30_000
DEFAULT_MAX_LONG_POLLS = 10_000  # lease requests waiting for work at once, per node


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A cumulative histogram: `buckets` are (upper bound, count of samples <= it), ascending,
    without +Inf (that is `count`)."""

    buckets: tuple[tuple[float, int], ...] = ()
    count: int = 0
    sum: float = 0.0


@dataclass(frozen=True, slots=True)
class RuntimeMetrics:
    """What `runtime.metrics_snapshot()` returns; /metrics renders it (metrics_http.py).

    Counters only grow over the life of the process. `proposals_total` is keyed by outcome
    (`committed`, `refused`: the state machine said no, `overloaded`, `outcome_unknown`,
    `not_leader`); `lease_expirations_total` counts leases released by expiry (their own or
    their worker's) as applied on this replica; `stamps_refused_total` leader stamps the state
    machine refused; `clock_skew_ms` this node's estimate of each peer's clock offset."""

    term: int
    role: str
    commit_index: int
    applied_index: int
    snapshot_index: int = 0
    proposals_total: Mapping[str, int] = field(default_factory=dict)
    proposals_in_flight: int = 0
    fsync_seconds: HistogramSnapshot = field(default_factory=HistogramSnapshot)
    peer_queue_bytes: Mapping[int, int] = field(default_factory=dict)
    peer_dropped_total: Mapping[int, int] = field(default_factory=dict)
    peer_connected: Mapping[int, bool] = field(default_factory=dict)
    lease_expirations_total: int = 0
    stamps_refused_total: int = 0
    clock_skew_ms: Mapping[int, float] = field(default_factory=dict)


class StatusLike(Protocol):
    """`runtime.status()`: this node's view, served as GET /v1/cluster (after `plain()`).

    Also expected (read with defaults): `leader_http_url: str | None`, `disk_healthy: bool`,
    `members: list of {node_id, voter, peer_addr, http_url, match_index, lag}` (lag and
    match_index known on the leader only; None elsewhere)."""

    node_id: int
    role: str  # "leader" | "follower" | "candidate" | "pre_candidate" | "learner"
    term: int
    leader_id: int | None
    commit_index: int
    applied_index: int


class RuntimeLike(Protocol):
    node_id: int
    config: Any

    @property
    def state(self) -> SchedulerState:
        """This replica's applied state. Read it only on the event loop, never across an await
        (the loop applies entries between awaits)."""
        ...

    def status(self) -> StatusLike: ...

    def is_leader(self) -> bool:
        """This node leads now (the cheap check of every forwarded request; `status()`
        builds the whole view)."""
        ...

    def metrics_snapshot(self) -> RuntimeMetrics: ...

    async def propose(self, command: Command) -> Result:
        """Returns once the entry is committed on a majority, fsynced and applied here, with the
        state machine's answer. Raises NotLeader (the API forwards), NoLeader, Overloaded (429),
        OutcomeUnknown (the entry may or may not apply), ShuttingDown. Raises nothing else
        for a command the parse functions accepted."""
        ...

    async def read_barrier(self) -> None:
        """Returns once `state` reflects every write acknowledged before the call (ReadIndex;
        on a follower the index comes from the leader). Raises NotLeader when this node cannot
        serve the read itself (the API forwards it to the leader), NoLeader, Overloaded,
        ShuttingDown."""
        ...

    async def wait_for_work(self, queue: str, timeout_s: float) -> None:
        """Returns when an applied entry may have made a job of `queue` leasable (a submit, a
        promotion, a release, a queue resumed), or after `timeout_s`. Must register its waiter
        before its first suspension, so a check of `state` right before the call cannot miss
        the wake-up. Spurious wake-ups are allowed."""
        ...

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> Any:
        """Add a learner, promoted to voter once caught up. ClusterRefused for a used id etc."""
        ...

    async def remove_member(self, node_id: int) -> Any: ...

    async def transfer_leadership(self, to: int | None) -> Any:
        """None: the most caught-up voter. ClusterRefused for an unknown or non-voter id."""
        ...

    async def snapshot_now(self) -> Any:
        """Snapshot this node's state now; returns e.g. {index, term, bytes}."""
        ...

    async def backup(self) -> tuple[bytes | str, str]:
        """A consistent snapshot file: (its bytes or its path, its sha256 hex)."""
        ...


_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain(value: Any) -> Any:
    """JSON-ready form of an answer: dataclasses become dicts, tuples lists, recursively.

    The exact types that answers are made of are tested first (on every answer: the
    dataclass and Mapping checks cost more than the copy itself)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
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


def max_long_polls(runtime: RuntimeLike) -> int:
    return _limit(runtime, "max_long_polls", DEFAULT_MAX_LONG_POLLS)


def auth_enabled(runtime: RuntimeLike) -> bool:
    """config.auth is already resolved by the config loader (on unless the HTTP address is
    loopback)."""
    return bool(getattr(runtime.config, "auth", False))


def token_roles(runtime: RuntimeLike) -> Mapping[str, str]:
    """sha256 hex of a token -> its role."""
    tokens = getattr(runtime.config, "tokens", None)
    return tokens if isinstance(tokens, Mapping) else {}

"""This node's view of itself: GET /v1/cluster (`status`) and /metrics (`metrics`).

The API reads `status()` twice per request (the X-Raft-Leader/X-Raft-Term headers, where the
leader is), so it stays cheap: the whole answer is reused while nothing it shows changed (role,
term, leader, commit, last and applied index, membership, addresses, snapshot, health) and it
is younger than STATUS_MAX_AGE_S (the leader's match indexes may move without any of those:
a follower catching up). A follower's member list is also reused across changes of the
indexes, until the membership or the known addresses change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from raftsched.raft.types import Membership, Role, Status

from .api_runtime import RuntimeMetrics
from .gc_policy import GcStats
from .stamp import ClockSampleLike

if TYPE_CHECKING:
    from .runtime import Runtime

STATUS_MAX_AGE_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class MemberStatus:
    node_id: int
    voter: bool
    peer_addr: str | None
    http_url: str | None
    match_index: int | None  # the leader's view; None on followers
    lag: int | None  # entries behind the leader's last index (leader only)


@dataclass(slots=True)
class GcView:
    """GcStats as GET /v1/cluster shows them (milliseconds, rounded)."""

    collections: list[int]
    max_pause_ms: list[float]
    freezes: int
    frozen_since_thaw: int
    thaws: int
    thaws_skipped: int
    last_thaw_ms: float
    thaw_found_total: int


def gc_view(stats: GcStats) -> GcView:
    return GcView(
        collections=list(stats.collections),
        max_pause_ms=[round(s * 1000, 2) for s in stats.max_pause_s],
        freezes=stats.freezes,
        frozen_since_thaw=stats.frozen_since_thaw,
        thaws=stats.thaws,
        thaws_skipped=stats.thaws_skipped,
        last_thaw_ms=round(stats.last_thaw_s * 1000, 2),
        thaw_found_total=stats.thaw_found_total,
    )


@dataclass(slots=True)
class RuntimeStatus:
    """This node's view (GET /v1/cluster; the API reads the StatusLike fields)."""

    node_id: int
    role: str
    term: int
    leader_id: int | None
    leader_http_url: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    members: list[MemberStatus] = field(default_factory=list)
    disk_healthy: bool = True
    fsync: str = "always"
    clock_ms: int = 0  # the state machine's clock (the largest stamp applied)
    clock_skew_ms: float = 0.0  # this node's wall clock minus the quorum median (leader)
    shutting_down: bool = False
    # The running hash of the applied log prefix (app/chain.py), hex: replicas at the same
    # applied_index applied the same entries iff their chain hashes agree.
    chain_hash: str = ""
    # The garbage collector under the node's policy (gc_policy.py); None when not managed.
    gc: GcView | None = None


class StatusView:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        # ((membership, address version, leading), built at, members)
        self._members_cache: tuple[tuple[Membership, int, bool], float, list[MemberStatus]] | None
        self._members_cache = None
        self._cache: tuple[tuple[Any, ...], float, RuntimeStatus] | None = None

    def status(self) -> RuntimeStatus:
        rt = self.rt
        if not rt.started:
            return RuntimeStatus(
                rt.node_id, "starting", 0, None, None, 0, 0, 0, 0, shutting_down=rt.shutting_down
            )
        core = rt.core
        key = (
            core.role,
            core.term,
            core.leader,
            core.log.committed,
            core.log.last_index(),
            rt.app.applied_index,
            core.membership,
            rt.directory.version,
            rt.snapshotter.index if rt.snapshotter is not None else 0,
            rt.disk_healthy,
            rt.shutting_down,
        )
        now = time.monotonic()
        cache = self._cache
        if cache is not None and cache[0] == key and now - cache[1] <= STATUS_MAX_AGE_S:
            return cache[2]
        status = self._build()
        self._cache = (key, now, status)
        return status

    def _build(self) -> RuntimeStatus:
        rt = self.rt
        st = rt.core.status()
        members = self._member_status(st)
        return RuntimeStatus(
            node_id=rt.node_id,
            role=st.role.value,
            term=st.term,
            leader_id=st.leader or None,
            leader_http_url=rt.directory.http_url(st.leader) if st.leader else None,
            commit_index=st.commit,
            applied_index=rt.app.applied_index,
            chain_hash=rt.app.chain_hash.hex(),
            last_index=st.last_index,
            snapshot_index=rt.snapshotter.index if rt.snapshotter is not None else 0,
            members=members,
            disk_healthy=rt.disk_healthy,
            fsync=rt.config.fsync,
            clock_ms=rt.app.state.clock_ms,
            clock_skew_ms=round(rt.clock.skew_ms, 1),
            shutting_down=rt.shutting_down,
            gc=gc_view(rt.gc_policy.stats) if rt.gc_policy is not None else None,
        )

    def _member_status(self, st: Status) -> list[MemberStatus]:
        """Members with addresses; cached until the membership or the addresses change, and
        on the leader (match indexes and lags move with every append) for at most
        STATUS_MAX_AGE_S."""
        is_leader = st.role is Role.LEADER
        directory = self.rt.directory
        key = (st.membership, directory.version, is_leader)
        now = time.monotonic()
        cache = self._members_cache
        if (
            cache is not None
            and cache[0] == key
            and (not is_leader or now - cache[1] <= STATUS_MAX_AGE_S)
        ):
            return cache[2]
        members = []
        for nid in sorted(st.membership.members):
            match = st.match.get(nid) if is_leader else None
            if is_leader and nid == self.rt.node_id:
                match = st.last_index
            info = directory.get(nid)
            members.append(
                MemberStatus(
                    node_id=nid,
                    voter=nid in st.membership.voters,
                    peer_addr=info.peer_addr_text if info is not None else None,
                    http_url=info.http_url if info is not None else None,
                    match_index=match,
                    lag=None if match is None else st.last_index - match,
                )
            )
        self._members_cache = (key, now, members)
        return members

    def metrics(self) -> RuntimeMetrics:
        rt = self.rt
        st = self.status()
        stats: Mapping[int, Any] = {}
        samples: Mapping[int, ClockSampleLike] = {}
        transport = rt.transport
        peer_stats = getattr(transport, "peer_stats", None)
        if callable(peer_stats):
            stats = peer_stats()
        if transport is not None and rt.started:
            samples = transport.clock_samples()
        return RuntimeMetrics(
            term=st.term,
            role=st.role,
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            snapshot_index=st.snapshot_index,
            proposals_total=dict(rt.counters.proposals),
            proposals_in_flight=len(rt.waiters.proposals),
            fsync_seconds=rt.fsync_histogram.snapshot(),
            peer_queue_bytes={p: s.queue_bytes for p, s in stats.items()},
            peer_dropped_total={p: s.dropped for p, s in stats.items()},
            peer_connected={p: s.connected for p, s in stats.items()},
            lease_expirations_total=rt.work.lease_expirations,
            stamps_refused_total=rt.stamps_refused(),
            clock_skew_ms={p: s.offset_ms for p, s in samples.items()},
        )

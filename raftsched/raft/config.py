"""Tunables of one Raft node. All times are in ticks; the runtime decides a tick's length."""

from __future__ import annotations

from dataclasses import dataclass

from .types import NodeId


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: NodeId
    # A follower that hears nothing for a random time in
    # [election_timeout_ticks, 2 * election_timeout_ticks) starts an election (§5.2).
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True  # dissertation §9.6: a partitioned node cannot disrupt on return
    check_quorum: bool = True  # a leader that cannot reach a majority steps down (§6.2)
    # Replication flow control (per follower).
    max_entries_per_append: int = 4096
    max_bytes_per_append: int = 1 << 20
    max_inflight_appends: int = 64
    # Proposals accepted but not yet persisted by the leader; beyond it ProposalDroppedError.
    max_unpersisted_proposals: int = 100_000
    # Snapshot transfer: bytes per InstallSnapshot chunk.
    snapshot_chunk_bytes: int = 1 << 20
    # Dissertation §4.2.1: PROMOTE a learner only once its match index is at most this many
    # entries behind the leader's last index; a far-behind new voter counts towards the
    # quorum while it catches up and can stall commits. 0: it must hold the whole log.
    max_promote_lag_entries: int = 1000

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {self.node_id}")
        if self.heartbeat_interval_ticks <= 0:
            raise ValueError("heartbeat_interval_ticks must be positive")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            raise ValueError("election_timeout_ticks must exceed heartbeat_interval_ticks")
        for name in (
            "max_entries_per_append",
            "max_bytes_per_append",
            "max_inflight_appends",
            "max_unpersisted_proposals",
            "snapshot_chunk_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_promote_lag_entries < 0:
            raise ValueError(
                f"max_promote_lag_entries must be >= 0, got {self.max_promote_lag_entries}"
            )

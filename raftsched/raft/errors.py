"""Errors the Raft core raises to its caller. Each names who is at fault.

Caller mistakes that the caller can act on (not the leader, a change already pending) are
exceptions of their own type. Broken invariants are `AssertionError`s and are never caught.
"""

from __future__ import annotations

from .types import NodeId


class RaftError(Exception):
    """Base of every error the Raft core raises on purpose."""


class NotLeaderError(RaftError):
    """The request needs the leader and this node is not it. `leader` is 0 when unknown."""

    def __init__(self, leader: NodeId, term: int) -> None:
        super().__init__(f"not the leader (leader hint: {leader or 'unknown'}, term {term})")
        self.leader = leader
        self.term = term


class ProposalDroppedError(RaftError):
    """The leader refuses proposals for now (a leadership transfer is under way, or the
    in-memory queue of unpersisted proposals is full). Retry later, possibly elsewhere."""


class MembershipChangeError(RaftError):
    """The membership change is refused: another change is still pending, the leader has not
    committed an entry of its term yet, the id was removed before, a learner to promote has
    not caught up yet (`RaftConfig.max_promote_lag_entries`), or the change is invalid."""


class TransferError(RaftError):
    """Leadership transfer refused: unknown or non-voting target, or a transfer in progress."""


class CompactedError(RaftError):
    """Storage: the requested index precedes the first retained entry (taken into a snapshot)."""


class UnavailableError(RaftError):
    """Storage: the requested index is past the last stored entry."""

"""The messages Raft nodes exchange. Frozen slotted dataclasses, dispatched with `match`,
built with keyword arguments only (a message's meaning must not hang on argument order).

Every message carries the sender's `term`, `src` and `dst`. A node that receives a message with
a higher term adopts that term first (§5.1), except for the PreVote exchange, which never
changes anyone's term (dissertation §9.6).

The wire encoding of each type lives in raftsched/wire; its type tags are fixed there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, Membership, NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries:
    """Leader -> follower: replicate `entries` after (prev_index, prev_term) (§5.3).

    `commit` is the leader's commit index, capped by the follower at its last new entry.
    An empty `entries` is a probe. Heartbeats are separate (`Heartbeat`) so that they
    stay cheap and carry read-index contexts.
    """

    term: int
    src: NodeId
    dst: NodeId
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesResponse:
    """Follower -> leader: the answer to an AppendEntries (or to a snapshot chunk whose
    entries the follower already holds). Sent only after the follower persisted what it
    acknowledges.

    Success: `match_index` is the last index the follower now holds durably in agreement
    with the leader. The rejection fields are all zero / False.

    Rejection (`success` False; `match_index` 0), exactly one of:
    - log mismatch (§5.3): `rejected_index` is the prev_index that did not match, so the
      leader can tell a stale rejection from a current one; `hint_index` is where the
      leader should probe next and `hint_term` the follower's term there (0 when the
      follower's log simply ends at `hint_index`). The optimisation at the end of §5.3.
    - `needs_snapshot`: the follower has no configuration yet (a brand-new node) and can
      only start from a snapshot, which carries one.
    - neither (`rejected_index` 0): the answer to a leader of an older term; only `term`
      matters (the stale leader steps down).
    """

    term: int
    src: NodeId
    dst: NodeId
    success: bool
    match_index: int = 0
    rejected_index: int = 0
    hint_index: int = 0
    hint_term: int = 0
    needs_snapshot: bool = False

    @property
    def stale_term_notice(self) -> bool:
        """A rejection that says only "your term is old"."""
        return not self.success and not self.needs_snapshot and self.rejected_index == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote:
    """Candidate -> voter (§5.2), or pre-candidate -> voter when `pre_vote` (diss. §9.6).

    For a pre-vote `term` is the term the sender would campaign in; nobody adopts it.
    `transfer` marks a campaign started by TimeoutNow (diss. §3.10): voters then grant even
    though they heard from a leader recently (it bypasses the CheckQuorum lease).
    """

    term: int
    src: NodeId
    dst: NodeId
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteResponse:
    term: int
    src: NodeId
    dst: NodeId
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Leader -> follower, every heartbeat interval. `commit` is min(leader commit, the
    follower's match index), so a follower never learns a commit index beyond what it holds.
    `context` is the highest read-index context the leader wants confirmed (0: none)."""

    term: int
    src: NodeId
    dst: NodeId
    commit: int
    context: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    """Follower -> leader: echoes `context`, proving the leader was still leader when it sent
    the heartbeat (ReadIndex, §6.4)."""

    term: int
    src: NodeId
    dst: NodeId
    context: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    """Leader -> follower: one chunk of a snapshot (§7). Chunks are sent in order; `offset`
    is the byte offset of `data` in the whole snapshot; `done` marks the last chunk.
    `membership` is the configuration in force at `snapshot_index`."""

    term: int
    src: NodeId
    dst: NodeId
    snapshot_index: int
    snapshot_term: int
    membership: Membership
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotResponse:
    """Follower -> leader: `next_offset` is the byte offset the follower expects next (after
    the last chunk: the snapshot's total size); `success` False means restart from 0."""

    term: int
    src: NodeId
    dst: NodeId
    snapshot_index: int
    next_offset: int
    success: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """Leader -> transfer target: start an election now, ignoring the election timer and
    the leader lease (diss. §3.10)."""

    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest:
    """Follower -> leader: please confirm a read index for my read `context` (§6.4)."""

    term: int
    src: NodeId
    dst: NodeId
    context: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResponse:
    """Leader -> follower: `index` is the confirmed read index for `context`; `index` 0
    means refused (the leader has not yet committed an entry of its term, or lost leadership)."""

    term: int
    src: NodeId
    dst: NodeId
    context: int
    index: int


Message = (
    AppendEntries
    | AppendEntriesResponse
    | RequestVote
    | RequestVoteResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    AppendEntries,
    AppendEntriesResponse,
    RequestVote,
    RequestVoteResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
)

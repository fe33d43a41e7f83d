"""Hypothesis strategies for valid Raft messages and records, shared by every test area.

Each strategy generates only values the codec must accept (`raft_codec.py` docstring): ids
positive, terms and indexes non-negative, memberships disjoint, AppendEntries entries
contiguous from prev_index + 1 with non-decreasing terms no newer than the message's term,
an AppendEntriesResponse either a success or exactly one kind of rejection.
Integers reach both ends of msgpack's range (0 and 2**64 - 1) so width bugs show up.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from raftsched.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftsched.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta

UINT64_MAX = (1 << 64) - 1

# Mostly small values (what real clusters send) plus the extremes.
uints = st.one_of(st.integers(0, 1000), st.integers(0, UINT64_MAX), st.just(UINT64_MAX))
positive_uints = st.one_of(st.integers(1, 1000), st.integers(1, UINT64_MAX))
node_ids = st.one_of(st.integers(1, 9), st.integers(1, UINT64_MAX))
small_bytes = st.binary(max_size=64)
entry_kinds = st.sampled_from(EntryKind)


@st.composite
def memberships(draw: st.DrawFn, max_ids: int = 12) -> Membership:
    ids = draw(st.lists(node_ids, unique=True, max_size=max_ids))
    # Deal the distinct ids into three disjoint roles.
    roles = draw(st.lists(st.sampled_from((0, 1, 2)), min_size=len(ids), max_size=len(ids)))
    return Membership(
        voters=frozenset(i for i, r in zip(ids, roles, strict=True) if r == 0),
        learners=frozenset(i for i, r in zip(ids, roles, strict=True) if r == 1),
        removed=frozenset(i for i, r in zip(ids, roles, strict=True) if r == 2),
    )


@st.composite
def entry_runs(
    draw: st.DrawFn,
    prev_index: int,
    prev_term: int,
    term: int,
    *,
    min_entries: int = 0,
    max_entries: int = 20,
) -> tuple[Entry, ...]:
    """Entries a leader in `term` may send after (prev_index, prev_term), in log order."""
    assert prev_term <= term
    count = draw(st.integers(min_entries, max_entries))
    if count and term == 0:
        return ()  # term 0 holds no entries (it is the empty log's sentinel)
    entries: list[Entry] = []
    last_term = max(prev_term, 1)
    for offset in range(count):
        entry_term = draw(st.integers(last_term, term))
        entries.append(
            Entry(entry_term, prev_index + 1 + offset, draw(entry_kinds), draw(small_bytes))
        )
        last_term = entry_term
    return tuple(entries)


@st.composite
def append_entries(draw: st.DrawFn, min_entries: int = 0, max_entries: int = 20) -> AppendEntries:
    # Entries need a term of at least 1 (term 0 is the empty log's sentinel).
    term = draw(st.integers(1, UINT64_MAX)) if min_entries else draw(uints)
    prev_term = draw(st.integers(0, term))
    # Leave room so the last entry's index stays within uint64.
    prev_index = draw(st.integers(0, UINT64_MAX - max_entries - 1))
    return AppendEntries(
        term=term,
        src=draw(node_ids),
        dst=draw(node_ids),
        prev_index=prev_index,
        prev_term=prev_term,
        entries=draw(
            entry_runs(
                prev_index, prev_term, term, min_entries=min_entries, max_entries=max_entries
            )
        ),
        commit=draw(uints),
    )


def _addressed(cls: type[Any], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, term=uints, src=node_ids, dst=node_ids, **fields)


MESSAGE_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    AppendEntries: append_entries(),
    AppendEntriesResponse: st.one_of(
        _addressed(AppendEntriesResponse, success=st.just(True), match_index=uints),
        _addressed(
            AppendEntriesResponse,
            success=st.just(False),
            rejected_index=positive_uints,
            hint_index=uints,
            hint_term=uints,
        ),
        _addressed(AppendEntriesResponse, success=st.just(False), needs_snapshot=st.just(True)),
        _addressed(AppendEntriesResponse, success=st.just(False)),  # a stale-term notice
    ),
    RequestVote: _addressed(
        RequestVote,
        last_index=uints,
        last_term=uints,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    RequestVoteResponse: _addressed(
        RequestVoteResponse, granted=st.booleans(), pre_vote=st.booleans()
    ),
    Heartbeat: _addressed(Heartbeat, commit=uints, context=uints),
    HeartbeatResponse: _addressed(HeartbeatResponse, context=uints),
    InstallSnapshot: _addressed(
        InstallSnapshot,
        snapshot_index=uints,
        snapshot_term=uints,
        membership=memberships(),
        offset=uints,
        data=small_bytes,
        done=st.booleans(),
    ),
    InstallSnapshotResponse: _addressed(
        InstallSnapshotResponse,
        snapshot_index=uints,
        next_offset=uints,
        success=st.booleans(),
    ),
    TimeoutNow: _addressed(TimeoutNow),
    ReadIndexRequest: _addressed(ReadIndexRequest, context=uints),
    ReadIndexResponse: _addressed(ReadIndexResponse, context=uints, index=uints),
}
assert set(MESSAGE_STRATEGIES) == set(MESSAGE_TYPES), "a strategy for every message type"


def messages() -> st.SearchStrategy[Message]:
    """Any valid Raft message."""
    return st.one_of(*MESSAGE_STRATEGIES.values())


hard_states = st.builds(HardState, term=uints, vote=st.one_of(st.just(0), node_ids), commit=uints)
snapshot_metas = st.builds(SnapshotMeta, index=uints, term=uints, membership=memberships())
standalone_entries = st.builds(
    Entry,
    term=st.integers(1, UINT64_MAX),
    index=st.integers(1, UINT64_MAX),
    kind=entry_kinds,
    data=small_bytes,
)

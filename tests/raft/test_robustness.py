"""Robustness: whatever a peer sends back - any term, any index, duplicated, stale or
nonsensical - the core answers or ignores it and never crashes, and the cluster still
works afterwards. (Messages that would make a follower overwrite a committed entry are
the one exception: they can only come from a broken leader, and the core stops on an
AssertionError rather than corrupt its log.)"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.raft.messages import (
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftsched.raft.types import Role

from .harness import Cluster

IDS = st.integers(-1, 6)
TERMS = st.integers(0, 4)
INDEXES = st.integers(-3, 30)

ADDRESSED = {"term": TERMS, "src": IDS, "dst": IDS}
BOOLS = st.booleans()

# Any field values, also combinations the codec refuses (mixed success and rejection).
RESPONSES: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        AppendEntriesResponse,
        **ADDRESSED,
        success=BOOLS,
        match_index=INDEXES,
        rejected_index=INDEXES,
        hint_index=INDEXES,
        hint_term=TERMS,
        needs_snapshot=BOOLS,
    ),
    st.builds(RequestVoteResponse, **ADDRESSED, granted=BOOLS, pre_vote=BOOLS),
    st.builds(HeartbeatResponse, **ADDRESSED, context=INDEXES),
    st.builds(
        InstallSnapshotResponse,
        **ADDRESSED,
        snapshot_index=INDEXES,
        next_offset=INDEXES,
        success=BOOLS,
    ),
    st.builds(ReadIndexRequest, **ADDRESSED, context=INDEXES),
    st.builds(ReadIndexResponse, **ADDRESSED, context=INDEXES, index=INDEXES),
    st.builds(TimeoutNow, **ADDRESSED),
    st.builds(
        RequestVote,
        **ADDRESSED,
        last_index=INDEXES,
        last_term=TERMS,
        pre_vote=BOOLS,
        transfer=BOOLS,
    ),
    st.builds(Heartbeat, **ADDRESSED, commit=INDEXES, context=INDEXES),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(RESPONSES, max_size=40))
def test_arbitrary_responses_never_crash(messages: list[Message]) -> None:
    cluster = Cluster(snapshot_chunk_bytes=2)
    cluster.elect(1)
    cluster.isolate(3)
    for i in range(5):
        cluster.propose(1, b"c%d" % i)
    cluster.stabilize()
    cluster.take_snapshot(1)
    cluster.heal()
    for m in messages:
        if m.dst in cluster.nodes:
            cluster.node(m.dst).step(m)
            cluster.process(m.dst)
    cluster.drop = lambda m: False
    cluster.tick(25)
    leader = cluster.leader()
    assert leader
    cluster.propose(leader, b"after")
    cluster.tick(5)
    for node_id in (1, 2, 3):
        assert cluster.commands(node_id)[-1:] == [b"after"]
    assert sum(n.role is Role.LEADER for n in cluster.nodes.values()) == 1

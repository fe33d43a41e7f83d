"""Dissertation §4.2.1: a learner is promoted to voter only once it has caught up.

A new voter that is far behind counts towards the quorum while it catches up, so promoting
it early can stall commits: with 4 voters a commit needs 3, and if one of them is the
laggard a single slow or failed old voter stops the cluster. The leader therefore refuses a
PROMOTE (MembershipChangeError) while the learner's match index is more than
`RaftConfig.max_promote_lag_entries` behind the leader's last index; the caller retries.
"""

from __future__ import annotations

import pytest

from raftsched.raft.config import RaftConfig
from raftsched.raft.errors import MembershipChangeError
from raftsched.raft.types import ConfChange, ConfChangeKind, Role

from .harness import Cluster

LAG = 5


def cluster_with_lagging_learner(behind: int) -> Cluster:
    """Voters 1-3 (1 leads), learner 4 cut off while `behind` entries were committed."""
    c = Cluster(max_promote_lag_entries=LAG)
    c.elect(1)
    c.add_node(4)
    c.node(1).propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    c.process(1)
    c.stabilize()
    assert c.node(4).role is Role.LEARNER
    c.isolate(4)
    for i in range(behind):
        c.propose(1, b"cmd%d" % i)
    c.stabilize()
    return c


def test_promote_of_a_far_behind_learner_is_refused_until_it_catches_up() -> None:
    c = cluster_with_lagging_learner(behind=LAG + 3)
    leader = c.node(1)
    status = leader.status()
    match_index = status.match[4]
    assert status.last_index - match_index == LAG + 3
    with pytest.raises(MembershipChangeError) as refused:
        leader.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4))
    message = str(refused.value)
    assert "learner 4" in message
    assert f"match index {match_index}" in message
    assert f"commit index {status.commit}" in message
    assert leader.membership.learners == {4}  # nothing was logged
    assert leader.log.last_index() == status.last_index
    # Once replication catches it up, the same request is accepted and commits.
    c.heal()
    c.tick(2)
    assert leader.status().match[4] == leader.log.last_index()
    leader.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4))
    c.process(1)
    c.stabilize()
    assert c.node(4).role is Role.FOLLOWER
    assert leader.membership.voters == {1, 2, 3, 4}


def test_promote_within_the_allowed_lag_is_accepted() -> None:
    c = cluster_with_lagging_learner(behind=LAG)
    leader = c.node(1)
    assert leader.status().last_index - leader.status().match[4] == LAG
    leader.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4))
    assert 4 in leader.membership.voters


def test_zero_lag_requires_the_whole_log() -> None:
    c = Cluster(max_promote_lag_entries=0)
    c.elect(1)
    c.add_node(4)
    c.node(1).propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, 4))
    c.process(1)
    c.stabilize()
    leader = c.node(1)
    assert leader.status().match[4] == leader.log.last_index()
    c.isolate(4)
    c.propose(1, b"one more")
    c.stabilize()
    with pytest.raises(MembershipChangeError, match="1 entries behind"):
        leader.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, 4))


def test_max_promote_lag_entries_is_validated() -> None:
    assert RaftConfig(1).max_promote_lag_entries > 0  # the default allows some lag
    assert RaftConfig(1, max_promote_lag_entries=0).max_promote_lag_entries == 0
    with pytest.raises(ValueError, match="max_promote_lag_entries"):
        RaftConfig(1, max_promote_lag_entries=-1)

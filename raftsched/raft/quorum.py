"""Majority math, as pure functions over plain values.

A value (a match index, a read round) is *committed by a quorum* when a majority of the
voters have reached it: sort the voters' values in descending order and take the one at
position quorum - 1. Votes are won once a majority granted and lost once a majority can no
longer be reached. Only voters count; learners never do (dissertation §4.2.1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from .types import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voter_count: int) -> int:
    """Votes needed for a majority of `voter_count` voters."""
    assert voter_count >= 0
    return voter_count // 2 + 1


def quorum_value(values: Iterable[int], voter_count: int) -> int:
    """The largest value that at least a majority of the `voter_count` voters have reached.

    `values` holds one value per voter (missing voters count as 0). With no voters the
    result is 0: nothing can be committed by an empty configuration.
    """
    if voter_count == 0:
        return 0
    ordered = sorted(values, reverse=True)
    position = quorum_size(voter_count) - 1
    return ordered[position] if position < len(ordered) else 0


def vote_result(voters: Iterable[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Outcome of an election among `voters`, given the responses received so far."""
    granted = rejected = total = 0
    for voter in voters:
        total += 1
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    quorum = quorum_size(total)
    if total and granted >= quorum:
        return VoteResult.WON
    if rejected > total - quorum or total == 0:
        return VoteResult.LOST
    return VoteResult.PENDING

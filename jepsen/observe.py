"""Looking at the cluster over HTTP: each node's GET /v1/cluster, the leader, convergence.

These reads are the harness's own (not history events): the nemesis uses them to aim at the
leader, the final phase to wait until every replica has caught up before comparing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .http_client import NodeApi

STATUS_TIMEOUT_S: Final = 1.0
POLL_INTERVAL_S: Final = 0.1


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: int
    role: str
    term: int
    leader_id: int | None
    commit_index: int
    applied_index: int

    @classmethod
    def parse(cls, doc: Any) -> NodeStatus | None:
        if not isinstance(doc, dict):
            return None
        try:
            leader = doc.get("leader_id")
            return cls(
                node_id=int(doc["node_id"]),
                role=str(doc["role"]),
                term=int(doc["term"]),
                leader_id=int(leader) if leader else None,
                commit_index=int(doc["commit_index"]),
                applied_index=int(doc["applied_index"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


async def status(
    api: NodeApi, node_id: int, timeout_s: float = STATUS_TIMEOUT_S
) -> NodeStatus | None:
    outcome = await api.call(node_id, "GET", "/v1/cluster", role="read", timeout_s=timeout_s)
    return NodeStatus.parse(outcome.body) if outcome.verdict == "ok" else None


async def statuses(api: NodeApi, nodes: Sequence[int]) -> dict[int, NodeStatus]:
    found = await asyncio.gather(*(status(api, n) for n in nodes))
    return {n: s for n, s in zip(nodes, found, strict=True) if s is not None}


async def leader(api: NodeApi, nodes: Sequence[int]) -> int | None:
    """The node that says it leads in the highest term among the answers, if any."""
    leaders = [s for s in (await statuses(api, nodes)).values() if s.role == "leader"]
    if not leaders:
        return None
    return max(leaders, key=lambda s: s.term).node_id


async def wait_converged(
    api: NodeApi, nodes: Sequence[int], timeout_s: float
) -> dict[int, NodeStatus] | None:
    """Until every node answers, all agree on one leader that says it leads, and every node
    has applied the leader's commit index: the statuses, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = await statuses(api, nodes)
        if len(seen) == len(nodes):
            leader_ids = {s.leader_id for s in seen.values()}
            lead = next((s for s in seen.values() if s.role == "leader"), None)
            if (
                lead is not None
                and leader_ids == {lead.node_id}
                and all(s.applied_index >= lead.commit_index for s in seen.values())
            ):
                return seen
        await asyncio.sleep(POLL_INTERVAL_S)
    return None

"""Replicas converge (SPEC §8: all replicas converge to the same state hash).

The runner asks every node for (applied_index, state_hash) after heal ("state-hash" ops, ok
value {"node", "applied_index", "state_hash"}). The state machine is deterministic, so:
  - two reports at the same applied index must carry the same hash (safety: any difference
    means replicas applied different entries or apply is not deterministic), and the same
    chain hash of the applied log prefix when the report has one ("chain_hash": a
    difference means the logs themselves differ);
  - the nodes must have caught up: there must be one applied index at which every node that
    answered reported a hash (the runner polls until they meet; if they never met, the
    replicas did not converge within its wait).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from jepsen.history import Op

from .jobs import pairs_of
from .result import CheckResult

__all__ = ["check_convergence"]


def _diverged(
    by_index: dict[int, dict[str, list[tuple[int, list[int]]]]], *, what: str
) -> list[dict[str, Any]]:
    """Applied indexes at which the nodes reported more than one hash."""
    diverged: list[dict[str, Any]] = []
    for index, digests in sorted(by_index.items()):
        if len(digests) > 1:
            diverged.append(
                {
                    "what": what,
                    "applied_index": index,
                    "hashes": {d: sorted({n for n, _ in who}) for d, who in digests.items()},
                    "ops": sorted(line for who in digests.values() for _, ls in who for line in ls),
                }
            )
    return diverged


def check_convergence(ops: Sequence[Op]) -> CheckResult:
    reports: list[tuple[int, int, str, list[int]]] = []  # (node, index, hash, ops)
    chains: list[tuple[int, int, str, list[int]]] = []  # (node, index, chain hash, ops)
    for pair in pairs_of(ops):
        if pair.f != "state-hash" or not pair.ok:
            continue
        node, index, digest = (
            pair.result("node"),
            pair.result("applied_index"),
            pair.result("state_hash"),
        )
        if isinstance(node, int) and isinstance(index, int) and isinstance(digest, str):
            reports.append((node, index, digest, pair.ops()))
            chain = pair.result("chain_hash")
            if isinstance(chain, str):
                chains.append((node, index, chain, pair.ops()))
    if not reports:
        return CheckResult(valid=None, message="no state-hash reports in the history")
    by_index: dict[int, dict[str, list[tuple[int, list[int]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    indexes_of: dict[int, set[int]] = defaultdict(set)
    for node, index, digest, lines in reports:
        by_index[index][digest].append((node, lines))
        indexes_of[node].add(index)
    diverged = _diverged(by_index, what="state")
    chains_by_index: dict[int, dict[str, list[tuple[int, list[int]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for node, index, chain, lines in chains:
        chains_by_index[index][chain].append((node, lines))
    diverged += _diverged(chains_by_index, what="log (chain hash)")
    common = set.intersection(*indexes_of.values())
    last = {node: max(indexes) for node, indexes in sorted(indexes_of.items())}
    details: dict[str, Any] = {
        "nodes": sorted(indexes_of),
        "reports": len(reports),
        "last_applied_index": last,
        "common_indexes": sorted(common)[-5:],
        "diverged": diverged[:20],
    }
    if diverged:
        first = diverged[0]
        return CheckResult(
            valid=False,
            message=f"replicas diverged at {len(diverged)} applied index(es); first "
            f"{first['what']} at {first['applied_index']}: {first['hashes']}",
            details=details,
        )
    if not common:
        return CheckResult(
            valid=False,
            message=f"nodes never reported a hash at one common applied index: last {last}",
            details=details,
        )
    if len(indexes_of) < 2:
        return CheckResult(
            valid=None, message="only one node reported a state hash", details=details
        )
    return CheckResult(
        valid=True,
        message=f"{len(indexes_of)} node(s) agree at applied index {max(common)}",
        details=details,
    )

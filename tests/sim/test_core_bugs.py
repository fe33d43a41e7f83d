"""Known Raft core bugs found by the simulator, pinned as strict expected failures.

Each test is the smallest reproduction we have. When the core is fixed the test passes,
strict xfail turns that into a failure, and the marker must be removed: the reproduction
then guards against regressions.
"""

from __future__ import annotations

import pytest

from raftsched.sim.run import SimConfig, run_seed


@pytest.mark.xfail(
    strict=True,
    reason=(
        "core liveness bug: with every message reordered (UDP-like links), leader 2 of term 3 "
        "and follower 4 livelock: the leader pipelines 2-entry appends, the follower (log and "
        "commit at 24) rejects the ones that overtake prev=24 with hint 24, the leader drops "
        "back to PROBE, then a late success for an old probe (answered match=24 by the "
        "prev_index < commit shortcut) flips it to REPLICATE and it pipelines again; the "
        "follower never gets past 24 and ~120 messages per node and tick flow for ever"
    ),
)
def test_pipelined_appends_survive_reordering() -> None:
    result = run_seed(SimConfig(seed=121, nodes=3, fifo_links=False))
    assert result.ok, result.violations

"""Raft must stay safe and live when every message may overtake any other (UDP-like links).

The default simulated network is FIFO per link, like the TCP transport; `fifo_links=False`
reorders everything. An earlier run of this very configuration found a leader/follower
livelock (the leader re-pipelining the same old appends to a catching-up joiner at >100
messages per node and tick), so it stays under test.
"""

from __future__ import annotations

from raftsched.sim.run import SimConfig, run_seed


def test_unordered_links_keep_every_invariant() -> None:
    for seed in range(1, 31):
        result = run_seed(SimConfig(seed=seed, nodes=3, fifo_links=False))
        assert result.ok, f"seed {seed}: {result.violations}"
        assert result.linearizable

"""The wire codec against the real core's traffic: every message the simulator delivers, in
runs with faults, membership changes and snapshots, is encoded and strictly decoded on the way.

The strict decoder refuses more than malformed bytes (non-contiguous entries, entry terms
above the message's term, ...). This proves those rules never refuse a message a correct
core sends, and that decode(encode(m)) == m for all of them.
"""

from __future__ import annotations

from collections import Counter

import pytest

from raftsched.raft.messages import Message
from raftsched.sim.network import Network
from raftsched.sim.run import SimConfig, run_seed
from raftsched.wire.raft_codec import decode_message, encode_message


@pytest.mark.parametrize(("nodes", "seeds"), [(3, range(1, 21)), (5, range(1, 11))])
def test_every_simulated_message_survives_the_codec(
    monkeypatch: pytest.MonkeyPatch, nodes: int, seeds: range
) -> None:
    seen: Counter[str] = Counter()
    original = Network._arrive

    def arrive_through_the_wire(self: Network, msg: Message) -> None:
        decoded = decode_message(encode_message(msg))
        assert decoded == msg, f"round trip changed {msg!r} into {decoded!r}"
        seen[type(msg).__name__] += 1
        original(self, decoded)

    monkeypatch.setattr(Network, "_arrive", arrive_through_the_wire)
    for seed in seeds:
        result = run_seed(SimConfig(seed=seed, nodes=nodes))
        assert result.ok, f"seed {seed}: {result.violations}"
    # The runs exercised the whole protocol, snapshots included.
    for kind in (
        "AppendEntries",
        "AppendEntriesResponse",
        "RequestVote",
        "RequestVoteResponse",
        "Heartbeat",
        "HeartbeatResponse",
        "InstallSnapshot",
        "InstallSnapshotResponse",
        "ReadIndexRequest",
        "ReadIndexResponse",
        "TimeoutNow",
    ):
        assert seen[kind] > 0, f"no {kind} went through the codec: {dict(seen)}"

"""Many simulator seeds against the real Raft core: every invariant must hold in every run.

The seeds are split in chunks so a failure names a small range; the failing seed and the
command that replays it are in the assertion message.
"""

from __future__ import annotations

import pytest

from raftsched.sim.clients import Workload
from raftsched.sim.node_host import HostTimings
from raftsched.sim.run import RunResult, SimConfig, run_seed

SEEDS_PER_CHUNK = 20
CHUNKS = 2  # 40 seeds per cluster size in CI; long campaigns: scripts/sim --seeds 2000


def _failures(results: list[RunResult]) -> list[str]:
    return [
        f"seed {r.seed} ({r.nodes} nodes): {r.violations[0]}\n"
        f"  replay: scripts/sim --seed {r.seed} --nodes {r.nodes} --verbose"
        for r in results
        if not r.ok
    ]


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_seeds_hold_every_invariant(nodes: int, chunk: int) -> None:
    first = 1 + chunk * SEEDS_PER_CHUNK
    results = [
        run_seed(SimConfig(seed=seed, nodes=nodes))
        for seed in range(first, first + SEEDS_PER_CHUNK)
    ]
    assert not _failures(results), "\n".join(_failures(results))
    # The runs did real work: the faults and the workload are not vacuous.
    assert sum(r.operations for r in results) > 50 * SEEDS_PER_CHUNK
    assert sum(r.faults_injected for r in results) > 5 * SEEDS_PER_CHUNK
    assert all(r.linearizable for r in results)
    assert sum(r.elections for r in results) > 2 * SEEDS_PER_CHUNK
    # The quiet phase ran (no campaign in it) and transfers were checked.
    assert all(
        "quiet" not in r.campaigns or r.campaigns["quiet"]["pre-votes"] == 0 for r in results
    )
    assert sum(r.campaigns.get("transfer", {}).get("votes", 0) for r in results) > 0


@pytest.mark.parametrize(
    ("topology", "serial_host"),
    [("1-voter", False), ("2-voters", False), ("voters", True), ("1-voter", True)],
)
def test_small_topologies_and_the_serial_host(topology: str, serial_host: bool) -> None:
    """1 voter + learners (the voter elects itself alone) and 2 voters, with the default
    pipelined host and the serial one."""
    results = [
        run_seed(
            SimConfig(
                seed=seed,
                topology=topology,
                timings=HostTimings(pipelined=not serial_host),
            )
        )
        for seed in range(1, 16)
    ]
    assert not _failures(results), "\n".join(_failures(results))
    assert sum(r.operations for r in results) > 30 * len(results)


def test_more_clients_than_the_session_table_holds() -> None:
    """Six clients, three sessions (dissertation §6.3): registrations evict each other, an
    evicted session's command is refused as expired (recorded as unknown), and every run
    still holds every invariant and is linearizable."""
    expired = 0
    for seed in range(1, 9):
        config = SimConfig(seed=seed, workload=Workload(clients=6, max_sessions=3))
        result = run_seed(config)
        assert result.ok and not result.unknown, (seed, result.violations[:3])
        expired += result.expired_sessions
    assert expired > 0

"""The whole harness on real node processes: a short safe run passes every check, and the
same harness catches a deliberately broken server (SPEC §8: the harness proves it can fail).

Each run starts its own 3-node cluster on free ports under tmp_path and stops every pid
before run_test returns (Cluster.stop in a finally); the asserts below check that too.
About 25-30 s each on an idle 2-core machine; the ack_before_fsync test (marked slow) about
90 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jepsen.history import NEMESIS_PROCESS, read_history
from jepsen.runner import RunOptions, RunResult, run_test
from tests.jepsen.pids import pid_gone


def run(options: RunOptions) -> RunResult:
    return asyncio.run(run_test(options))


def assert_every_node_stopped(result: RunResult) -> None:
    nodes = result.meta["cluster"]["nodes"]
    assert nodes, "no node recorded"
    for node_id, node in nodes.items():
        assert pid_gone(node["pid"]), f"node {node_id} (pid {node['pid']}) still runs"


def test_smoke_run_with_kills_and_partitions_passes_every_check(tmp_path: Path) -> None:
    result = run(
        RunOptions(
            out_dir=tmp_path,
            nodes=3,
            time_s=22,
            nemesis="kill,partition",
            seed=11,
            fault_s=3,
            heal_s=3,
        )
    )
    assert_every_node_stopped(result)
    ops = read_history(result.history_path)
    faults = {op.f for op in ops if op.process == NEMESIS_PROCESS}
    assert {"kill", "start", "partition", "heal"} <= faults, faults
    clients = [op for op in ops if isinstance(op.process, int)]
    assert sum(op.type == "ok" for op in clients) > 100, "the workload hardly ran"
    assert {op.f for op in ops if op.process == "final"} == {"final-read", "state-hash"}
    report = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "index.html").exists()
    failed = {
        name: check["message"]
        for name, check in result.check_report["checks"].items()
        if check["valid"] is not True
    }
    assert result.valid, f"checks: {failed}, harness: {result.problems}, report: {tmp_path}"
    assert report["valid"] is True
    assert result.meta["exit_codes"] == {1: 0, 2: 0, 3: 0}, "SIGTERM must stop nodes cleanly"


def test_stale_reads_behind_an_isolated_leader_are_caught(tmp_path: Path) -> None:
    """[unsafe] stale_reads: reads skip ReadIndex. With the leader cut off, it and the
    other side both serve reads; the isolated side's reads miss writes acknowledged by the
    majority, and the checkers must call the run invalid."""
    result = run(
        RunOptions(
            out_dir=tmp_path,
            nodes=3,
            time_s=20,
            nemesis="partition:isolate-leader",
            unsafe=frozenset({"stale_reads"}),
            seed=5,
            fault_s=4,
            heal_s=2,
        )
    )
    assert_every_node_stopped(result)
    checks = result.check_report["checks"]
    assert result.check_report["valid"] is False, f"stale reads went unnoticed: {tmp_path}"
    assert checks["linearizable"]["valid"] is False, checks["linearizable"]["message"]
    isolations = [
        op
        for op in read_history(result.history_path)
        if op.f == "partition" and op.value["kind"] == "isolate-leader"
    ]
    assert len(isolations) >= 3
    assert not result.valid


@pytest.mark.slow
def test_acks_before_fsync_lose_writes_after_a_power_cut(tmp_path: Path) -> None:
    """[unsafe] ack_before_fsync: followers acknowledge entries before syncing them. Node 1
    has a fast disk, nodes 2 and 3 a slow one (200 ms per fsync), every node loses unsynced
    writes on kill -9 (power-loss failpoint), and kill:all-after-ack cuts the power of the
    whole cluster right after a write is acknowledged, bringing the old leader back last.
    The followers then elect from what they had synced, and acknowledged writes vanish.
    About 90 s (the broken cluster never converges: every wait runs to its deadline)."""
    result = run(
        RunOptions(
            out_dir=tmp_path,
            nodes=3,
            time_s=20,
            nemesis="kill:all-after-ack",
            unsafe=frozenset({"ack_before_fsync"}),
            power_loss=True,
            fsync_delay_ms=200,
            fsync_delay_nodes=frozenset({2, 3}),
            clients=10,
            rate=100,
            seed=31,
            fault_s=1,
            heal_s=3,
            converge_timeout_s=15,
            drain_timeout_s=15,
        )
    )
    assert_every_node_stopped(result)
    checks = result.check_report["checks"]
    safety = ("linearizable", "no-lost-jobs", "no-double-completion", "tokens-increase")
    caught = [name for name in safety if checks[name]["valid"] is False]
    assert caught, f"acknowledged-but-unsynced writes went unnoticed: {tmp_path}"
    assert not result.valid

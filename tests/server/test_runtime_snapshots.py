"""Snapshots on real processes: taken by threshold (state serialized in a forked child),
compaction, a follower that fell behind the compacted log catches up by InstallSnapshot, a
whole-cluster restart recovers from snapshot + log, and POST /v1/cluster/snapshot."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.procs import LocalCluster
from tests.server.test_faults import _all_up, _assert_all_present

SNAPSHOT_ARGS = (
    "--set",
    "raft.snapshot_entries=40",
    "--set",
    "raft.snapshot_keep_entries=5",
    "--set",
    "raft.snapshot_fork_min_jobs=1",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("snapshots"), nodes=3, extra_args=SNAPSHOT_ARGS) as c:
        c.wait_for_leader(timeout_s=30)
        yield c


def test_lagging_follower_catches_up_from_a_snapshot(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    lagging = cluster.followers(leader)[0]
    cluster.kill(lagging)
    ids = set()
    for i in range(120):
        res = cluster.post(leader, "/v1/jobs", {"id": f"s{i}", "queue": "snap"})
        assert res.status == 201, res.body
        ids.add(f"s{i}")
    st = cluster.status(leader)
    assert st is not None and st["snapshot_index"] >= 80, st
    assert "(forked child)" in cluster.log_path(leader).read_text()
    cluster.start_node(lagging)
    cluster.wait_until(
        "the lagging node to restore a snapshot",
        lambda: (
            "restoring the state machine from a snapshot" in cluster.log_path(lagging).read_text()
        ),
        30,
    )
    _assert_all_present(cluster, ids, queue="snap")
    # Restart everything: state comes back from snapshot + log on every node.
    for node in cluster.nodes:
        cluster.kill(node)
    for node in cluster.nodes:
        cluster.start_node(node)
    cluster.wait_for_leader(timeout_s=30)
    _assert_all_present(cluster, ids, queue="snap")


def test_snapshot_now(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    assert cluster.post(leader, "/v1/jobs", {"id": "one-more", "queue": "snap"}).status == 201
    res = cluster.post(leader, "/v1/cluster/snapshot")
    assert res.status == 200, res.body
    st = cluster.status(leader)
    assert st is not None and res.body["snapshot"]["index"] == st["snapshot_index"]


def test_backup_restores_into_a_new_cluster(cluster: LocalCluster, tmp_path: Path) -> None:
    follower = cluster.followers(cluster.wait_for_leader())[0]
    cluster.wait_until(f"node {follower} serving", lambda: cluster.status(follower))
    req = urllib.request.Request(cluster.url(follower) + "/v1/cluster/backup")
    with urllib.request.urlopen(req, timeout=30) as resp:
        blob, sha = resp.read(), resp.headers["X-Backup-Sha256"]
    assert hashlib.sha256(blob).hexdigest() == sha
    backup = tmp_path / "cluster.backup"
    backup.write_bytes(blob)
    fresh = LocalCluster(tmp_path / "restored", nodes=3)
    for node in fresh.nodes:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "raftsched.cli",
                "restore",
                "--backup",
                str(backup),
                "--sha256",
                sha,
                "--node-id",
                str(node),
                "--data-dir",
                str(fresh.files.data_dir(node)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert f"node {node} of cluster 1" in res.stdout
    # A second restore into a used data dir is refused; so is a wrong checksum.
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftsched.cli",
            "restore",
            "--backup",
            str(backup),
            "--sha256",
            "0" * 64,
            "--node-id",
            "1",
            "--data-dir",
            str(tmp_path / "other"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1 and "does not match" in again.stderr
    with fresh:
        fresh.wait_for_leader(timeout_s=30)
        _all_up(fresh)  # every node knows the leader: a read may go to any of them
        _assert_all_present(fresh, {f"s{i}" for i in range(120)}, queue="snap")

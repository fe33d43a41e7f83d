"""A real 3-node cluster (separate processes, TCP, fsync): leader election, submits through the
leader and a follower, linearizable reads everywhere, clean SIGTERM, restart with state kept.

One cluster is shared by the module's tests (CI time); each test leaves it fully running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.procs import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base: Path = tmp_path_factory.mktemp("cluster3")
    with LocalCluster(base, nodes=3) as c:
        c.wait_for_leader(timeout_s=30)
        yield c


def _job(job_id: str) -> dict[str, object]:
    return {"id": job_id, "queue": "default", "payload": {"cmd": ["echo", job_id]}}


def test_submit_through_leader_and_follower_is_readable_everywhere(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = cluster.followers(leader)[0]
    for node, job_id in ((leader, "via-leader"), (follower, "via-follower")):
        res = cluster.post(node, "/v1/jobs", _job(job_id))
        assert res.status == 201, (res.status, res.body, cluster.logs())
        assert res.body["job"]["id"] == job_id
        assert res.headers.get("X-Raft-Leader") == str(leader)
    for node in cluster.running():
        for job_id in ("via-leader", "via-follower"):
            res = cluster.get(node, f"/v1/jobs/{job_id}")
            assert res.status == 200, (node, res.status, res.body)
            assert res.body["id"] == job_id and res.body["state"] == "pending"


def test_cluster_view_lists_members_with_addresses(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    doc = cluster.get(leader, "/v1/cluster").body
    assert doc["role"] == "leader" and doc["leader_id"] == leader
    assert {m["node_id"] for m in doc["members"]} == {1, 2, 3}
    assert all(m["voter"] and m["peer_addr"] and m["http_url"] for m in doc["members"])
    assert doc["applied_index"] <= doc["commit_index"]


def test_sigterm_leader_exits_cleanly_and_restart_keeps_state(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    res = cluster.post(leader, "/v1/jobs", _job("before-restart"))
    assert res.status == 201
    assert cluster.terminate(leader) == 0, cluster.logs()
    new_leader = cluster.wait_for_leader(not_=leader)
    assert "transferring leadership" in cluster.log_path(leader).read_text()
    cluster.start_node(leader)
    cluster.wait_until(
        f"node {leader} to catch up",
        lambda: (
            (st := cluster.status(leader)) is not None
            and st.get("leader_id") == new_leader
            and cluster.get(leader, "/v1/jobs/before-restart").status == 200
        ),
    )

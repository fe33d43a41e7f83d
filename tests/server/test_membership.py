"""Membership on real processes while clients submit: grow 3 -> 5 (learner, then promoted once
caught up), shrink back to 3, transfer leadership under load. Nothing acknowledged is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.procs import LocalCluster
from tests.server.test_faults import Submitters, _assert_all_present


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("membership"), nodes=3) as c:
        c.wait_for_leader(timeout_s=30)
        yield c


def _members(cluster: LocalCluster, node: int) -> dict[int, dict[str, Any]]:
    st = cluster.status(node)
    return {m["node_id"]: m for m in st["members"]} if st else {}


def test_grow_to_five_and_shrink_back_while_submitting(cluster: LocalCluster) -> None:
    with Submitters(cluster, "grow") as subs:
        subs.wait_for(20)
        for new in (4, 5):
            spec = cluster.add_node(new)
            leader = cluster.wait_for_leader()
            res = cluster.post(
                leader,
                "/v1/cluster/members",
                {"node_id": new, "peer_addr": spec.peer_addr, "http_url": spec.url},
            )
            assert res.status == 202, (res.status, res.body)
            cluster.wait_until(
                f"node {new} to be a voter",
                lambda n=new: (  # type: ignore[misc]
                    (m := _members(cluster, cluster.wait_for_leader()).get(n)) is not None
                    and m["voter"]
                ),
                30,
            )
        leader = cluster.wait_for_leader()
        assert sorted(_members(cluster, leader)) == [1, 2, 3, 4, 5]
        # Every node eventually knows every member's addresses (discovery).
        cluster.wait_until(
            "addresses everywhere",
            lambda: all(
                all(m["peer_addr"] for m in _members(cluster, i).values())
                and len(_members(cluster, i)) == 5
                for i in cluster.nodes
            ),
            30,
        )
        before = len(subs.acked)
        subs.wait_for(before + 20)
        for gone in (4, 5):
            leader = cluster.wait_for_leader()
            res = cluster.request(leader, "DELETE", f"/v1/cluster/members/{gone}")
            assert res.status == 200, (res.status, res.body)
        cluster.wait_until(
            "three members",
            lambda: sorted(_members(cluster, cluster.wait_for_leader())) == [1, 2, 3],
            30,
        )
        subs.wait_for(len(subs.acked) + 20)
    for gone in (4, 5):
        assert cluster.terminate(gone) == 0
    leader = cluster.wait_for_leader()
    res = cluster.post(
        leader,
        "/v1/cluster/members",
        {"node_id": 4, "peer_addr": "127.0.0.1:1", "http_url": "http://127.0.0.1:1"},
    )
    assert res.status == 409 and res.body["error"]["code"] == "id_retired", res.body
    for node in (4, 5):
        del cluster.nodes[node]
    _assert_all_present(cluster, subs.acked)


def test_transfer_leadership_under_load(cluster: LocalCluster) -> None:
    with Submitters(cluster, "transfer") as subs:
        subs.wait_for(20)
        for _ in range(2):
            leader = cluster.wait_for_leader()
            target = cluster.followers(leader)[0]
            res = cluster.post(leader, "/v1/cluster/leader", {"to": target})
            assert res.status == 202, res.body
            assert cluster.wait_for_leader(not_=leader) == target
            subs.wait_for(len(subs.acked) + 20)
    _assert_all_present(cluster, subs.acked)


def test_removing_the_leader_answers_once_the_removal_commits(tmp_path: Path) -> None:
    """The leader removing itself keeps leading until the removal commits (dissertation
    §4.2.2). The followers used to stop talking to it as soon as they appended the entry,
    so it never learned the commit, stepped down at its CheckQuorum and answered 503
    outcome_unknown for a removal that had committed."""
    with LocalCluster(tmp_path / "remove-leader", nodes=3) as c:
        leader = c.wait_for_leader()
        ok = c.post(leader, "/v1/jobs", {"id": "before-removal", "queue": "rm"})
        assert ok.status == 201, ok.body
        res = c.request(leader, "DELETE", f"/v1/cluster/members/{leader}")
        assert res.status == 200, res.body
        assert res.body["removed"] == leader and res.body["result"]["removed"] is True
        new_leader = c.wait_for_leader(not_=leader)
        assert sorted(_members(c, new_leader)) == sorted(i for i in c.nodes if i != leader)
        rest = c.get(new_leader, "/v1/jobs/before-removal")
        assert rest.status == 200 and rest.body["id"] == "before-removal"

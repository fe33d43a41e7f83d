"""The HTTP API against ONE live 3-node cluster (real processes, sockets, fsync), shared by the
whole module: every route and its error cases, through the leader and through a follower.

The cluster runs with auth on (tokens of every role), so the auth cases are live too; the
`AuthCluster` below only teaches LocalCluster's helpers to carry the admin token. Tests use
their own queue and job names, so they do not depend on each other's order; the ones that move
leadership or membership run last and look the leader up afresh.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from raftsched.client import BadRequest, Client, Conflict, StaleToken
from raftsched.client import NotFound as ClientNotFound
from raftsched.server.api_table import ROUTES
from raftsched.server.auth import hash_token
from raftsched.server.local_nodes import get_json
from tests.server.procs import HttpResult, LocalCluster

VIAS = ("leader", "follower")


class AuthCluster(LocalCluster):
    """LocalCluster whose own requests carry the admin token (a test may pass another
    Authorization, or "" for none)."""

    def status(self, node_id: int) -> dict[str, Any] | None:
        if not self.alive(node_id) or self.nodes[node_id].paused:
            return None
        doc = get_json(
            f"{self.url(node_id)}/v1/cluster", timeout_s=1.0, token=self.files.admin_token
        )
        return doc if isinstance(doc, dict) else None

    def request(
        self,
        node_id: int,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> HttpResult:
        merged = {"Authorization": f"Bearer {self.files.admin_token}", **(headers or {})}
        return super().request(
            node_id,
            method,
            path,
            body,
            headers={k: v for k, v in merged.items() if v},
            timeout_s=timeout_s,
        )


@dataclass
class Live:
    cluster: AuthCluster
    tokens: dict[str, str]  # role -> token

    def node(self, via: str) -> int:
        leader = self.cluster.wait_for_leader()
        return leader if via == "leader" else self.cluster.followers(leader)[0]

    def call(
        self, via: str, method: str, path: str, body: Any = None, **headers: str
    ) -> HttpResult:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return self.cluster.request(self.node(via), method, path, body, headers=hdrs)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cluster = AuthCluster(tmp_path_factory.mktemp("api-live"), nodes=3, extra_args=["--auth"])
    tokens = {role: secrets.token_urlsafe(16) for role in ("submit", "worker", "read")}
    with cluster.files.tokens_file.open("a") as f:
        for role, token in tokens.items():
            f.write(f'"{hash_token(token)}" = "{role}"\n')
    tokens["admin"] = cluster.files.admin_token
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout_s=30)

        def all_serving() -> bool:
            views = [cluster.status(i) for i in cluster.nodes]
            return all(v is not None and v["leader_id"] == leader for v in views)

        cluster.wait_until("every node serving HTTP and knowing the leader", all_serving)
        yield Live(cluster, tokens)
    finally:
        cluster.stop()


def _err(r: HttpResult, status: int, code: str) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and set(r.body) == {"error"}, r.body
    err = r.body["error"]
    assert err["code"] == code and set(err) == {"code", "message", "details"}, err
    return dict(err)


def _raft_headers(r: HttpResult) -> tuple[str, str]:
    headers = {k.lower(): v for k, v in r.headers.items()}
    return headers["x-raft-leader"], headers["x-raft-term"]


# -- jobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_submit_get_list_cancel(live: Live, via: str) -> None:
    q = f"jobs-{via}"
    r = live.call(via, "POST", "/v1/jobs", {"id": f"{q}-1", "queue": q, "payload": {"n": 1}})
    assert r.status == 201 and r.body["job"]["state"] == "pending", r.body
    leader = live.cluster.wait_for_leader()
    assert _raft_headers(r)[0] == str(leader)
    # A linearizable read right after the acknowledgement sees the write, on every node.
    for node in live.cluster.running():
        got = live.cluster.get(node, f"/v1/jobs/{q}-1")
        assert got.status == 200 and got.body["payload"] == {"n": 1}, (node, got.body)
    r = live.call(via, "POST", "/v1/jobs", {"id": f"{q}-1", "queue": q, "payload": {"n": 1}})
    assert r.status == 200 and r.body["job"]["created"] is False
    _err(
        live.call(via, "POST", "/v1/jobs", {"id": f"{q}-1", "queue": q, "payload": 2}),
        409,
        "conflict",
    )
    r = live.call(
        via,
        "POST",
        "/v1/jobs:batch",
        {
            "jobs": [
                {"id": f"{q}-2", "queue": q},
                {"id": f"{q}-3", "queue": q, "depends_on": [f"{q}-2"]},
            ]
        },
    )
    assert r.status == 201 and [j["state"] for j in r.body["jobs"]] == ["pending", "waiting"]
    page = live.call(via, "GET", f"/v1/jobs?queue={q}&limit=2").body
    assert [j["id"] for j in page["jobs"]] == [f"{q}-1", f"{q}-2"]
    rest = live.call(via, "GET", f"/v1/jobs?queue={q}&after={page['next_after']}").body
    assert [j["id"] for j in rest["jobs"]] == [f"{q}-3"] and rest["next_after"] is None
    waiting = live.call(via, "GET", f"/v1/jobs?queue={q}&state=waiting&consistency=stale")
    assert waiting.status == 200
    r = live.call(via, "POST", f"/v1/jobs/{q}-2/cancel", {"reason": "test"})
    assert r.status == 200 and r.body["job"]["state"] == "cancelled"
    assert live.call(via, "GET", f"/v1/jobs/{q}-3").body["reason"] == "upstream_failed"
    _err(live.call(via, "POST", f"/v1/jobs/{q}-2/cancel"), 409, "already_terminal")
    _err(live.call(via, "POST", f"/v1/jobs/{q}-none/cancel"), 404, "not_found")
    _err(live.call(via, "GET", f"/v1/jobs/{q}-none"), 404, "not_found")


@pytest.mark.parametrize("via", VIAS)
def test_bad_input_is_refused_and_changes_nothing(live: Live, via: str) -> None:
    q = f"bad-{via}"
    for body, field in [
        ({"id": f"{q}-a", "queue": q, "bogus": 1}, "bogus"),
        ({"id": f"{q}-a", "queue": 7}, "queue"),
        ({"id": f"{q}-a", "queue": q, "priority": 1.5}, "priority"),
        ({"id": f"{q}-a", "queue": q, "max_attempts": 0}, "max_attempts"),
        ({"id": "auto-1", "queue": q}, "id"),
        ({"id": f"{q}-a", "queue": q, "payload": "x" * 70_000}, "payload"),
    ]:
        r = live.call(via, "POST", "/v1/jobs", body)
        assert r.status in (400, 413) and r.body["error"]["details"]["field"] == field, r.body
    _err(live.call(via, "GET", f"/v1/jobs/{q}-a"), 404, "not_found")  # nothing was created
    _err(live.call(via, "GET", "/v1/jobs?limit=0"), 400, "invalid")
    _err(live.call(via, "GET", "/v1/jobs?colour=red"), 400, "invalid")
    _err(live.call(via, "GET", "/v1/jobs/a%20b"), 400, "invalid")
    _err(live.call(via, "GET", "/v1/nope"), 404, "no_route")
    _err(live.call(via, "DELETE", "/v1/jobs"), 405, "method_not_allowed")
    node = live.node(via)
    raw = urllib.request.Request(live.cluster.url(node) + "/v1/jobs", data=b"{nope", method="POST")
    raw.add_header("Authorization", f"Bearer {live.tokens['admin']}")
    with pytest.raises(urllib.error.HTTPError) as bad_json:
        urllib.request.urlopen(raw, timeout=10)
    assert bad_json.value.code == 400
    assert json.loads(bad_json.value.read())["error"]["details"]["field"] == "body"
    _assert_413_before_body(live, node)


def _assert_413_before_body(live: Live, node: int) -> None:
    """A Content-Length over the limit is refused before the body is sent at all."""
    host, port = live.cluster.url(node).removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {live.tokens['admin']}\r\n"
            f"Content-Length: {9 << 20}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_idempotency_key_answers_retries_on_any_node(live: Live) -> None:
    key = "live-key-1"
    first = live.call("follower", "POST", "/v1/jobs", {"queue": "idem"}, Idempotency_Key=key)
    again = live.call("leader", "POST", "/v1/jobs", {"queue": "idem"}, Idempotency_Key=key)
    assert first.status == 201 and again.status == 201
    assert first.body["job"]["id"] == again.body["job"]["id"]
    listed = live.call("leader", "GET", "/v1/jobs?queue=idem").body["jobs"]
    assert len(listed) == 1  # applied once
    _err(
        live.call("follower", "POST", "/v1/jobs", {"queue": "other"}, Idempotency_Key=key),
        409,
        "idempotency_key_reused",
    )


def test_workflow_atomic_and_cycle(live: Live) -> None:
    r = live.call(
        "follower",
        "POST",
        "/v1/workflows",
        {
            "id": "wf-live",
            "jobs": [
                {"id": "wf-a", "queue": "wf"},
                {"id": "wf-b", "queue": "wf", "depends_on": ["wf-a"]},
            ],
        },
    )
    assert r.status == 201 and r.body["workflow"] == "wf-live"
    err = _err(
        live.call(
            "leader",
            "POST",
            "/v1/workflows",
            {
                "id": "wf-cyc",
                "jobs": [
                    {"id": "c-a", "queue": "wf", "depends_on": ["c-b"]},
                    {"id": "c-b", "queue": "wf", "depends_on": ["c-a"]},
                ],
            },
        ),
        400,
        "cycle",
    )
    assert err["details"]["cycle"] == ["c-a", "c-b", "c-a"]
    _err(live.call("leader", "GET", "/v1/jobs/c-a"), 404, "not_found")  # all or none


# -- leases --------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_lease_heartbeat_complete_fail_and_stale_tokens(live: Live, via: str) -> None:
    q = f"lease-{via}"
    live.call(
        via,
        "POST",
        "/v1/jobs:batch",
        {"jobs": [{"id": f"{q}-1", "queue": q, "priority": 5}, {"id": f"{q}-2", "queue": q}]},
    )
    r = live.call(via, "POST", f"/v1/queues/{q}/lease", {"worker_id": f"w-{via}", "max_jobs": 1})
    [grant] = r.body["leases"]
    assert grant["job_id"] == f"{q}-1" and grant["job"]["state"] == "leased"
    token = grant["token"]
    r = live.call(via, "POST", f"/v1/jobs/{q}-1/heartbeat", {"token": token, "extend_ms": 60_000})
    assert r.status == 200 and r.body["lease_expires_at"] >= grant["lease_expires_at"]
    _err(
        live.call(via, "POST", f"/v1/jobs/{q}-1/heartbeat", {"token": token - 1}),
        409,
        "stale_token",
    )
    _err(
        live.call(via, "POST", f"/v1/jobs/{q}-1/complete", {"token": token + 1}), 409, "stale_token"
    )
    r = live.call(via, "POST", f"/v1/jobs/{q}-1/complete", {"token": token, "result": "ok"})
    assert r.status == 200 and r.body["state"] == "succeeded"
    again = live.call(via, "POST", f"/v1/jobs/{q}-1/complete", {"token": token, "result": "ok"})
    assert again.status == 200  # a retried complete is acknowledged, applied once
    _err(live.call(via, "POST", f"/v1/jobs/{q}-1/fail", {"token": token}), 409, "already_terminal")
    [grant2] = live.call(via, "POST", f"/v1/queues/{q}/lease", {"worker_id": f"w-{via}"}).body[
        "leases"
    ]
    assert grant2["token"] > token  # tokens only grow
    r = live.call(
        via,
        "POST",
        f"/v1/jobs/{q}-2/fail",
        {"token": grant2["token"], "error": {"why": "x"}, "retryable": False},
    )
    assert r.status == 200 and r.body["state"] == "dead"
    _err(live.call(via, "POST", f"/v1/jobs/{q}-2/complete", {"token": "1"}), 400, "invalid")


@pytest.mark.parametrize("via", VIAS)
def test_batched_reports_are_one_request_with_a_result_each(live: Live, via: str) -> None:
    q = f"report-{via}"
    ids = [f"{q}-{i}" for i in range(3)]
    live.call(via, "POST", "/v1/jobs:batch", {"jobs": [{"id": i, "queue": q} for i in ids]})
    r = live.call(via, "POST", f"/v1/queues/{q}/lease", {"worker_id": f"w-{via}", "max_jobs": 3})
    tokens = {g["job_id"]: g["token"] for g in r.body["leases"]}
    assert set(tokens) == set(ids)
    reports = [
        {"job_id": ids[0], "token": tokens[ids[0]], "result": {"n": 0}},
        {"job_id": ids[1], "token": tokens[ids[1]] + 1, "result": "stale"},
        {"job_id": ids[2], "token": tokens[ids[2]], "error": "boom", "retryable": False},
    ]
    r = live.call(via, "POST", "/v1/jobs:complete", {"reports": reports})
    assert r.status == 200, r.body
    results = r.body["results"]
    assert results[0] == {"job_id": ids[0], "ok": True, "state": "succeeded"}
    assert results[1]["error"]["code"] == "stale_token"
    assert results[2] == {"job_id": ids[2], "ok": True, "state": "dead"}
    assert live.call(via, "GET", f"/v1/jobs/{ids[1]}").body["state"] == "leased"
    assert live.call(via, "GET", f"/v1/jobs/{ids[0]}").body["result"] == {"n": 0}
    err = _err(
        live.call(via, "POST", "/v1/jobs:complete", {"reports": [{"job_id": "x"}]}), 400, "invalid"
    )
    assert err["details"]["field"] == "reports[0].token"


@pytest.mark.parametrize("via", VIAS)
def test_lease_long_poll_waits_and_wakes(live: Live, via: str) -> None:
    q = f"poll-{via}"
    started = time.monotonic()
    r = live.call(via, "POST", f"/v1/queues/{q}/lease", {"worker_id": "pw", "wait_ms": 700})
    assert r.body == {"leases": []} and time.monotonic() - started >= 0.6
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        poll = pool.submit(
            live.call, via, "POST", f"/v1/queues/{q}/lease", {"worker_id": "pw", "wait_ms": 20_000}
        )
        live.call("leader", "POST", "/v1/jobs", {"id": f"{q}-1", "queue": q})
        result = poll.result(timeout=30)
    assert [g["job_id"] for g in result.body["leases"]] == [f"{q}-1"]
    assert time.monotonic() - started < 10  # woken by the submit, not by the 20 s deadline


@pytest.mark.parametrize("via", VIAS)
def test_lease_long_poll_wakes_when_the_worker_frees_room_on_another_queue(
    live: Live, via: str
) -> None:
    """A full worker polls queue B, which has a job: completing its lease on queue A must wake
    the poll (B's own counts do not move). Before the fix the poll ran to its wait time."""
    a, b, w = f"room-a-{via}", f"room-b-{via}", f"room-w-{via}"
    r = live.call(via, "POST", f"/v1/workers/{w}/heartbeat", {"capacity": 1, "queues": [a, b]})
    assert r.status == 200, r.body
    live.call("leader", "POST", "/v1/jobs", {"id": f"{a}-1", "queue": a})
    [grant] = live.call(via, "POST", f"/v1/queues/{a}/lease", {"worker_id": w}).body["leases"]
    live.call("leader", "POST", "/v1/jobs", {"id": f"{b}-1", "queue": b})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(
            live.call, via, "POST", f"/v1/queues/{b}/lease", {"worker_id": w, "wait_ms": 12_000}
        )
        time.sleep(0.3)  # let the poll reach its wait: the check below holds either way
        assert not poll.done()  # the worker is full: nothing to grant yet
        started = time.monotonic()
        r = live.call(via, "POST", f"/v1/jobs/{a}-1/complete", {"token": grant["token"]})
        assert r.status == 200, r.body
        result = poll.result(timeout=30)
    assert [g["job_id"] for g in result.body["leases"]] == [f"{b}-1"]
    assert time.monotonic() - started < 8  # woken by the complete, not by the 12 s deadline


# -- queues, workers, schedules ------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_queues_workers_schedules(live: Live, via: str) -> None:
    q = f"cfg-{via}"
    _err(live.call(via, "GET", f"/v1/queues/{q}"), 404, "not_found")
    r = live.call(via, "PUT", f"/v1/queues/{q}", {"max_in_flight": 3, "lease_ms": 9000})
    assert r.status == 200
    r = live.call(via, "PUT", f"/v1/queues/{q}", {"paused": True})
    assert r.body["queue"]["config"] == {
        "max_in_flight": 3,
        "lease_ms": 9000,
        "max_attempts": None,
        "paused": True,
    }
    assert live.call(via, "GET", f"/v1/queues/{q}").body["queue"]["config"]["paused"] is True
    names = [x["name"] for x in live.call(via, "GET", "/v1/queues").body["queues"]]
    assert q in names
    _err(live.call(via, "PUT", f"/v1/queues/{q}", {"paused": "yes"}), 400, "invalid")
    w = f"worker-{via}"
    r = live.call(via, "POST", f"/v1/workers/{w}/heartbeat", {"capacity": 2, "queues": [q]})
    assert r.status == 200 and r.body["worker"]["capacity"] == 2
    assert w in [x["id"] for x in live.call(via, "GET", "/v1/workers").body["workers"]]
    _err(live.call(via, "POST", f"/v1/workers/{w}/heartbeat", {"capacity": -1}), 400, "invalid")
    s = f"sched-{via}"
    body = {"cron": "*/10 * * * *", "template": {"queue": q}, "misfire": "skip"}
    assert live.call(via, "PUT", f"/v1/schedules/{s}", body).status == 201
    assert live.call(via, "PUT", f"/v1/schedules/{s}", body).status == 200
    _err(
        live.call(via, "PUT", f"/v1/schedules/{s}", {**body, "cron": "61 * * * *"}), 400, "invalid"
    )
    assert live.call(via, "GET", f"/v1/schedules/{s}").body["schedule"]["cron"] == body["cron"]
    assert s in [x["name"] for x in live.call(via, "GET", "/v1/schedules").body["schedules"]]
    now_ms = int(time.time() * 1000) - 5_000
    r = live.call(
        via, "POST", f"/v1/schedules/{s}/backfill", {"from": now_ms - 3_600_000, "to": now_ms}
    )
    assert r.status == 200 and len(r.body["created"]) == 6, r.body
    again = live.call(
        via, "POST", f"/v1/schedules/{s}/backfill", {"from": now_ms - 3_600_000, "to": now_ms}
    )
    assert again.body["created"] == [] and len(again.body["skipped"]) == 6
    assert live.call(via, "DELETE", f"/v1/schedules/{s}").body == {"deleted": s}
    _err(live.call(via, "DELETE", f"/v1/schedules/{s}"), 404, "not_found")
    _err(
        live.call(via, "POST", f"/v1/schedules/{s}/backfill", {"from": 0, "to": 1}),
        404,
        "not_found",
    )


def test_dead_letters_workflow_status_and_settings(live: Live) -> None:
    live.call("leader", "POST", "/v1/jobs", {"id": "dl-1", "queue": "dl", "max_attempts": 1})
    [grant] = live.call("follower", "POST", "/v1/queues/dl/lease", {"worker_id": "dlw"}).body[
        "leases"
    ]
    live.call(
        "follower", "POST", "/v1/jobs/dl-1/fail", {"token": grant["token"], "retryable": False}
    )
    assert live.call("follower", "GET", "/v1/jobs/dl-1").body["state"] == "dead"
    r = live.call("follower", "POST", "/v1/jobs:requeue", {"job_ids": ["dl-1"]})
    assert r.status == 200 and r.body["jobs"][0]["state"] == "pending", r.body
    _err(live.call("follower", "POST", "/v1/jobs:purge", {"job_ids": ["dl-1"]}), 400, "invalid")
    live.call(
        "leader",
        "POST",
        "/v1/workflows",
        {
            "id": "wf-st",
            "jobs": [
                {"id": "st-1", "queue": "wfst"},
                {"id": "st-2", "queue": "wfst", "depends_on": ["st-1"]},
            ],
        },
    )
    status = live.call("follower", "GET", "/v1/workflows/wf-st").body
    assert status["counts"]["pending"] == 1 and status["counts"]["waiting"] == 1
    r = live.call("follower", "POST", "/v1/workflows/wf-st/cancel", {"reason": "live"})
    assert sorted(r.body["cancelled"]) == ["st-1", "st-2"]
    settings = live.call("follower", "GET", "/v1/cluster/settings").body["settings"]
    r = live.call(
        "follower",
        "PATCH",
        "/v1/cluster/settings",
        {"settings": {"max_tags": settings["max_tags"] + 1}},
    )
    assert r.status == 200, r.body
    for node in live.cluster.running():  # replicated: every node reads the new value
        got = live.cluster.get(node, "/v1/cluster/settings").body["settings"]
        assert got["max_tags"] == settings["max_tags"] + 1
    _err(
        live.call("follower", "PATCH", "/v1/cluster/settings", {"settings": {"max_tags": 0}}),
        400,
        "invalid",
    )
    past_ms = int(time.time() * 1000) - 60_000
    r = live.call("follower", "POST", "/v1/cluster/clock", {"to": past_ms})
    assert r.status == 200 and r.body["clock"] >= past_ms, r.body
    _err(
        live.call("follower", "POST", "/v1/cluster/clock", {"to": past_ms + 3_600_000}),
        400,
        "invalid",
    )  # after the entry's own stamp


# -- forwarding, auth, probes --------------------------------------------------------------------


def test_follower_redirects_when_asked_and_serves_stale_reads(live: Live) -> None:
    leader = live.cluster.wait_for_leader()
    follower = live.cluster.followers(leader)[0]
    r = live.cluster.post(
        follower, "/v1/jobs", {"queue": "redir"}, headers={"X-Raft-No-Proxy": "1"}
    )
    assert r.status == 307
    location = {k.lower(): v for k, v in r.headers.items()}["location"]
    assert location == live.cluster.url(leader) + "/v1/jobs"
    assert live.call("leader", "GET", "/v1/jobs?queue=redir").body["jobs"] == []  # not applied
    r = live.cluster.get(follower, "/v1/queues?consistency=stale")
    assert r.status == 200 and _raft_headers(r)[0] == str(leader)


@pytest.mark.parametrize("via", VIAS)
def test_auth_roles(live: Live, via: str) -> None:
    def bearer(role: str) -> str:
        return f"Bearer {live.tokens[role]}"

    r = live.call(via, "GET", "/v1/queues", Authorization="")
    _err(r, 401, "unauthorized")
    assert _raft_headers(r)[1]  # headers on errors too
    _err(live.call(via, "GET", "/v1/queues", Authorization="Bearer wrong"), 401, "unauthorized")
    assert live.call(via, "GET", "/v1/queues", Authorization=bearer("read")).status == 200
    for role in ("read", "worker"):
        _err(
            live.call(via, "POST", "/v1/jobs", {"queue": "auth"}, Authorization=bearer(role)),
            403,
            "forbidden",
        )
    assert (
        live.call(via, "POST", "/v1/jobs", {"queue": "auth"}, Authorization=bearer("submit")).status
        == 201
    )
    _err(
        live.call(via, "PUT", "/v1/queues/auth", {"paused": True}, Authorization=bearer("submit")),
        403,
        "forbidden",
    )
    r = live.call(
        via, "POST", "/v1/queues/auth/lease", {"worker_id": "aw"}, Authorization=bearer("worker")
    )
    assert r.status == 200
    assert live.call(via, "GET", "/healthz", Authorization="").status == 200
    assert live.call(via, "GET", "/readyz", Authorization="").status == 200


@pytest.mark.parametrize("via", VIAS)
def test_cluster_view_probes_metrics_openapi(live: Live, via: str) -> None:
    leader = live.cluster.wait_for_leader()
    r = live.call(via, "GET", "/v1/cluster")
    view = r.body
    assert view["leader_id"] == leader and view["role"] == (
        "leader" if via == "leader" else "follower"
    )
    assert sorted(m["node_id"] for m in view["members"]) == [1, 2, 3]
    assert _raft_headers(r) == (str(leader), str(view["term"]))
    assert live.call(via, "GET", "/healthz").body["ok"] is True
    ready = live.call(via, "GET", "/readyz").body
    assert ready["ready"] is True and ready["leader_id"] == leader
    live.call(via, "POST", "/v1/jobs", {"id": f"metrics-{via}", "queue": f"metrics-{via}"})
    # /metrics shows this replica as it is: a linearizable read first makes it current.
    assert live.call(via, "GET", f"/v1/jobs/metrics-{via}").status == 200
    metrics = live.call(via, "GET", "/metrics")
    text = metrics.body.decode() if isinstance(metrics.body, bytes) else str(metrics.body)
    for needle in (
        "raftsched_raft_term ",
        "raftsched_raft_commit_index ",
        f'raftsched_raft_role{{role="{view["role"]}"}} 1.0',
        f'raftsched_jobs{{queue="metrics-{via}",state="pending"}} 1.0',
        'raftsched_http_requests_total{method="GET",route="/v1/cluster",status="200"}',
    ):
        assert needle in text, needle
    doc = live.call(via, "GET", "/v1/openapi.json").body
    assert "/v1/queues/{queue}/lease" in doc["paths"] and doc["openapi"].startswith("3.")


def test_replicas_converge_to_one_state_hash_and_chain_hash(live: Live) -> None:
    """GET /v1/cluster?state_hash=true: after writes, every node reaches the same applied index
    with the same state hash and chain hash (what the jepsen harness checks after a run)."""
    cluster = live.cluster
    leader = cluster.wait_for_leader()
    for i in range(5):
        r = cluster.request(leader, "POST", "/v1/jobs", {"id": f"hash-{i}", "queue": "hash"})
        assert r.status == 201, r.body
    assert cluster.request(leader, "POST", "/v1/jobs/hash-0/cancel", {}).status == 200

    def views() -> list[dict[str, Any]] | None:
        docs = []
        for node_id in cluster.nodes:
            r = cluster.request(node_id, "GET", "/v1/cluster?state_hash=true")
            if r.status != 200:
                return None
            docs.append(r.body)
        indexes = {(d["applied_index"], d["state_hash"]["applied_index"]) for d in docs}
        return docs if len(indexes) == 1 else None

    docs = cluster.wait_until("every node at one applied index", views, timeout_s=20)
    assert len({d["state_hash"]["hash"] for d in docs}) == 1, docs
    assert len({d["chain_hash"] for d in docs}) == 1, docs
    assert all(len(d["chain_hash"]) == 32 for d in docs)
    # Each node runs the collector under its policy: thawed (collected and frozen) at start.
    assert all(d["gc"]["thaws"] >= 1 and d["gc"]["freezes"] >= 1 for d in docs), docs
    # Without the flag the costly hash is left out; a bad flag is a 400 naming the field.
    assert "state_hash" not in cluster.request(leader, "GET", "/v1/cluster").body
    _err(cluster.request(leader, "GET", "/v1/cluster?state_hash=yes"), 400, "invalid")


# -- the landed client against the real API --------------------------------------------------------


def test_client_library_agrees_with_the_api(live: Live) -> None:
    """raftsched.client (written against SPEC §5 and a fake) drives the real API: paths,
    bodies, answer shapes, typed errors, Idempotency-Key, following the leader from any node."""
    leader = live.cluster.wait_for_leader()
    follower = live.cluster.followers(leader)[0]
    urls = [live.cluster.url(follower), live.cluster.url(leader)]
    with Client(urls, token=live.tokens["admin"], timeout_s=20) as c:
        job = c.submit("cl", {"x": 1}, id="cl-1", max_attempts=2, tags=["t"])
        assert (job.id, job.state, job.queue) == ("cl-1", "pending", "cl")
        assert c.get_job("cl-1").payload == {"x": 1}
        assert c.get_job("cl-1", consistency="stale").id == "cl-1"
        batch = c.submit_batch([{"id": "cl-2", "queue": "cl"}, {"id": "cl-3", "queue": "cl"}])
        assert [j.id for j in batch] == ["cl-2", "cl-3"]
        flow = c.submit_workflow([{"id": "cl-w1", "queue": "cl"}], id="cl-flow")
        assert flow.id == "cl-flow" and [j.id for j in flow.jobs] == ["cl-w1"]
        page = c.list_jobs(queue="cl", limit=2)
        assert [j.id for j in page.jobs] == ["cl-1", "cl-2"] and page.next_after
        rest = c.list_jobs(queue="cl", after=page.next_after)
        assert [j.id for j in rest.jobs] == ["cl-3", "cl-w1"]
        c.worker_heartbeat("cl-w", capacity=4, queues=["cl"])
        leases = c.lease("cl", worker_id="cl-w", max_jobs=2, wait_ms=1000)
        assert [lease.job_id for lease in leases] == ["cl-1", "cl-2"]
        first = leases[0]
        assert first.token > 0 and first.payload == {"x": 1} and first.max_attempts == 2
        assert c.heartbeat_lease(first.job_id, first.token) is not None
        with pytest.raises(StaleToken):
            c.complete(first.job_id, first.token + 1, "late")
        c.complete(first.job_id, first.token, {"done": True})
        c.fail(leases[1].job_id, leases[1].token, "boom", retryable=False)
        assert c.get_job("cl-2").state == "dead"
        assert c.cancel("cl-3", reason="cl").state == "cancelled"
        with pytest.raises(ClientNotFound):
            c.get_job("cl-missing")
        with pytest.raises(BadRequest) as bad:
            c.submit("cl", priority=True)  # a bool is not an int for the API
        assert bad.value.field == "priority"
        with pytest.raises(Conflict):
            c.submit("cl", {"x": 2}, id="cl-1")
        queues = c.configure_queue("cl", max_in_flight=5)
        assert queues["queue"]["config"]["max_in_flight"] == 5
        assert any(q["name"] == "cl" for q in c.queues()["queues"])
        assert any(w["id"] == "cl-w" for w in c.workers()["workers"])
        c.put_schedule("cl-s", cron="*/5 * * * *", template={"queue": "cl"})
        assert any(s["name"] == "cl-s" for s in c.schedules()["schedules"])
        now_ms = int(time.time() * 1000) - 5_000
        filled = c.backfill("cl-s", start_ms=now_ms - 600_000, end_ms=now_ms)
        assert len(filled["created"]) == 2
        c.delete_schedule("cl-s")
        view = c.cluster()
        assert view["leader_id"] == leader and len(view["members"]) >= 3
        assert c.health()["ok"] is True
        data = c.backup()
        claimed = {k.lower(): v for k, v in c.last_headers.items()}["x-backup-sha256"]
        assert hashlib.sha256(data).hexdigest() == claimed


# -- admin operations (last: they move leadership and membership) -------------------------------


def test_snapshot_and_backup_on_a_follower(live: Live) -> None:
    r = live.call("follower", "POST", "/v1/cluster/snapshot")
    assert r.status == 200 and "snapshot" in r.body, r.body
    node = live.node("follower")
    req = urllib.request.Request(live.cluster.url(node) + "/v1/cluster/backup")
    req.add_header("Authorization", f"Bearer {live.tokens['admin']}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        data, claimed = resp.read(), resp.headers["X-Backup-Sha256"]
    assert data and hashlib.sha256(data).hexdigest() == claimed
    denied = live.call(
        "follower", "GET", "/v1/cluster/backup", Authorization=f"Bearer {live.tokens['read']}"
    )
    _err(denied, 403, "forbidden")


def test_leader_transfer(live: Live) -> None:
    leader = live.cluster.wait_for_leader()
    target = live.cluster.followers(leader)[0]
    _err(live.call("follower", "POST", "/v1/cluster/leader", {"to": "2"}), 400, "invalid")
    r = live.call("follower", "POST", "/v1/cluster/leader", {"to": target})
    assert r.status == 202, r.body
    assert live.cluster.wait_for_leader(not_=leader) == target
    r = live.call("leader", "POST", "/v1/jobs", {"queue": "after-transfer"})
    assert r.status == 201


def test_membership_add_and_remove(live: Live) -> None:
    spec = live.cluster.add_node(4)
    r = live.call(
        "follower",
        "POST",
        "/v1/cluster/members",
        {"node_id": 4, "peer_addr": spec.peer_addr, "http_url": spec.url},
    )
    assert r.status == 202, r.body

    def voter_4() -> bool:
        view = live.call("leader", "GET", "/v1/cluster").body
        return any(m["node_id"] == 4 and m["voter"] for m in view["members"])

    live.cluster.wait_until("node 4 promoted to voter", voter_4, timeout_s=30)
    r = live.call(
        "leader",
        "POST",
        "/v1/cluster/members",
        {"node_id": 4, "peer_addr": spec.peer_addr, "http_url": spec.url},
    )
    _err(r, 409, "member_exists")
    r = live.call("follower", "DELETE", "/v1/cluster/members/4")
    assert r.status == 200, r.body
    view = live.call("leader", "GET", "/v1/cluster").body
    assert 4 not in [m["node_id"] for m in view["members"]]
    _err(live.call("leader", "DELETE", "/v1/cluster/members/x"), 400, "invalid")
    live.cluster.terminate(4)


def test_full_queue_is_429_with_retry_after(live: Live) -> None:
    limits = live.call("leader", "GET", "/v1/cluster/settings").body["settings"]
    old = limits["max_jobs_per_queue"]
    assert (
        live.call(
            "leader", "PATCH", "/v1/cluster/settings", {"settings": {"max_jobs_per_queue": 3}}
        ).status
        == 200
    )
    try:
        r = live.call(
            "follower", "POST", "/v1/jobs:batch", {"jobs": [{"queue": "full-q"} for _ in range(4)]}
        )
        err = _err(r, 429, "queue_full")
        assert err["details"]["queue"] == "full-q"
        assert {k.lower(): v for k, v in r.headers.items()}["retry-after"] == "1"
        assert live.call("leader", "GET", "/v1/jobs?queue=full-q").body["jobs"] == []
    finally:
        live.call(
            "leader", "PATCH", "/v1/cluster/settings", {"settings": {"max_jobs_per_queue": old}}
        )


def test_every_route_was_exercised(live: Live) -> None:
    """Runs last: the nodes' own request counters show this module called every route."""
    seen: set[tuple[str, str]] = set()
    for node in live.cluster.running():
        text = live.cluster.get(node, "/metrics").body
        text = text.decode() if isinstance(text, bytes) else str(text)
        for method, route in re.findall(
            r'raftsched_http_requests_total\{method="(\w+)",route="([^"]+)"', text
        ):
            seen.add((method, route))
    missing = {(r.method, r.path) for r in ROUTES} - seen
    assert not missing, sorted(missing)


def test_no_quorum_is_503_and_stale_reads_still_served(live: Live) -> None:
    """Runs after the route census: it pauses both followers (SIGSTOP), then resumes them."""
    cluster = live.cluster
    leader = cluster.wait_for_leader()
    live.call("leader", "POST", "/v1/jobs", {"id": "nq-1", "queue": "nq"})
    followers = [i for i in cluster.followers(leader) if i in cluster.members]
    for node in followers:
        cluster.pause(node)
    try:
        r = cluster.post(leader, "/v1/jobs", {"id": "nq-2", "queue": "nq"}, timeout_s=60)
        assert r.status == 503 and r.body["error"]["code"] in ("no_leader", "outcome_unknown")
        assert {k.lower(): v for k, v in r.headers.items()}["retry-after"]
        r = cluster.get(leader, "/v1/jobs/nq-1", timeout_s=60)
        assert r.status == 503, r.body  # a linearizable read needs a quorum
        r = cluster.get(leader, "/v1/jobs/nq-1?consistency=stale")
        assert r.status == 200 and r.body["id"] == "nq-1"  # this replica as it is
    finally:
        for node in followers:
            cluster.resume(node)
    cluster.wait_for_leader(timeout_s=30)
    assert live.call("follower", "GET", "/v1/jobs/nq-1").status == 200

"""HTTP API error mapping and hops against a fake runtime (no Raft): every status of SPEC §5.

The live-cluster tests (test_api_live.py) cover the same routes through real node processes;
these pin down the mapping itself: parse errors name the field, refusals keep their status,
runtime errors become 429/503 with Retry-After, followers forward or redirect, auth roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftsched.sched import Lease, Limits, Refused
from raftsched.server import openapi
from raftsched.server.api import build_app
from raftsched.server.api_table import ROUTES
from raftsched.server.auth import hash_token
from raftsched.server.errors import (
    ClusterRefused,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    ShuttingDown,
)
from tests.server.fake_runtime import FakeConfig, FakeRuntime

pytestmark = pytest.mark.asyncio


async def _client(rt: FakeRuntime) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(build_app(rt)))
    await client.start_server()
    return client


@pytest_asyncio.fixture
async def rt_client() -> AsyncIterator[
    tuple[FakeRuntime, TestClient[web.Request, web.Application]]
]:
    rt = FakeRuntime()
    client = await _client(rt)
    yield rt, client
    await client.close()


async def _err(resp: Any, status: int, code: str) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, (resp.status, body)
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


async def test_submit_get_and_headers(rt_client: Any) -> None:
    rt, c = rt_client
    r = await c.post("/v1/jobs", json={"id": "a", "queue": "q", "payload": {"x": 1}})
    assert r.status == 201, await r.text()
    assert r.headers["X-Raft-Leader"] == "1" and r.headers["X-Raft-Term"] == "3"
    assert (await r.json())["job"]["id"] == "a"
    r = await c.post("/v1/jobs", json={"id": "a", "queue": "q", "payload": {"x": 1}})
    assert r.status == 200  # same id, same spec
    await _err(await c.post("/v1/jobs", json={"id": "a", "queue": "q2"}), 409, "conflict")
    r = await c.get("/v1/jobs/a")
    assert r.status == 200 and (await r.json())["state"] == "pending"
    barriers = rt.barriers
    assert (await c.get("/v1/jobs/a?consistency=stale")).status == 200
    assert rt.barriers == barriers  # stale reads skip the read barrier
    await _err(await c.get("/v1/jobs/zz"), 404, "not_found")
    await _err(await c.get("/v1/jobs/a?consistency=maybe"), 400, "invalid")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue": "q", "bogus": 1}, "bogus"),
        ({"queue": 5}, "queue"),
        ({"queue": "q", "priority": True}, "priority"),
        ({"queue": "q", "max_attempts": 0}, "max_attempts"),
        ({"id": "bad id", "queue": "q"}, "id"),
        ({}, "queue"),
    ],
)
async def test_bad_input_names_the_field(rt_client: Any, body: dict[str, Any], field: str) -> None:
    rt, c = rt_client
    err = await _err(await c.post("/v1/jobs", json=body), 400, "invalid")
    assert err["details"]["field"] == field, err
    assert rt.proposed == []  # a refused request changes nothing


async def test_bad_json_oversize_and_unknown_route(rt_client: Any) -> None:
    _, c = rt_client
    await _err(await c.post("/v1/jobs", data=b"{nope"), 400, "invalid")
    await _err(await c.post("/v1/jobs", data=b"[1]"), 400, "invalid")
    await _err(await c.post("/v1/jobs", data=b'{"queue": "q", "payload": NaN}'), 400, "invalid")
    big = json.dumps({"queue": "q", "payload": "x" * (2 << 20)})
    await _err(await c.post("/v1/jobs", data=big), 413, "body_too_large")
    payload = {"queue": "q", "payload": "x" * (70 * 1024)}
    await _err(await c.post("/v1/jobs", json=payload), 413, "payload_too_large")
    await _err(await c.get("/v1/nothing"), 404, "no_route")
    await _err(await c.delete("/v1/jobs"), 405, "method_not_allowed")


async def test_lease_complete_stale_token_and_long_poll(rt_client: Any) -> None:
    _, c = rt_client
    r = await c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 0})
    assert r.status == 200 and (await r.json())["leases"] == []
    poll = asyncio.ensure_future(
        c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 1500})
    )
    await asyncio.sleep(0.05)
    assert not poll.done()
    await c.post("/v1/jobs", json={"id": "j", "queue": "q"})
    leases = (await (await poll).json())["leases"]
    assert [lease["job_id"] for lease in leases] == ["j"]
    token = leases[0]["token"]
    await _err(await c.post("/v1/jobs/j/complete", json={"token": token + 1}), 409, "stale_token")
    r = await c.post("/v1/jobs/j/heartbeat", json={"token": token})
    assert r.status == 200 and "lease_expires_at" in await r.json()
    assert (await c.post("/v1/jobs/j/complete", json={"token": token, "result": 1})).status == 200
    await _err(await c.post("/v1/jobs/j/cancel", json={}), 409, "already_terminal")
    await _err(await c.post("/v1/jobs/j/cancel", json={"job_id": "other"}), 400, "invalid")
    await _err(await c.post("/v1/jobs/nope/cancel"), 404, "not_found")


async def test_idempotency_key_passed_into_command(rt_client: Any) -> None:
    rt, c = rt_client
    h = {"Idempotency-Key": "k1"}
    r1 = await c.post("/v1/jobs", json={"queue": "q"}, headers=h)
    r2 = await c.post("/v1/jobs", json={"queue": "q"}, headers=h)
    assert (await r1.json())["job"]["id"] == (await r2.json())["job"]["id"]
    assert rt.proposed[0].idempotency_key == "k1"
    await _err(
        await c.post("/v1/jobs", json={"queue": "other"}, headers=h), 409, "idempotency_key_reused"
    )


async def test_runtime_errors_map_to_429_and_503(rt_client: Any) -> None:
    rt, c = rt_client
    rt.raise_next = Overloaded(2.5, "proposals in flight")
    r = await c.post("/v1/jobs", json={"queue": "q"})
    await _err(r, 429, "overloaded")
    assert r.headers["Retry-After"] == "3"
    rt.raise_next = OutcomeUnknown()
    r = await c.post("/v1/jobs", json={"queue": "q"})
    err = await _err(r, 503, "outcome_unknown")
    assert err["message"].count("Idempotency-Key") == 1
    rt.raise_next = OutcomeUnknown("not applied in time; retry with the same idempotency key")
    err = await _err(await c.post("/v1/jobs", json={"queue": "q"}), 503, "outcome_unknown")
    assert err["message"].lower().count("idempotency") == 1  # said once
    assert "Retry-After" in r.headers
    rt.raise_next = RuntimeError("a bug")
    r = await c.post("/v1/jobs", json={"queue": "q"})
    err = await _err(r, 500, "internal")
    assert "Traceback" not in err["message"]
    rt.no_leader = True
    r = await c.get("/v1/jobs/x")
    await _err(r, 503, "no_leader")
    assert r.headers["Retry-After"] == "1"


async def test_follower_forwards_redirects_or_503() -> None:
    leader_rt = FakeRuntime()
    leader = await _client(leader_rt)
    follower_rt = FakeRuntime()
    follower_rt.role, follower_rt.node_id = "follower", 2
    follower_rt.leader_url = str(leader.make_url("/")).rstrip("/")
    follower = await _client(follower_rt)
    try:
        r = await follower.post(
            "/v1/jobs", json={"id": "f", "queue": "q"}, headers={"Idempotency-Key": "kf"}
        )
        assert r.status == 201, await r.text()
        assert leader_rt.proposed[0].idempotency_key == "kf"
        r = await follower.post(
            "/v1/jobs", json={"queue": "q"}, headers={"X-Raft-No-Proxy": "1"}, allow_redirects=False
        )
        assert r.status == 307
        assert r.headers["Location"] == follower_rt.leader_url + "/v1/jobs"
        assert "X-Raft-Term" in r.headers
        r = await follower.post("/v1/jobs", json={"queue": "q"}, headers={"X-Raft-Proxied": "1"})
        await _err(r, 503, "no_leader")  # never forwards twice
        follower_rt.leader_url, follower_rt.leader_id = None, None
        r = await follower.post("/v1/jobs", json={"queue": "q"})
        await _err(r, 503, "no_leader")
        assert r.headers["Retry-After"] == "1"
    finally:
        await follower.close()
        await leader.close()


async def test_auth_roles() -> None:
    tokens = {hash_token(t): t.split("-")[0] for t in ("admin-t", "submit-t", "worker-t", "read-t")}
    rt = FakeRuntime(FakeConfig(auth=True, tokens=tokens))
    c = await _client(rt)

    def h(tok: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tok}"}

    try:
        await _err(await c.get("/v1/queues"), 401, "unauthorized")
        await _err(await c.get("/v1/queues", headers=h("nope")), 401, "unauthorized")
        assert (await c.get("/v1/queues", headers=h("read-t"))).status == 200
        lower = {"Authorization": "bearer read-t"}
        assert (await c.get("/v1/queues", headers=lower)).status == 200
        await _err(
            await c.get("/v1/queues", headers={"Authorization": "Basic eDp5"}), 401, "unauthorized"
        )
        await _err(
            await c.post("/v1/jobs", json={"queue": "q"}, headers=h("read-t")), 403, "forbidden"
        )
        await _err(
            await c.post("/v1/jobs", json={"queue": "q"}, headers=h("worker-t")), 403, "forbidden"
        )
        assert (await c.post("/v1/jobs", json={"queue": "q"}, headers=h("submit-t"))).status == 201
        await _err(await c.put("/v1/queues/q", json={}, headers=h("submit-t")), 403, "forbidden")
        assert (
            await c.put("/v1/queues/q", json={"paused": True}, headers=h("admin-t"))
        ).status == 200
        assert (await c.get("/healthz")).status == 200
        assert (await c.head("/healthz")).status == 200  # HEAD: a GET without the body
        assert (await c.head("/v1/queues")).status == 401  # with the GET's role
        assert (await c.head("/v1/queues", headers=h("read-t"))).status == 200
    finally:
        await c.close()


async def test_cluster_admin_routes_metrics_openapi(rt_client: Any) -> None:
    rt, c = rt_client
    r = await c.get("/v1/cluster")
    assert (await r.json())["role"] == "leader"
    r = await c.post(
        "/v1/cluster/members",
        json={"node_id": 4, "peer_addr": "127.0.0.1:9", "http_url": "http://x:1"},
    )
    assert r.status == 202 and rt.calls[-1][0] == "add_member"
    await _err(await c.post("/v1/cluster/members", json={"node_id": "4"}), 400, "invalid")
    assert (await c.delete("/v1/cluster/members/4")).status == 200
    await _err(await c.delete("/v1/cluster/members/x"), 400, "invalid")
    assert (await c.post("/v1/cluster/leader", json={"to": 2})).status == 202
    assert (await c.post("/v1/cluster/snapshot")).status == 200
    r = await c.get("/v1/cluster/backup")
    assert r.status == 200 and len(r.headers["X-Backup-Sha256"]) == 64
    assert (await c.get("/readyz")).status == 200
    await c.post("/v1/jobs", json={"queue": "mq"})
    text = await (await c.get("/metrics")).text()
    assert 'raftsched_jobs{queue="mq",state="pending"} 1.0' in text
    assert 'raftsched_http_requests_total{method="POST",route="/v1/jobs",status="201"}' in text
    doc = await (await c.get("/v1/openapi.json")).json()
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == {
        (r.method, r.path) for r in ROUTES
    }
    rt.leader_id = None
    await _err(await c.get("/readyz"), 503, "not_ready")


async def test_other_scheduler_routes(rt_client: Any) -> None:
    _, c = rt_client
    r = await c.post("/v1/jobs:batch", json={"jobs": [{"queue": "q"}, {"queue": "q"}]})
    assert r.status == 201 and len((await r.json())["jobs"]) == 2
    await _err(await c.post("/v1/jobs:batch", json={"jobs": []}), 400, "invalid")
    r = await c.get("/v1/jobs?queue=q&limit=1")
    page = await r.json()
    assert len(page["jobs"]) == 1 and page["next_after"] is not None
    await _err(await c.get("/v1/jobs?limit=0"), 400, "invalid")
    await _err(await c.get("/v1/jobs?state=weird"), 400, "invalid")
    r = await c.post(
        "/v1/workflows",
        json={
            "id": "wf",
            "jobs": [
                {"id": "a", "queue": "q", "depends_on": ["b"]},
                {"id": "b", "queue": "q", "depends_on": ["a"]},
            ],
        },
    )
    err = await _err(r, 400, "cycle")
    assert err["details"]["cycle"]
    r = await c.post("/v1/workers/w1/heartbeat", json={"capacity": 2, "queues": ["q"]})
    assert r.status == 200
    assert len((await (await c.get("/v1/workers")).json())["workers"]) == 1
    assert (await c.get("/v1/queues")).status == 200
    sched = {"cron": "*/5 * * * *", "template": {"queue": "q"}}
    assert (await c.put("/v1/schedules/s1", json=sched)).status == 201
    assert (await c.put("/v1/schedules/s1", json=sched)).status == 200
    await _err(await c.put("/v1/schedules/s2", json={**sched, "cron": "nope"}), 400, "invalid")
    assert len((await (await c.get("/v1/schedules")).json())["schedules"]) == 1
    r = await c.post("/v1/schedules/s1/backfill", json={"from": 0, "to": 600_000})
    assert r.status == 200, await r.text()
    assert (await c.delete("/v1/schedules/s1")).status == 200
    await _err(await c.delete("/v1/schedules/s1"), 404, "not_found")


def _h(**headers: str) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in headers.items()}


async def test_brief_submit_answers_are_opt_in_and_keep_the_records(rt_client: Any) -> None:
    rt, c = rt_client
    r = await c.post("/v1/jobs:batch?answer=brief", json={"jobs": [{"id": "r1", "queue": "q"}]})
    assert r.status == 201
    [record] = (await r.json())["jobs"]
    assert set(record) == {"id", "state", "seq", "created"}
    assert (record["id"], record["state"], record["created"]) == ("r1", "pending", True)
    r = await c.post("/v1/jobs?answer=brief", json={"id": "r1", "queue": "q"})
    assert r.status == 200 and (await r.json())["job"] == {**record, "created": False}
    r = await c.post("/v1/jobs?answer=full", json={"id": "r2", "queue": "q"})
    assert r.status == 201 and "events" in (await r.json())["job"]
    r = await c.post("/v1/jobs:batch", json={"jobs": [{"id": "r1", "queue": "q"}]})
    assert "events" in (await r.json())["jobs"][0]  # the default is the full document
    proposed = len(rt.proposed)
    err = await _err(await c.post("/v1/jobs?answer=short", json={"queue": "q"}), 400, "invalid")
    assert err["details"]["field"] == "answer"
    assert len(rt.proposed) == proposed  # refused before anything was proposed
    keyed = {"Idempotency-Key": "k-brief"}
    first = await c.post("/v1/jobs?answer=brief", json={"queue": "q"}, headers=keyed)
    again = await c.post("/v1/jobs", json={"queue": "q"}, headers=keyed)
    # The brief answer did not change the stored answer a keyed retry gets.
    assert (await again.json())["job"]["id"] == (await first.json())["job"]["id"]
    assert "events" in (await again.json())["job"]


async def test_submit_answers_render_job_documents(rt_client: Any) -> None:
    _, c = rt_client
    r = await c.post(
        "/v1/jobs:batch",
        json={
            "jobs": [{"id": "b1", "queue": "q"}, {"id": "b2", "queue": "q", "depends_on": ["b1"]}]
        },
    )
    assert r.status == 201
    docs = (await r.json())["jobs"]
    assert [(d["id"], d["state"], d["created"]) for d in docs] == [
        ("b1", "pending", True),
        ("b2", "waiting", True),
    ]
    assert docs[1]["depends_on"] == ["b1"] and "events" in docs[1]
    r = await c.post("/v1/jobs:batch", json={"jobs": [{"id": "b1", "queue": "q"}]})
    assert r.status == 200 and (await r.json())["jobs"][0]["created"] is False
    r = await c.post(
        "/v1/workflows",
        json={
            "id": "wf1",
            "jobs": [{"id": "w1", "queue": "q"}, {"id": "w2", "queue": "q", "depends_on": ["w1"]}],
        },
    )
    body = await r.json()
    assert r.status == 201 and body["workflow"] == "wf1"
    assert [d["workflow"] for d in body["jobs"]] == ["wf1", "wf1"]
    err = await _err(
        await c.post("/v1/workflows", json={"id": "wf2", "jobs": [{"queue": "q"}]}), 400, "invalid"
    )
    assert err["details"]["field"] == "jobs[0].id"
    err = await _err(
        await c.post(
            "/v1/jobs:batch", json={"jobs": [{"id": "x1", "queue": "q", "depends_on": ["ghost"]}]}
        ),
        400,
        "unknown_dependency",
    )
    r = await c.post("/v1/jobs/b2/cancel", json={"reason": "not needed"})
    job = (await r.json())["job"]
    assert r.status == 200 and job["state"] == "cancelled" and job["reason"] == "not needed"


async def test_strict_query_and_path_input(rt_client: Any) -> None:
    rt, c = rt_client
    await c.post("/v1/jobs", json={"id": "a", "queue": "q"})
    for url, field in [
        ("/v1/jobs/a?consistancy=stale", "consistancy"),
        ("/v1/jobs?limit=abc", "limit"),
        ("/v1/jobs?limit=1001", "limit"),
        ("/v1/jobs?limit=%C2%B2", "limit"),
        ("/v1/jobs?after=-1", "after"),
        ("/v1/jobs?queue=bad%20name", "queue"),
        ("/v1/jobs?limit=1&limit=2", "limit"),
        ("/v1/jobs/a%20b", "id"),
        ("/v1/queues/bad%20q", "queue"),
        ("/v1/cluster?x=1", "x"),
    ]:
        err = await _err(await c.get(url), 400, "invalid")
        assert err["details"]["field"] == field, (url, err)
    for path, body, field in [
        ("/v1/queues/q/lease", {"worker_id": "w", "max_jobs": 0}, "max_jobs"),
        ("/v1/queues/q/lease", {"worker_id": "w", "wait_ms": 60_001}, "wait_ms"),
        ("/v1/queues/q/lease", {"max_jobs": 1}, "worker_id"),
        ("/v1/queues/q/lease", {"worker_id": "w", "queue": "other"}, "queue"),
        ("/v1/jobs/a/complete", {"token": "1"}, "token"),
        ("/v1/jobs/a/fail", {"token": 1, "retryable": "no"}, "retryable"),
        ("/v1/jobs/a/heartbeat", {"token": 1, "extend_ms": 0}, "extend_ms"),
        ("/v1/workers/w/heartbeat", {"capacity": -1}, "capacity"),
        ("/v1/schedules/s/backfill", {"from": 5, "to": 1}, "to"),
        ("/v1/cluster/leader", {"to": True}, "to"),
        (
            "/v1/cluster/members",
            {"node_id": 4, "peer_addr": "nohost", "http_url": "http://h:1"},
            "peer_addr",
        ),
        ("/v1/cluster/snapshot", {"now": True}, "now"),
    ]:
        err = await _err(await c.post(path, json=body), 400, "invalid")
        assert err["details"]["field"] == field, (path, err)
    err = await _err(
        await c.post("/v1/jobs", json={"queue": "q"}, headers={"Idempotency-Key": "k" * 201}),
        400,
        "invalid",
    )
    assert err["details"]["field"] == "idempotency_key"
    deep = "[" * 100_000 + "]" * 100_000
    await _err(await c.post("/v1/jobs", data=deep), 400, "invalid")
    assert len(rt.proposed) == 1  # only the first submit: every refusal proposed nothing


async def test_body_limit_checked_before_reading(rt_client: Any) -> None:
    rt, c = rt_client
    limit = rt.config.limits.max_body_bytes
    r = await c.post("/v1/jobs", data=b"x" * (limit + 1))
    err = await _err(r, 413, "body_too_large")
    assert err["details"]["max_bytes"] == limit and "X-Raft-Term" in r.headers

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off while reading
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    err = await _err(await c.post("/v1/jobs", data=chunks()), 413, "body_too_large")
    assert err["details"]["max_bytes"] == limit
    assert rt.proposed == []


async def test_queue_get_and_partial_put(rt_client: Any) -> None:
    _, c = rt_client
    await _err(await c.get("/v1/queues/q"), 404, "not_found")
    r = await c.put("/v1/queues/q", json={"max_in_flight": 2, "lease_ms": 5000})
    assert r.status == 200
    assert (await r.json())["queue"]["config"]["max_in_flight"] == 2
    r = await c.put("/v1/queues/q", json={"paused": True})  # keeps max_in_flight and lease_ms
    config = (await r.json())["queue"]["config"]
    assert config == {"max_in_flight": 2, "lease_ms": 5000, "max_attempts": None, "paused": True}
    r = await c.put("/v1/queues/q", json={"max_in_flight": None})  # null: no limit
    config = (await r.json())["queue"]["config"]
    assert config["max_in_flight"] is None and config["paused"] is True
    r = await c.get("/v1/queues/q")
    assert (await r.json())["queue"]["config"]["lease_ms"] == 5000
    await _err(await c.put("/v1/queues/q", json={"paused": 1}), 400, "invalid")
    await _err(await c.put("/v1/queues/q", json={"colour": "red"}), 400, "invalid")


async def test_lease_long_poll_proposes_nothing_while_idle() -> None:
    rt = FakeRuntime()
    rt.config.limits.lease_wait_ms_max = 300
    c = await _client(rt)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 60_000})
        assert (await r.json()) == {"leases": []}
        assert 0.25 <= loop.time() - started < 2.0  # capped by lease_wait_ms_max
        assert rt.proposed == []  # an idle poll writes no entry
        await c.post("/v1/workers/w/heartbeat", json={"capacity": 1, "queues": ["q"]})
        await c.post(
            "/v1/jobs:batch",
            json={"jobs": [{"id": "j1", "queue": "q"}, {"id": "j2", "queue": "q"}]},
        )
        r = await c.post(
            "/v1/queues/q/lease", json={"worker_id": "w", "max_jobs": 5, "wait_ms": 1000}
        )
        [grant] = (await r.json())["leases"]  # capacity 1
        assert grant["job"]["id"] == grant["job_id"] == "j1"
        assert grant["job"]["state"] == "leased" and grant["token"] == grant["job"]["token"]
        before = len(rt.proposed)
        r = await c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 100})
        assert (await r.json())["leases"] == [] and len(rt.proposed) == before  # worker full
        r = await c.post(
            "/v1/jobs/j1/fail", json={"token": grant["token"], "error": "x", "retryable": False}
        )
        assert (await r.json())["state"] == "dead"
        r = await c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 100})
        assert [g["job_id"] for g in (await r.json())["leases"]] == ["j2"]
    finally:
        await c.close()


async def test_keyed_lease_retry_gets_first_answer(rt_client: Any) -> None:
    _, c = rt_client
    await c.post("/v1/jobs", json={"id": "k", "queue": "q"})
    h = {"Idempotency-Key": "lease-1"}
    r1 = await (await c.post("/v1/queues/q/lease", json={"worker_id": "w"}, headers=h)).json()
    r2 = await (await c.post("/v1/queues/q/lease", json={"worker_id": "w"}, headers=h)).json()
    assert r1["leases"][0]["token"] == r2["leases"][0]["token"]
    token = r1["leases"][0]["token"]
    ok = await c.post("/v1/jobs/k/complete", json={"token": token, "result": {"n": 1}})
    again = await c.post("/v1/jobs/k/complete", json={"token": token, "result": {"n": 1}})
    assert ok.status == again.status == 200  # a retried complete is acknowledged again
    doc = await (await c.get("/v1/jobs/k")).json()
    assert doc["state"] == "succeeded" and doc["result"] == {"n": 1}
    await _err(await c.post("/v1/jobs/k/heartbeat", json={"token": token}), 409, "already_terminal")


async def test_more_runtime_errors_and_bug_logging(
    rt_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt, c = rt_client
    rt.raise_next = ShuttingDown()
    r = await c.post("/v1/jobs", json={"queue": "q"})
    await _err(r, 503, "shutting_down")
    assert r.headers["Retry-After"] == "1"
    rt.raise_next = ClusterRefused(409, "member_exists", "node 4 is a member already")
    r = await c.post(
        "/v1/cluster/members", json={"node_id": 4, "peer_addr": "h:1", "http_url": "http://h:2"}
    )
    await _err(r, 409, "member_exists")
    rt.raise_next = ClusterRefused(404, "unknown_member", "no node 9")
    await _err(await c.delete("/v1/cluster/members/9"), 404, "unknown_member")
    rt.raise_next = KeyError("oops")
    with caplog.at_level(logging.ERROR, logger="raftsched.api"):
        r = await c.post("/v1/jobs", json={"queue": "q"})
    err = await _err(r, 500, "internal")
    assert "oops" not in err["message"] and "X-Raft-Leader" in r.headers
    bug_lines = [rec for rec in caplog.records if rec.getMessage().startswith("bug:")]
    assert len(bug_lines) == 1 and rec_one_line(bug_lines[0])
    r = await c.get("/v1/nothing")
    assert r.headers["X-Raft-Term"] == "3"


def rec_one_line(record: logging.LogRecord) -> bool:
    return "\n" not in record.getMessage() and record.exc_info is None


async def test_follower_serves_reads_forwards_when_asked_and_keeps_local_ops() -> None:
    leader_rt = FakeRuntime()
    leader = await _client(leader_rt)
    follower_rt = FakeRuntime()
    follower_rt.role, follower_rt.node_id, follower_rt.leader_id = "follower", 2, 1
    follower_rt.leader_url = str(leader.make_url("/")).rstrip("/")
    follower = await _client(follower_rt)
    try:
        await leader.post("/v1/jobs", json={"id": "only-on-leader", "queue": "q"})
        # A follower that can serve reads (read barrier ok) answers from its own replica.
        await _err(await follower.get("/v1/jobs/only-on-leader"), 404, "not_found")
        assert follower_rt.barriers == 1
        # A barrier it cannot serve itself (NotLeader): the read is forwarded to the leader.
        follower_rt.barrier_error = NotLeader(1, follower_rt.leader_url)
        r = await follower.get("/v1/jobs/only-on-leader")
        assert r.status == 200 and (await r.json())["id"] == "only-on-leader"
        r = await follower.get(
            "/v1/jobs/only-on-leader", headers={"X-Raft-No-Proxy": "1"}, allow_redirects=False
        )
        assert r.status == 307 and r.headers["Location"].startswith(follower_rt.leader_url)
        # Stale reads never take a barrier.
        before = follower_rt.barriers
        await _err(
            await follower.get("/v1/jobs/only-on-leader?consistency=stale"), 404, "not_found"
        )
        assert follower_rt.barriers == before
        # Mutations go to the leader (with their key); snapshot is this node's own.
        r = await follower.put(
            "/v1/queues/q", json={"paused": True}, headers={"Idempotency-Key": "pq"}
        )
        assert r.status == 200 and leader_rt.state.queues["q"].config.paused
        r = await follower.post("/v1/cluster/snapshot")
        assert r.status == 200 and follower_rt.calls[-1][0] == "snapshot"
        assert not any(call[0] == "snapshot" for call in leader_rt.calls)
        follower_rt.barrier_error = None
        r = await follower.get("/v1/cluster/backup")
        assert r.status == 200 and follower_rt.calls[-1][0] == "backup"
        # The leader moved away mid-request: propose says NotLeader and the API forwards.
        leader_rt.role = "follower"
        leader_rt.leader_url = follower_rt.leader_url
        r = await leader.post("/v1/jobs", json={"queue": "q"}, headers=_h(X_Raft_Proxied="1"))
        await _err(r, 503, "no_leader")
    finally:
        await follower.close()
        await leader.close()


async def test_metrics_and_openapi_content(rt_client: Any) -> None:
    _, c = rt_client
    await c.post("/v1/jobs", json={"id": "m", "queue": "mq"})
    r = await c.post("/v1/queues/mq/lease", json={"worker_id": "w"})
    assert r.status == 200
    r = await c.get("/metrics")
    assert r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    for line in [
        "raftsched_raft_term 3.0",
        'raftsched_raft_role{role="leader"} 1.0',
        'raftsched_raft_role{role="follower"} 0.0',
        "raftsched_raft_commit_index 2.0",
        'raftsched_proposals_total{outcome="committed"} 2.0',
        'raftsched_fsync_seconds_bucket{le="0.001"} 2.0',
        'raftsched_fsync_seconds_bucket{le="+Inf"} 3.0',
        'raftsched_peer_queue_bytes{peer="2"} 10.0',
        'raftsched_leases{queue="mq"} 1.0',
        'raftsched_jobs{queue="mq",state="leased"} 1.0',
        "raftsched_lease_expirations_total 0.0",
        'raftsched_http_requests_total{method="POST",route="/v1/queues/{queue}/lease",'
        'status="200"} 1.0',
    ]:
        assert line in text, line
    doc = await (await c.get("/v1/openapi.json")).json()
    submit = doc["paths"]["/v1/jobs"]["post"]
    schema = submit["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["queue"] and schema["additionalProperties"] is False
    assert schema["properties"]["priority"]["type"] == "integer"
    assert {"201", "400", "409", "413", "429", "503", "307"} <= set(submit["responses"])
    codes = submit["responses"]["409"]["x-error-codes"]
    assert {"conflict", "stale_token", "idempotency_key_reused"} <= set(codes)
    assert "queue_full" in submit["responses"]["429"]["x-error-codes"]
    assert "payload_too_large" in submit["responses"]["413"]["x-error-codes"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    lease = doc["paths"]["/v1/queues/{queue}/lease"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in lease["parameters"])


async def test_lease_poll_never_spins_on_a_level_triggered_wait(rt_client: Any) -> None:
    rt, c = rt_client
    rt.level_triggered = True
    await c.put("/v1/queues/q", json={"max_in_flight": 0})  # pending, but nothing leasable
    await c.post("/v1/jobs", json={"id": "held", "queue": "q"})
    proposed = len(rt.proposed)
    r = await c.post("/v1/queues/q/lease", json={"worker_id": "w", "wait_ms": 300})
    assert (await r.json()) == {"leases": []}
    assert len(rt.proposed) == proposed  # nothing leasable: nothing proposed
    assert rt.waits <= 300 / 50 + 2  # backed off instead of spinning


async def test_state_limits_answer_413_and_429_with_retry_after() -> None:
    rt = FakeRuntime(limits=Limits(max_jobs_per_queue=1, max_batch_jobs=2))
    c = await _client(rt)
    try:
        assert (await c.post("/v1/jobs", json={"queue": "full"})).status == 201
        r = await c.post("/v1/jobs", json={"queue": "full"})
        err = await _err(r, 429, "queue_full")
        assert err["details"]["queue"] == "full" and r.headers["Retry-After"] == "1"
        r = await c.post("/v1/jobs:batch", json={"jobs": [{"queue": "b"}] * 3})
        assert (await _err(r, 413, "batch_too_large"))["details"]["field"] == "jobs"
    finally:
        await c.close()


async def test_schedule_get_one_and_missing(rt_client: Any) -> None:
    _, c = rt_client
    await _err(await c.get("/v1/schedules/nope"), 404, "not_found")
    await _err(
        await c.post("/v1/schedules/nope/backfill", json={"from": 0, "to": 1}), 404, "not_found"
    )
    body = {"cron": "0 * * * *", "timezone": "Europe/Paris", "template": {"queue": "q"}}
    assert (await c.put("/v1/schedules/hourly", json=body)).status == 201
    doc = (await (await c.get("/v1/schedules/hourly")).json())["schedule"]
    assert doc["timezone"] == "Europe/Paris" and doc["next_fire_at"] is not None
    err = await _err(
        await c.put("/v1/schedules/x", json={**body, "timezone": "Mars/Base"}), 400, "invalid"
    )
    assert err["details"]["field"] == "timezone"
    err = await _err(await c.put("/v1/schedules/x", json={"cron": "0 * * * *"}), 400, "invalid")
    assert err["details"]["field"] == "template"


async def test_readyz_reasons(rt_client: Any) -> None:
    rt, c = rt_client
    assert (await (await c.get("/readyz")).json())["ready"] is True
    rt.disk_healthy, rt.shutting_down = False, True
    r = await c.get("/readyz")
    err = await _err(r, 503, "not_ready")
    assert err["details"]["reasons"] == ["disk unhealthy", "shutting down"]
    assert r.headers["Retry-After"] == "1"
    assert (await c.get("/healthz")).status == 200  # the process still serves


async def test_abandoned_long_poll_leases_nothing() -> None:
    """Served like node_cmd serves it (AppRunner defaults: a handler is NOT cancelled when its
    client disconnects; aiohttp's TestServer would cancel it)."""
    rt = FakeRuntime()
    runner = web.AppRunner(build_app(rt))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    try:
        async with aiohttp.ClientSession() as session:
            poll = asyncio.ensure_future(
                session.post(
                    f"{base}/v1/queues/gone/lease", json={"worker_id": "w", "wait_ms": 3000}
                )
            )
            while rt.waits == 0:  # the handler is waiting for work
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            poll.cancel()  # the client goes away
            with contextlib.suppress(asyncio.CancelledError):
                await poll
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/jobs", json={"id": "g", "queue": "gone"}) as r:
                assert r.status == 201  # wakes the waiting handler
            done = 'route="/v1/queues/{queue}/lease"'
            while True:  # until the abandoned handler has answered
                async with session.get(f"{base}/metrics") as r:
                    if done in await r.text():
                        break
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            async with session.get(f"{base}/v1/jobs/g") as r:
                assert (await r.json())["state"] == "pending"  # not leased to nobody
        assert not any(isinstance(cmd, Lease) for cmd in rt.proposed)
    finally:
        await runner.cleanup()


async def test_job_list_pages_follow_the_cursor(rt_client: Any) -> None:
    _, c = rt_client
    jobs = [{"id": f"s{i:02}", "queue": "even" if i % 2 == 0 else "odd"} for i in range(30)]
    assert (await c.post("/v1/jobs:batch", json={"jobs": jobs})).status == 201
    seen: list[str] = []
    after: int | None = None
    while True:  # every "odd" job once, in creation order
        url = "/v1/jobs?queue=odd&limit=4" + ("" if after is None else f"&after={after}")
        page = await (await c.get(url)).json()
        assert len(page["jobs"]) <= 4
        seen += [j["id"] for j in page["jobs"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"s{i:02}" for i in range(1, 30, 2)]
    page = await (await c.get("/v1/jobs?limit=3&state=pending")).json()
    assert [j["id"] for j in page["jobs"]] == ["s00", "s01", "s02"]
    assert page["next_after"] == page["jobs"][-1]["seq"]


async def test_forwarding_to_an_unreachable_leader_is_a_503() -> None:
    rt = FakeRuntime()
    rt.role, rt.leader_id = "follower", 2
    rt.leader_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    c = await _client(rt)
    try:
        r = await c.post("/v1/jobs", json={"queue": "q"}, headers={"Idempotency-Key": "u1"})
        err = await _err(r, 503, "outcome_unknown")  # the leader may have applied it
        assert "Idempotency-Key" in err["message"] and r.headers["Retry-After"] == "1"
        rt.barrier_error = NotLeader(2, rt.leader_url)
        await _err(await c.get("/v1/jobs/x"), 503, "no_leader")  # a read: nothing to know
    finally:
        await c.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_waiting_long_polls_are_bounded(rt_client: Any) -> None:
    rt, c = rt_client
    rt.config.limits.max_long_polls = 1
    first = asyncio.ensure_future(
        c.post("/v1/queues/lp/lease", json={"worker_id": "w1", "wait_ms": 1500})
    )
    deadline = asyncio.get_running_loop().time() + 5
    while rt.waits == 0:  # the first poll is waiting
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    r = await c.post("/v1/queues/lp/lease", json={"worker_id": "w2", "wait_ms": 1500})
    err = await _err(r, 429, "overloaded")
    assert r.headers["Retry-After"] == "1" and "long polls" in err["message"]
    r = await c.post("/v1/queues/lp/lease", json={"worker_id": "w2", "wait_ms": 0})
    assert r.status == 200  # a request that does not wait is not held back
    await c.post("/v1/jobs", json={"id": "lp1", "queue": "lp"})
    assert [g["job_id"] for g in (await (await first).json())["leases"]] == ["lp1"]


async def test_stored_refusal_is_not_raised_itself(rt_client: Any) -> None:
    rt, c = rt_client
    h = {"Idempotency-Key": "refused-once"}
    for _ in range(2):
        await _err(await c.post("/v1/jobs/ghost/cancel", headers=h), 404, "not_found")
    [(_, (_, stored, _))] = list(rt.state.idempotency.items())
    assert isinstance(stored, Refused) and stored.error.__traceback__ is None


async def test_openapi_answer_schemas_match_the_routes() -> None:
    routes = {(r.method, r.path) for r in ROUTES}
    assert set(openapi.ANSWERS) <= routes  # no schema for a route that does not exist
    doc = openapi.document(ROUTES)
    text = json.dumps(doc)
    for ref in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    job_answer = doc["paths"]["/v1/jobs/{id}"]["get"]["responses"]["200"]
    assert job_answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Job"
    }


async def test_dead_letters_workflows_settings_and_clock(rt_client: Any) -> None:
    rt, c = rt_client
    await c.post("/v1/jobs", json={"id": "d1", "queue": "dl", "max_attempts": 1})
    [grant] = (await (await c.post("/v1/queues/dl/lease", json={"worker_id": "w"})).json())[
        "leases"
    ]
    await c.post("/v1/jobs/d1/fail", json={"token": grant["token"], "retryable": False})
    r = await c.post("/v1/jobs:requeue", json={"job_ids": ["d1"], "max_attempts": 2})
    assert r.status == 200 and (await r.json())["jobs"][0]["state"] == "pending", await r.text()
    await _err(await c.post("/v1/jobs:requeue", json={"job_ids": []}), 400, "invalid")
    await _err(await c.post("/v1/jobs:purge", json={"job_ids": ["nope"]}), 404, "not_found")
    await c.post(
        "/v1/workflows",
        json={
            "id": "wf9",
            "jobs": [
                {"id": "x1", "queue": "wq"},
                {"id": "x2", "queue": "wq", "depends_on": ["x1"]},
            ],
        },
    )
    status = await (await c.get("/v1/workflows/wf9")).json()
    assert status["workflow"] == "wf9" and status["done"] is False
    await _err(await c.get("/v1/workflows/none"), 404, "not_found")
    r = await c.post("/v1/workflows/wf9/cancel", json={"reason": "stop"})
    assert sorted((await r.json())["cancelled"]) == ["x1", "x2"]
    assert (await (await c.get("/v1/workflows/wf9")).json())["done"] is True
    settings = (await (await c.get("/v1/cluster/settings")).json())["settings"]
    assert settings["max_batch_jobs"] == rt.state.limits.max_batch_jobs
    r = await c.patch("/v1/cluster/settings", json={"settings": {"max_batch_jobs": 5}})
    assert r.status == 200, await r.text()
    assert rt.state.limits.max_batch_jobs == 5  # and the API enforces it from now on
    err = await _err(
        await c.post("/v1/jobs:batch", json={"jobs": [{"queue": "q"}] * 6}), 413, "batch_too_large"
    )
    assert err["details"]["field"] == "jobs"
    err = await _err(
        await c.patch("/v1/cluster/settings", json={"settings": {"nope": 1}}), 400, "invalid"
    )
    assert err["details"]["field"] == "settings.nope"
    r = await c.post("/v1/cluster/clock", json={"to": int(time.time() * 1000) - 10})
    assert r.status == 200 and "clock" in await r.json(), await r.text()
    future = {"to": int(time.time() * 1000) + 3_600_000}  # beyond the entry's own stamp
    err = await _err(await c.post("/v1/cluster/clock", json=future), 400, "invalid")
    assert err["details"]["field"] == "to"
    await _err(await c.post("/v1/cluster/clock", json={"to": "soon"}), 400, "invalid")


async def test_batched_reports_answer_per_item(rt_client: Any) -> None:
    rt, c = rt_client
    r = await c.post(
        "/v1/jobs:batch", json={"jobs": [{"id": f"r{i}", "queue": "rq"} for i in range(3)]}
    )
    assert r.status == 201
    r = await c.post("/v1/queues/rq/lease", json={"worker_id": "w", "max_jobs": 3})
    tokens = {g["job_id"]: g["token"] for g in (await r.json())["leases"]}
    applied = rt.state.last_index
    r = await c.post(
        "/v1/jobs:complete",
        json={
            "reports": [
                {"job_id": "r0", "token": tokens["r0"], "result": {"n": 0}},
                {"job_id": "r1", "token": tokens["r1"] + 1, "result": 1},
                {"job_id": "r2", "token": tokens["r2"], "error": "boom", "retryable": False},
            ]
        },
    )
    assert r.status == 200, await r.text()
    results = (await r.json())["results"]
    assert rt.state.last_index == applied + 1  # one entry for the three reports
    assert results[0] == {"job_id": "r0", "ok": True, "state": "succeeded"}
    assert results[1]["job_id"] == "r1" and results[1]["error"]["code"] == "stale_token"
    assert set(results[1]["error"]) == {"code", "message", "details"}
    assert results[2] == {"job_id": "r2", "ok": True, "state": "dead"}
    assert rt.state.get_job("r1")["state"] == "leased"
    err = await _err(
        await c.post("/v1/jobs:complete", json={"reports": [{"job_id": "r1", "token": "x"}]}),
        400,
        "invalid",
    )
    assert err["details"]["field"] == "reports[0].token"
    await _err(await c.post("/v1/jobs:complete"), 400, "invalid")
    await _err(await c.post("/v1/jobs:complete", json={"reports": []}), 400, "invalid")
    too_many = [{"job_id": f"x{i}", "token": 1} for i in range(rt.state.limits.max_batch_jobs + 1)]
    await _err(
        await c.post("/v1/jobs:complete", json={"reports": too_many}), 413, "batch_too_large"
    )


async def test_batched_reports_need_the_worker_role() -> None:
    tokens = {hash_token(t): t.split("-")[0] for t in ("submit-t", "worker-t", "read-t")}
    c = await _client(FakeRuntime(FakeConfig(auth=True, tokens=tokens)))
    body = {"reports": [{"job_id": "nope", "token": 1}]}
    try:
        for tok in ("read-t", "submit-t"):
            headers = {"Authorization": f"Bearer {tok}"}
            await _err(
                await c.post("/v1/jobs:complete", json=body, headers=headers), 403, "forbidden"
            )
        r = await c.post(
            "/v1/jobs:complete", json=body, headers={"Authorization": "Bearer worker-t"}
        )
        assert r.status == 200
        assert (await r.json())["results"][0]["error"]["code"] == "not_found"
    finally:
        await c.close()

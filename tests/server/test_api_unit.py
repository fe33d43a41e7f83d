"""HTTP API error mapping and hops against a fake runtime (no Raft): every status of SPEC §5.

The live-cluster tests (test_api_cluster.py) cover the same routes through real node processes;
these pin down the mapping itself: parse errors name the field, refusals keep their status,
runtime errors become 429/503 with Retry-After, followers forward or redirect, auth roles.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftsched.server.api import ROUTES, build_app
from raftsched.server.auth import hash_token
from raftsched.server.errors import OutcomeUnknown, Overloaded
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
    await _err(r, 503, "outcome_unknown")
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

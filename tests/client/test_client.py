"""The client against the fake API (real HTTP): routes, typed errors, retries, leader following."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftsched.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    NoLeader,
    NotFound,
    StaleToken,
    Unauthorized,
    Unavailable,
    split_cluster,
)
from tests.client.fake_api import FakeApi, free_port


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as fake:
        yield fake


@pytest.fixture
def client(api: FakeApi) -> Iterator[Client]:
    with Client(api.url, timeout_s=3.0) as c:
        yield c


def test_submit_get_lease_complete_round_trip(client: Client) -> None:
    job = client.submit("q", {"cmd": ["true"]}, id="j1", max_attempts=2)
    assert (job.id, job.state, job.queue) == ("j1", "pending", "q")
    [lease] = client.lease("q", worker_id="w1", max_jobs=5)
    assert lease.job_id == "j1" and lease.token >= 1 and lease.attempt == 1
    assert lease.payload == {"cmd": ["true"]}
    assert client.heartbeat_lease("j1", lease.token) is not None
    client.complete("j1", lease.token, {"ok": 1})
    done = client.get_job("j1")
    assert done.state == "succeeded" and done.result == {"ok": 1} and done.terminal


def test_stale_token_is_typed_and_not_found_too(client: Client) -> None:
    client.submit("q", None, id="j2")
    [lease] = client.lease("q", worker_id="w1")
    with pytest.raises(StaleToken) as info:
        client.complete("j2", lease.token + 7, None)
    assert info.value.status == 409 and isinstance(info.value, Conflict)
    with pytest.raises(NotFound):
        client.get_job("nope")


def test_bad_request_names_the_field(client: Client) -> None:
    with pytest.raises(BadRequest) as info:
        client.submit("q", None, max_attempts=0)
    assert info.value.field == "max_attempts"


def test_duplicate_id_with_other_spec_is_conflict(client: Client) -> None:
    client.submit("q", 1, id="dup")
    assert client.submit("q", 1, id="dup").id == "dup"  # same spec: the same job
    with pytest.raises(Conflict):
        client.submit("q", 2, id="dup")


def test_503_is_retried_with_the_same_idempotency_key(api: FakeApi, client: Client) -> None:
    api.fail_next = [503, 503]
    job = client.submit("q", "x")
    posts = [r for r in api.requests if r[0] == "POST"]
    assert len(posts) == 3
    keys = {r[2] for r in posts}
    assert len(keys) == 1 and None not in keys
    assert client.get_job(job.id).state == "pending"


def test_caller_idempotency_key_makes_a_retry_return_the_first_answer(client: Client) -> None:
    a = client.submit("q", "x", idempotency_key="k1")
    b = client.submit("q", "x", idempotency_key="k1")
    assert a.id == b.id
    assert len(client.list_jobs(queue="q").jobs) == 1


def test_persistent_503_raises_no_leader_after_the_deadline(api: FakeApi) -> None:
    api.fail_next = [503] * 1000
    with Client(api.url, timeout_s=0.5) as c, pytest.raises(NoLeader):
        c.queues()


def test_unreachable_node_falls_over_to_the_next(api: FakeApi) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with Client([dead, api.url], timeout_s=3.0) as c:
        assert c.health() == {"ok": True}
    with Client(dead, timeout_s=0.3) as c, pytest.raises(Unavailable):
        c.health()


def test_307_moves_to_the_leader() -> None:
    with FakeApi() as leader, FakeApi() as follower:
        follower.redirect_to = leader.url
        with Client(follower.url, timeout_s=3.0) as c:
            c.submit("q", 1, id="via-follower")
        assert leader.state.get_job("via-follower") is not None
        assert follower.state.get_job("via-follower") is None


def test_token_is_sent_and_401_is_typed() -> None:
    with FakeApi(token="s3cret") as api:
        with Client(api.url, token="s3cret") as c:
            c.queues()
        with Client(api.url, token="wrong") as c, pytest.raises(Unauthorized):
            c.queues()


def test_list_cancel_queues_workers_schedules(client: Client) -> None:
    for i in range(3):
        client.submit("lq", i, id=f"l{i}")
    page = client.list_jobs(queue="lq", limit=2)
    assert [j.id for j in page.jobs] == ["l0", "l1"] and page.next_after
    assert client.cancel("l2").id == "l2"
    assert client.get_job("l2").state == "cancelled"
    client.worker_heartbeat("w9", capacity=2, queues=["lq"])
    assert any(w["id"] == "w9" for w in client.workers()["workers"])
    client.put_schedule("nightly", cron="0 3 * * *", template={"queue": "lq"})
    assert [s["name"] for s in client.schedules()["schedules"]] == ["nightly"]
    client.delete_schedule("nightly")
    assert "lq" in str(client.queues())


def test_split_cluster() -> None:
    assert split_cluster("a:1, http://b:2/") == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError):
        split_cluster(" , ")


@pytest.mark.asyncio
async def test_async_client_wait(api: FakeApi) -> None:
    async with AsyncClient(api.url, timeout_s=3.0) as c:
        await c.submit("aq", None, id="a1")
        [lease] = await c.lease("aq", worker_id="w", wait_ms=100)
        await c.fail("a1", lease.token, {"msg": "boom"}, retryable=False)
        job = await c.wait("a1", timeout_s=3.0)
        assert job.state == "dead" and job.error == {"msg": "boom"}


def test_workflow_gets_an_id_and_answers_its_jobs(client: Client) -> None:
    wf = client.submit_workflow(
        [{"id": "w-a", "queue": "wq"}, {"id": "w-b", "queue": "wq", "depends_on": ["w-a"]}]
    )
    assert wf.id.startswith("wf-") and [j.id for j in wf.jobs] == ["w-a", "w-b"]
    assert [j.state for j in wf.jobs] == ["pending", "waiting"]
    assert all(j.raw["workflow"] == wf.id and j.raw["created"] for j in wf.jobs)
    named = client.submit_workflow([{"id": "w-c", "queue": "wq"}], id="nightly-1")
    assert named.id == "nightly-1" and named.jobs[0].raw["workflow"] == "nightly-1"


def test_lease_grant_carries_the_job_document(client: Client) -> None:
    client.submit("lg", {"n": 1}, id="lg1", timeout_ms=5000)
    [lease] = client.lease("lg", worker_id="w1")
    assert lease.raw["job"]["id"] == "lg1" and lease.raw["job"]["state"] == "leased"
    assert (lease.job_id, lease.payload, lease.timeout_ms) == ("lg1", {"n": 1}, 5000)
    assert lease.attempt == 1 and lease.lease_expires_at is not None
    leased = [e for e in lease.raw["job"]["events"] if e["state"] == "leased"]
    assert lease.leased_at == leased[-1]["at"] and leased[-1]["token"] == lease.token


def test_cancel_answers_the_cancelled_job(client: Client) -> None:
    client.submit("cq", None, id="cx")
    job = client.cancel("cx", reason="not needed")
    assert job.id == "cx" and job.state == "cancelled" and job.raw["events"]


def test_partial_queue_update_keeps_other_fields(client: Client) -> None:
    client.configure_queue("pq", max_in_flight=3, lease_ms=5000)
    client.configure_queue("pq", paused=True)
    config = client.get_queue("pq")["config"]
    assert config == {"max_in_flight": 3, "lease_ms": 5000, "max_attempts": None, "paused": True}
    client.configure_queue("pq", reset=["max_in_flight"])
    assert client.get_queue("pq")["config"]["max_in_flight"] is None
    assert client.get_queue("pq")["config"]["lease_ms"] == 5000
    with pytest.raises(ValueError):
        client.configure_queue("pq", reset=["paused"])
    with pytest.raises(NotFound):
        client.get_queue("never-seen")


def test_batch_is_201_when_new_and_200_on_replay(api: FakeApi, client: Client) -> None:
    first = client.submit_batch([{"id": "bb1", "queue": "bq"}, {"id": "bb2", "queue": "bq"}])
    again = client.submit_batch([{"id": "bb1", "queue": "bq"}, {"id": "bb2", "queue": "bq"}])
    assert [j.raw["created"] for j in first] == [True, True]
    assert [j.raw["created"] for j in again] == [False, False]


def test_brief_batch_answers_the_records(api: FakeApi, client: Client) -> None:
    jobs = client.submit_batch([{"id": "br1", "queue": "bq"}], brief=True)
    assert [(j.id, j.state, j.queue) for j in jobs] == [("br1", "pending", "")]
    assert set(jobs[0].raw) == {"id", "state", "seq", "created"}
    [full] = client.submit_batch([{"id": "br1", "queue": "bq"}])
    assert full.queue == "bq" and full.raw["created"] is False


def test_get_schedule(client: Client) -> None:
    client.put_schedule("gs", cron="0 3 * * *", template={"queue": "sq"})
    doc = client.get_schedule("gs")
    assert doc["name"] == "gs" and doc["cron"] == "0 3 * * *" and doc["next_fire_at"]
    with pytest.raises(NotFound):
        client.get_schedule("absent")


def test_client_asks_followers_not_to_proxy_and_survives_a_redirect_loop() -> None:
    with FakeApi() as a, FakeApi() as b:
        a.redirect_to, b.redirect_to = b.url, a.url  # stale views pointing at each other
        with Client(a.url, timeout_s=0.5) as c, pytest.raises(NoLeader):
            c.queues()
        assert 5 < len(a.requests) + len(b.requests) < 200  # bounded, with backoff
        a.redirect_to = None
        with Client(b.url, timeout_s=3.0) as c:
            assert "queues" in c.queues()


def test_the_no_proxy_header_is_sent(api: FakeApi, client: Client) -> None:
    client.queues()
    assert api.no_proxy_seen


def test_only_calls_whose_retry_could_apply_twice_carry_a_generated_key(
    api: FakeApi, client: Client
) -> None:
    """complete/fail/heartbeats are acknowledged again on a retry with the same token, so they
    take no place in the cluster's bounded idempotency table; submit and lease do."""
    client.submit("kq", None, id="k1")
    client.worker_heartbeat("kw", capacity=1, queues=["kq"])
    [lease] = client.lease("kq", worker_id="kw")
    client.heartbeat_lease("k1", lease.token)
    api.fail_on["/v1/jobs/k1/complete"] = [503]
    client.complete("k1", lease.token, 1)  # retried after the 503, without a key
    keys = {path: key for _, path, key in api.requests}
    assert keys["/v1/jobs"] and keys["/v1/queues/kq/lease"]
    assert keys["/v1/workers/kw/heartbeat"] is None and keys["/v1/jobs/k1/heartbeat"] is None
    assert keys["/v1/jobs/k1/complete"] is None
    assert [p for _, p, _ in api.requests].count("/v1/jobs/k1/complete") == 2
    client.complete("k1", lease.token, 1)  # a retry after success is acknowledged again
    assert client.get_job("k1").state == "succeeded"


def test_report_batch_answers_per_report_without_a_key(api: FakeApi, client: Client) -> None:
    client.submit_batch([{"id": f"rb{i}", "queue": "rbq"} for i in range(3)])
    tokens = {lease.job_id: lease.token for lease in client.lease("rbq", worker_id="w", max_jobs=3)}
    reports = [
        {"job_id": "rb0", "token": tokens["rb0"], "result": {"n": 0}},
        {"job_id": "rb1", "token": tokens["rb1"] + 9, "result": None},
        {"job_id": "rb2", "token": tokens["rb2"], "error": "boom", "retryable": False},
    ]
    api.fail_on["/v1/jobs:complete"] = [503]
    results = client.report_batch(reports)  # retried after the 503: acknowledged the same way
    assert [r["job_id"] for r in results] == ["rb0", "rb1", "rb2"]
    assert results[0] == {"job_id": "rb0", "ok": True, "state": "succeeded"}
    assert results[1]["error"]["code"] == "stale_token"
    assert results[2] == {"job_id": "rb2", "ok": True, "state": "dead"}
    assert client.get_job("rb0").result == {"n": 0}
    assert client.get_job("rb1").state == "leased"
    sent = [(p, key) for _, p, key in api.requests if p == "/v1/jobs:complete"]
    assert sent == [("/v1/jobs:complete", None)] * 2
    with pytest.raises(BadRequest) as info:
        client.report_batch([{"job_id": "rb1", "token": 0}])
    assert info.value.details["field"] == "reports[0].token"


def test_worker_heartbeat_sends_the_incarnation(api: FakeApi, client: Client) -> None:
    client.worker_heartbeat("iw", capacity=2, queues=["q"], incarnation="host:1:2")
    first = api.state.workers["iw"].incarnation
    assert api.state.workers["iw"].process == "host:1:2"
    client.worker_heartbeat("iw", capacity=2, queues=["q"], incarnation="host:1:2")
    assert api.state.workers["iw"].incarnation == first  # the same run: no new incarnation
    client.worker_heartbeat("iw", capacity=2, queues=["q"], incarnation="host:1:3")
    assert api.state.workers["iw"].process == "host:1:3"
    assert api.state.workers["iw"].incarnation > first

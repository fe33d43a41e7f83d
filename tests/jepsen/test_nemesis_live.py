"""Each nemesis fault has its real effect on a live 3-node cluster, and heal undoes it.

One cluster for the module (startup is the expensive part); each test applies one fault
through `Nemesis.apply`, observes the cluster over HTTP (with deadlines), heals, and waits
until the cluster has converged again, so the next test starts from a healthy cluster. The
history events the nemesis wrote are checked at the end of each test.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from jepsen.cluster import Cluster, ClusterError, ClusterOptions
from jepsen.history import HistoryWriter, OpType, read_history
from jepsen.http_client import NodeApi, new_session
from jepsen.nemesis import FaultSpec, Nemesis
from jepsen.observe import NodeStatus, leader, status, statuses, wait_converged
from jepsen.recorder import Recorder

T = TypeVar("T")
DEADLINE_S = 20.0


@dataclass
class Live:
    cluster: Cluster
    api: NodeApi
    nemesis: Nemesis
    history: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("live") / "cluster", ClusterOptions(nodes=3))
    try:
        c.start()
        yield c
    finally:
        codes = c.stop()
    assert set(codes.values()) == {0}, f"unclean exits {codes}: {c.crashes}"


@pytest_asyncio.fixture
async def live(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Live]:
    history = tmp_path / "history.jsonl"
    async with new_session() as session:
        api = NodeApi(session, cluster.urls, cluster.tokens)
        assert await wait_converged(api, cluster.node_ids, DEADLINE_S), "cluster not healthy"
        with HistoryWriter(history) as writer:
            nemesis = Nemesis(
                cluster=cluster,
                api=api,
                recorder=Recorder(writer),
                rng=random.Random(1),
                faults=[],
                fault_s=1,
                heal_s=1,
            )
            try:
                yield Live(cluster, api, nemesis, history)
            finally:
                await nemesis.heal_all()
                converged = await wait_converged(api, cluster.node_ids, DEADLINE_S)
        assert converged, "the cluster did not converge after heal"


async def eventually(what: str, check: Callable[[], Awaitable[T | None]]) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = await check()
        if value is not None and value is not False:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def nemesis_events(history: Path) -> list[tuple[str, object]]:
    return [(op.f, op.value) for op in read_history(history) if op.process == "nemesis"]


async def leader_among(live: Live, nodes: list[int], *, not_: int) -> NodeStatus | None:
    """A leader other than `not_` that every node of `nodes` follows."""
    seen = await statuses(live.api, nodes)
    if len(seen) < len(nodes):
        return None
    leads = {s.leader_id for s in seen.values()}
    lead = next((s for s in seen.values() if s.role == "leader"), None)
    if lead is None or lead.node_id == not_ or leads != {lead.node_id}:
        return None
    return lead


@pytest.mark.asyncio
async def test_kill_leader_then_restart(live: Live) -> None:
    old = await leader(live.api, live.cluster.node_ids)
    assert old is not None
    await live.nemesis.apply("kill", "leader")
    assert not live.cluster.alive(old)
    rest = [n for n in live.cluster.node_ids if n != old]
    await eventually("a new leader", lambda: leader_among(live, rest, not_=old))
    await live.nemesis.heal()
    assert live.cluster.alive(old)
    await eventually("the killed node to serve again", lambda: status(live.api, old))
    assert nemesis_events(live.history) == [
        ("kill", {"kind": "leader", "nodes": [old]}),
        ("start", {"nodes": [old]}),
    ]


@pytest.mark.asyncio
async def test_pause_stops_answers_until_resume(live: Live) -> None:
    await live.nemesis.apply("pause", "random")
    (paused,) = [n for n in live.cluster.node_ids if live.cluster.paused(n)]
    assert await status(live.api, paused, timeout_s=0.5) is None, "a paused node answered"
    await live.nemesis.heal()
    await eventually("the resumed node to answer", lambda: status(live.api, paused))
    assert [f for f, _ in nemesis_events(live.history)] == ["pause", "resume"]


@pytest.mark.asyncio
async def test_isolating_the_leader_elects_another(live: Live) -> None:
    old = await leader(live.api, live.cluster.node_ids)
    assert old is not None
    await live.nemesis.apply("partition", "isolate-leader")
    rest = [n for n in live.cluster.node_ids if n != old]
    new = await eventually("the majority to elect", lambda: leader_among(live, rest, not_=old))
    # The old leader hears nothing: it cannot know the new term's leader.
    isolated = await status(live.api, old)
    assert isolated is not None and isolated.leader_id != new.node_id
    await live.nemesis.heal()
    events = nemesis_events(live.history)
    assert events[0][0] == "partition" and events[1] == ("heal", {"kind": "partition"})


@pytest.mark.asyncio
async def test_one_way_cut_of_the_leaders_outbound_links(live: Live) -> None:
    old = await leader(live.api, live.cluster.node_ids)
    assert old is not None
    others = [n for n in live.cluster.node_ids if n != old]
    live.cluster.set_blocked({(old, o) for o in others})  # the followers stop hearing it
    try:
        new = await eventually("followers to elect", lambda: leader_among(live, others, not_=old))
        # The old leader still hears the new one (its inbound links pass): it follows.
        followed = await eventually(
            "the old leader to learn the new leader",
            lambda: _follows(live, old, new.node_id),
        )
        assert followed
    finally:
        live.cluster.heal_network()


async def _follows(live: Live, node: int, leader_id: int) -> bool:
    st = await status(live.api, node)
    return st is not None and st.leader_id == leader_id and st.role != "leader"


@pytest.mark.asyncio
async def test_transfer_moves_leadership(live: Live) -> None:
    old = await leader(live.api, live.cluster.node_ids)
    assert old is not None
    await live.nemesis.apply("transfer", "random")
    ((f, value),) = nemesis_events(live.history)
    assert f == "transfer-leader" and isinstance(value, dict)
    assert value["from"] == old and value["status"] == 202, value
    target = value["to"]
    rest = live.cluster.node_ids
    lead = await eventually("the transfer", lambda: leader_among(live, rest, not_=old))
    assert lead.node_id == target
    await live.nemesis.heal()


@pytest.mark.asyncio
async def test_kill_all_after_ack_strikes_right_after_a_write(live: Live) -> None:
    recorder = live.nemesis.recorder
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            node = live.cluster.node_ids[n % len(live.cluster.node_ids)]
            value = {"job_id": f"ack{n}", "queue": "q"}
            recorder.event(type="invoke", process=0, f="submit", value=value, node=node)
            outcome = await live.api.call(
                node,
                "POST",
                "/v1/jobs",
                role="submit",
                timeout_s=2,
                body={"id": f"ack{n}", "queue": "q"},
            )
            kind: OpType = "ok" if outcome.verdict == "ok" else "fail"
            recorder.event(type=kind, process=0, f="submit", value=None, node=node)
            if kind == "fail":
                await asyncio.sleep(0.05)

    task = asyncio.create_task(writer())
    try:
        await live.nemesis.apply("kill", "all-after-ack")
    finally:
        stop.set()
        await task
    assert not any(live.cluster.alive(n) for n in live.cluster.node_ids)
    ops = read_history(live.history)
    (kill,) = [op for op in ops if op.f == "kill"]
    struck_after = ops[kill.value["after"]]
    assert struck_after.type == "ok" and struck_after.f == "submit"
    # The kill is the very next event after the acknowledgement: its own hook struck.
    assert kill.index == struck_after.index + 1
    await live.nemesis.heal()
    assert all(live.cluster.alive(n) for n in live.cluster.node_ids)


@pytest.mark.asyncio
async def test_delay_slows_replication_until_heal(live: Live) -> None:
    await live.nemesis.apply("delay", "uniform")
    ((f, value),) = nemesis_events(live.history)
    assert f == "delay" and isinstance(value, dict)
    delay_s = value["delay_ms"] / 1000

    async def timed_submit(job_id: str) -> float | None:
        lead = await leader(live.api, live.cluster.node_ids)
        if lead is None:
            return None
        started = time.monotonic()
        body = {"id": job_id, "queue": "q"}
        outcome = await live.api.call(
            lead, "POST", "/v1/jobs", role="submit", timeout_s=5, body=body
        )
        return time.monotonic() - started if outcome.verdict == "ok" else None

    # A write commits after one round trip to a follower: two link delays at least.
    slow = await eventually("a write under delay", lambda: timed_submit("delay-1"))
    assert slow >= 2 * delay_s, (slow, delay_s)
    await live.nemesis.heal()
    assert nemesis_events(live.history)[1] == ("heal", {"kind": "delay"})
    assert live.cluster.delay_ms == 0


@pytest.mark.asyncio
async def test_a_node_dying_under_a_fault_is_recorded_and_healed(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vanished(node_id: int) -> None:
        raise ClusterError(f"node {node_id} is not running")

    monkeypatch.setattr(live.cluster, "pause", vanished)
    live.nemesis.faults = [FaultSpec("pause", ("random",))]
    live.nemesis.heal_s = live.nemesis.fault_s = 0.1
    await live.nemesis.run(time.monotonic() + 0.15)
    events = nemesis_events(live.history)
    assert events[0][0] == "error" and "not running" in str(events[0][1])
    assert events[1][0] == "heal" and isinstance(events[1][1], dict)
    assert events[1][1]["kind"] == "all"


def last_start(live: Live, node: int) -> str:
    """The node's log since its latest start by the harness."""
    text = live.cluster.nodes[node].log_path.read_text(errors="replace")
    return text.rpartition("--- jepsen: start #")[2]


@pytest.mark.asyncio
async def test_skew_restarts_the_leader_with_its_clock_off_and_gives_it_back_the_lead(
    live: Live,
) -> None:
    await live.nemesis.apply("skew", "leader")
    ((f, value),) = nemesis_events(live.history)
    assert f == "skew" and isinstance(value, dict)
    node, offset = value["node"], value["offset_ms"]
    assert live.cluster.nodes[node].clock_offset_ms == offset != 0
    assert f"wall clock is offset by {offset} ms" in last_start(live, node)
    assert value["transfer"]["to"] == node, value
    lead = await eventually(
        "the skewed node to lead", lambda: leader_among(live, live.cluster.node_ids, not_=-1)
    )
    assert lead.node_id == node
    await live.nemesis.heal()
    assert nemesis_events(live.history)[1] == ("unskew", {"nodes": [node]})
    assert live.cluster.nodes[node].clock_offset_ms == 0
    assert "wall clock is offset" not in last_start(live, node)


async def _voters(live: Live) -> set[int] | None:
    lead = await leader(live.api, live.cluster.node_ids)
    if lead is None:
        return None
    outcome = await live.api.call(lead, "GET", "/v1/cluster", role="read", timeout_s=1)
    members = outcome.body.get("members") if isinstance(outcome.body, dict) else None
    if not isinstance(members, list):
        return None
    return {m["node_id"] for m in members if m.get("voter")}


@pytest.mark.asyncio
async def test_member_replace_removes_one_node_and_adds_a_new_one(live: Live) -> None:
    """Last in this module: it changes the shared cluster's membership for good."""
    before = live.cluster.node_ids
    await live.nemesis.apply("member", "replace")
    ((f, value),) = nemesis_events(live.history)
    assert f == "remove-member" and isinstance(value, dict) and value["removed"], value
    gone = value["node"]
    assert gone not in live.cluster.node_ids and not live.cluster.alive(gone)
    await live.nemesis.heal()
    new = max(before) + 1
    assert nemesis_events(live.history)[1] == (
        "add-member",
        {"node": new, "added": True, "status": 202, "error": None},
    )
    assert sorted(live.cluster.node_ids) == sorted([*(n for n in before if n != gone), new])
    expected = set(live.cluster.node_ids)
    await eventually("the new node to be promoted", lambda: _is(_voters(live), expected))
    assert await wait_converged(live.api, live.cluster.node_ids, DEADLINE_S)


async def _is(value: Awaitable[T], expected: T) -> bool:
    return await value == expected

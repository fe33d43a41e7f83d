"""The Runtime driving real RaftNodes in one event loop, over an in-process loopback network.

The loopback encodes and strictly decodes every message (as the TCP transport does) and can
cut a node off. Storage is the core's MemoryStorage behind the storage thread, so the Ready
pipeline (overlapping Readys, group commit) runs exactly as in a node process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from raftsched.app import AppliedResult, SchedApp
from raftsched.raft.messages import Message
from raftsched.raft.storage import MemoryStorage
from raftsched.raft.types import Entry, EntryKind
from raftsched.sched import (
    Cancel,
    Command,
    Complete,
    ConfigureQueue,
    Fail,
    HeartbeatLease,
    JobSpec,
    Lease,
    Ok,
    SubmitJobs,
    WorkerHeartbeat,
)
from raftsched.server import runtime as runtime_module
from raftsched.server import runtime_status
from raftsched.server.config import (
    NodeConfig,
    PeerInfo,
    RaftSettings,
    RuntimeLimits,
    UnsafeModes,
)
from raftsched.server.errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded
from raftsched.server.runtime import Runtime
from raftsched.server.stamp import ClockSampleLike
from raftsched.wire.envelope import decode_entry
from raftsched.wire.raft_codec import decode_message, encode_message
from raftsched.wire.sched_codec import decode_command

pytestmark = pytest.mark.asyncio


class SyncedMemoryStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1

    def close(self) -> None:
        pass


class Loopback:
    def __init__(self) -> None:
        self.nodes: dict[int, Runtime] = {}
        self.cut: set[int] = set()

    def endpoint(self, node_id: int) -> Endpoint:
        return Endpoint(self, node_id)


class Endpoint:
    def __init__(self, net: Loopback, node_id: int) -> None:
        self.net = net
        self.node_id = node_id

    def send(self, messages: Iterable[Message]) -> None:
        loop = asyncio.get_running_loop()
        for msg in messages:
            if msg.src in self.net.cut or msg.dst in self.net.cut:
                continue
            target = self.net.nodes.get(msg.dst)
            if target is not None:
                loop.call_soon(target.deliver, decode_message(encode_message(msg)))

    def clock_samples(self) -> Mapping[int, ClockSampleLike]:
        return {}

    def set_peers(self, peers: Mapping[int, tuple[str, int]]) -> None:
        self.peers = dict(peers)


def _config(node_id: int, ids: list[int], tmp: Path) -> NodeConfig:
    peers = {
        i: PeerInfo(("127.0.0.1", 9000 + i), f"http://127.0.0.1:{8000 + i}")
        for i in ids
        if i != node_id
    }
    return NodeConfig(
        node_id=node_id,
        data_dir=tmp / str(node_id),
        peer_addr=("127.0.0.1", 9000 + node_id),
        http_addr=("127.0.0.1", 8000 + node_id),
        http_url=f"http://127.0.0.1:{8000 + node_id}",
        cluster_secret=b"0123456789abcdef",
        peers=peers,
        raft=RaftSettings(tick_ms=10, election_ticks=10),
        limits=RuntimeLimits(read_timeout_s=0.5, shutdown_grace_s=1.0, propose_timeout_s=1.0),
    )


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Loopback]:
    net = Loopback()
    ids = [1, 2, 3]
    for i in ids:
        rt = Runtime(_config(i, ids, tmp_path), SyncedMemoryStorage())
        rt.attach_transport(net.endpoint(i))
        net.nodes[i] = rt
    for rt in net.nodes.values():
        await rt.start()
    yield net
    for rt in net.nodes.values():
        await rt.shutdown()


async def _leader(net: Loopback, timeout_s: float = 5.0) -> Runtime:
    async with asyncio.timeout(timeout_s):
        while True:
            leaders = [
                rt
                for i, rt in net.nodes.items()
                if i not in net.cut and rt.status().role == "leader"
            ]
            # Settled: its Bootstrap entry (proposed on election) is applied.
            if len(leaders) == 1 and leaders[0].state.bootstrapped:
                return leaders[0]
            await asyncio.sleep(0.01)


def _submit(job_id: str) -> SubmitJobs:
    return SubmitJobs(jobs=(JobSpec(id=job_id, queue="q", payload={"n": job_id}),))


async def test_elects_commits_and_replicates(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    results = await asyncio.gather(*(leader.propose(_submit(f"j{i}")) for i in range(50)))
    assert all(isinstance(r, Ok) for r in results)
    for rt in cluster.nodes.values():
        await rt.read_barrier()
        assert rt.state.get_job("j49") is not None, rt.node_id
    follower = next(rt for rt in cluster.nodes.values() if rt is not leader)
    with pytest.raises(NotLeader) as info:
        await follower.propose(_submit("x"))
    assert info.value.leader_id == leader.node_id
    assert info.value.leader_http_url == leader.config.http_url
    st = leader.status()
    assert st.commit_index >= 51 and st.applied_index == st.commit_index
    assert {m.node_id for m in st.members} == {1, 2, 3}


async def test_failover_keeps_acknowledged_jobs(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    assert isinstance(await leader.propose(_submit("before")), Ok)
    cluster.cut.add(leader.node_id)
    new_leader = await _leader(cluster)
    assert new_leader is not leader
    assert isinstance(await new_leader.propose(_submit("after")), Ok)
    await new_leader.read_barrier()
    assert new_leader.state.get_job("before") is not None
    cluster.cut.clear()
    async with asyncio.timeout(5):
        while leader.state.get_job("after") is None:
            await asyncio.sleep(0.01)
    assert leader.status().role == "follower"


async def test_wait_for_work_wakes_on_apply(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    waiter = asyncio.create_task(leader.wait_for_work("q", 5.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await leader.propose(_submit("work"))
    async with asyncio.timeout(1):
        await waiter


async def _stays_waiting(task: asyncio.Task[None]) -> bool:
    await asyncio.sleep(0.1)
    return not task.done()


async def test_wait_for_work_is_edge_triggered_per_queue(cluster: Loopback) -> None:
    """Pending jobs held back by max_in_flight do not end the wait; only an entry applied
    after the call that may make a job of the queue leasable does."""
    leader = await _leader(cluster)
    assert isinstance(await leader.propose(ConfigureQueue(queue="q", max_in_flight=1)), Ok)
    await leader.propose(WorkerHeartbeat(worker_id="w1", capacity=8, queues=()))
    await leader.propose(_submit("a"))
    await leader.propose(_submit("b"))
    leased = await leader.propose(Lease(queue="q", worker_id="w1", max_jobs=2))
    assert isinstance(leased, Ok) and len(leased.value["leases"]) == 1
    grant = leased.value["leases"][0]

    waiter = asyncio.create_task(leader.wait_for_work("q", 5.0))
    assert await _stays_waiting(waiter)  # b is pending, but no entry applied since
    await leader.propose(SubmitJobs(jobs=(JobSpec(id="elsewhere", queue="other"),)))
    await leader.propose(Lease(queue="q", worker_id="w1", max_jobs=1))  # grants nothing
    assert await _stays_waiting(waiter)
    done = Complete(job_id=grant["job_id"], token=grant["token"], result=None)
    assert isinstance(await leader.propose(done), Ok)  # frees max_in_flight room
    async with asyncio.timeout(1):
        await waiter

    leased = await leader.propose(Lease(queue="q", worker_id="w1", max_jobs=1))
    assert isinstance(leased, Ok) and len(leased.value["leases"]) == 1  # b
    waiter = asyncio.create_task(leader.wait_for_work("q", 5.0))
    await leader.propose(_submit("c"))  # pending grows (held back by max_in_flight: spurious)
    async with asyncio.timeout(1):
        await waiter
    waiter = asyncio.create_task(leader.wait_for_work("q", 5.0))
    assert await _stays_waiting(waiter)
    assert isinstance(await leader.propose(ConfigureQueue(queue="q", max_in_flight=5)), Ok)
    async with asyncio.timeout(1):
        await waiter
    assert not leader.work._waits


async def test_expired_leases_are_counted(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    await leader.propose(WorkerHeartbeat(worker_id="w1", capacity=8, queues=()))
    spec = JobSpec(id="short", queue="q", lease_ms=100)
    await leader.propose(SubmitJobs(jobs=(spec,)))
    leased = await leader.propose(Lease(queue="q", worker_id="w1", max_jobs=1))
    assert isinstance(leased, Ok) and len(leased.value["leases"]) == 1
    async with asyncio.timeout(5):  # the leader's Tick releases it
        while leader.metrics_snapshot().lease_expirations_total < 1:
            await asyncio.sleep(0.02)
    assert leader.state.jobs["short"].state in ("pending", "scheduled")


async def test_isolated_follower_read_fails_with_no_leader(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    follower = next(rt for rt in cluster.nodes.values() if rt is not leader)
    cluster.cut.add(follower.node_id)
    with pytest.raises(NoLeader):
        await follower.read_barrier()


async def test_proposals_past_the_bound_are_overloaded(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    bound = 20
    leader.config = replace(
        leader.config, limits=replace(leader.config.limits, max_inflight_proposals=bound)
    )
    tasks = [asyncio.create_task(leader.propose(_submit(f"o{i}"))) for i in range(bound + 5)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert len(overloaded) == 5 and all(r.retry_after_s > 0 for r in overloaded)
    assert sum(isinstance(r, Ok) for r in results) == bound


async def test_partitioned_leader_answers_outcome_unknown(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    cluster.cut.add(leader.node_id)
    with pytest.raises(OutcomeUnknown):
        await leader.propose(_submit("lost-or-not"))
    cluster.cut.clear()


async def test_leader_bootstraps_settings_and_ticks_due_work(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    async with asyncio.timeout(5):
        while not all(rt.state.bootstrapped for rt in cluster.nodes.values()):
            await asyncio.sleep(0.01)
    assert leader.state.limits == leader.config.sched
    spec = JobSpec(id="delayed", queue="q", delay_ms=300)
    assert isinstance(await leader.propose(SubmitJobs(jobs=(spec,))), Ok)
    assert leader.state.jobs["delayed"].state == "scheduled"
    # Nothing else is proposed: only the leader's Tick can promote the job when it falls due.
    async with asyncio.timeout(5):
        while leader.state.jobs["delayed"].state != "pending":
            await asyncio.sleep(0.02)
    assert leader.counters.ticks_proposed >= 2  # the Bootstrap, then at least one Tick


async def test_unsafe_stale_reads_mode_skips_read_index(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    follower = next(rt for rt in cluster.nodes.values() if rt is not leader)
    cluster.cut.add(follower.node_id)
    follower.config = replace(follower.config, unsafe=UnsafeModes(stale_reads=True))
    async with asyncio.timeout(0.2):
        await follower.read_barrier()  # answers at once, although no leader can confirm it


async def test_applies_in_slices_keep_order_and_answers(
    cluster: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "APPLY_SLICE_S", 0.0)  # yield after every entry
    leader = await _leader(cluster)
    results = await asyncio.gather(*(leader.propose(_submit(f"sl{i}")) for i in range(40)))
    assert all(isinstance(r, Ok) for r in results)
    seqs = [leader.state.jobs[f"sl{i}"].seq for i in range(40)]
    for rt in cluster.nodes.values():
        await rt.read_barrier()
        assert [rt.state.jobs[f"sl{i}"].seq for i in range(40)] == seqs
    async with asyncio.timeout(5):  # then every replica reaches the same applied prefix
        while len({(rt.app.applied_index, rt.app.chain_hash) for rt in cluster.nodes.values()}) > 1:
            await asyncio.sleep(0.01)


async def test_leader_that_loses_its_quorum_fails_pending_proposals_at_once(
    cluster: Loopback,
) -> None:
    leader = await _leader(cluster)
    # The timeouts are far away: only the step-down (check quorum, ~1 election timeout of
    # 100 ms) can end these waits in time.
    limits = replace(leader.config.limits, propose_timeout_s=30.0, read_timeout_s=30.0)
    leader.config = replace(leader.config, limits=limits)
    cluster.cut.add(leader.node_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    proposals = [asyncio.create_task(leader.propose(_submit(f"cut{i}"))) for i in range(3)]
    read = asyncio.create_task(leader.read_barrier())
    async with asyncio.timeout(3.0):
        results = await asyncio.gather(*proposals, read, return_exceptions=True)
    assert all(isinstance(r, OutcomeUnknown) for r in results[:3]), results
    assert isinstance(results[3], NoLeader), results[3]
    assert loop.time() - started < 3.0
    assert leader.status().role != "leader"
    assert not leader.waiters.proposals and not leader.waiters.reads
    cluster.cut.clear()


async def test_replicas_and_a_replay_of_the_log_reach_the_leaders_state(cluster: Loopback) -> None:
    """The leader applies its own entries with the commands it parsed, followers with the
    trusted decode; a fresh replay of the leader's log, trusted or with the full parse,
    must reach the same state."""
    leader = await _leader(cluster)
    own_applied: list[int] = []
    apply = leader.app.apply

    def counting_apply(entry: Entry, command: Command | None = None) -> AppliedResult | None:
        if command is not None:
            own_applied.append(entry.index)
        return apply(entry, command)

    leader.app.apply = counting_apply  # type: ignore[method-assign]
    worker = WorkerHeartbeat(worker_id="w1", capacity=8, queues=("q",))
    assert isinstance(await leader.propose(worker), Ok)
    for i in range(12):
        assert isinstance(await leader.propose(_submit(f"d{i}")), Ok)
    leased = await leader.propose(Lease(queue="q", worker_id="w1", max_jobs=6))
    assert isinstance(leased, Ok)
    grants = leased.value["leases"]
    assert len(grants) == 6
    for n, grant in enumerate(grants):
        job_id, token = grant["job_id"], grant["token"]
        command: Command
        if n % 3 == 0:
            command = Complete(job_id=job_id, token=token, result={"n": n})
        elif n % 3 == 1:
            command = Fail(job_id=job_id, token=token, error="boom", retryable=n < 3)
        else:
            command = HeartbeatLease(job_id=job_id, token=token, extend_ms=5_000)
        assert isinstance(await leader.propose(command), Ok)
    assert isinstance(await leader.propose(Cancel(job_id="d11", reason="no")), Ok)
    target = leader.app.applied_index
    async with asyncio.timeout(5):
        while any(rt.app.applied_index < target for rt in cluster.nodes.values()):
            await asyncio.sleep(0.01)
    assert len(own_applied) >= 20  # the leader skipped decoding its own entries
    hashes = {rt.node_id: rt.app.state_hash() for rt in cluster.nodes.values()}
    chains = {rt.app.chain_hash for rt in cluster.nodes.values()}
    assert len(set(hashes.values())) == 1 and len(chains) == 1, hashes

    entries = leader.mirror.entries(1, target + 1, 1 << 30)
    trusted, full = SchedApp(), SchedApp()
    for entry in entries:
        trusted.apply(entry)
        reference = None
        if entry.kind == EntryKind.NORMAL:
            reference = decode_command(decode_entry(entry.data).command)
        full.apply(entry, reference)
    assert trusted.state_hash() == full.state_hash() == hashes[leader.node_id]


async def test_status_is_reused_until_something_it_shows_changes(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    first = leader.status()
    assert leader.status() is first  # the API asks twice per request: built once
    assert isinstance(await leader.propose(_submit("s1")), Ok)
    after = leader.status()
    assert after is not first and after.commit_index > first.commit_index
    assert after.applied_index == after.commit_index
    if after.members is first.members:  # the leader's member list ages out separately
        assert after.members[0].match_index is not None
    await asyncio.sleep(runtime_status.STATUS_MAX_AGE_S * 2)
    aged = leader.status()
    assert aged is not after  # aged out: the leader's match indexes may move
    assert aged.members is not after.members


async def test_proposals_in_flight_across_a_transfer_get_their_answer(cluster: Loopback) -> None:
    leader = await _leader(cluster)
    target = next(i for i in cluster.nodes if i != leader.node_id)
    tasks = [asyncio.create_task(leader.propose(_submit(f"tr{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # proposed, not yet committed
    await leader.transfer_leadership(target)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Ok) for r in results), results
    assert cluster.nodes[target].status().role == "leader"

"""`Runtime`: one node's event-loop driver of the Raft core, the storage and the scheduler.

Theory of operation (raftsched/raft/ready.py is the contract). Everything runs on one asyncio
loop except disk writes, which go to the storage thread (storage_thread.py). Inputs - ticks
(ticker.py), peer messages (`deliver`, from the transport), proposals and read barriers from
the HTTP API - call the core directly and schedule one `_drain` for the loop iteration, so
all inputs of an iteration share one Ready (batching). `_drain` then, for each Ready:

1. sends `eager_messages` at once (the leader's appends: replication overlaps its fsync);
2. restores the app from `snapshot` and applies `committed_entries` right away - they are
   durable already - answering the proposals waiting on them, and serves read states whose
   index is applied (§6.4);
3. hands the writes to the storage thread and moves on to the next input WITHOUT waiting
   (overlapping Readys): while one fsync runs, the next Readys queue up behind it and share
   the next fsync (group commit);
4. when the storage thread reports a Ready durable, and every earlier Ready is finished, sends
   its `messages` (they may promise what was just synced) and `advance`s it. Readys are
   finished strictly in the order they were handed out.

Proposals. `propose(command)` stamps the command with the quorum-median clock (stamp.py),
proposes it and waits until the entry at the returned (index, term) is applied; the answer is
the state machine's `Ok | Refused`. If another entry is applied at that index the proposal was
overwritten by a new leader (OutcomeUnknown; the client retries with its idempotency key),
and a proposal not applied within `propose_timeout_s` is OutcomeUnknown too. The number of
waiting proposals and reads is bounded (`Overloaded` past it: 429 with Retry-After).

Due work. The leader proposes a `Tick` when the state machine has due work (a lease expiry, a
delayed job, a cron fire, a retention removal) by its stamp clock, one at a time, and keeps
doing so on every tick while something is due (SPEC §4).
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from raftsched.app import SchedApp, encode_proposal
from raftsched.raft.config import RaftConfig
from raftsched.raft.errors import NotLeaderError, ProposalDroppedError
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.types import Membership, Role, Snapshot, SnapshotMeta
from raftsched.sched import Command, Result, SchedulerState, Tick

from .config import NodeConfig
from .errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ShuttingDown
from .stamp import ClockSampleLike, QuorumClock
from .storage_thread import LockedStorage, StorageThread, SyncableStorage
from .ticker import Ticker

RETRY_AFTER_OVERLOADED_S: Final = 0.2
RETRY_AFTER_NO_LEADER_S: Final = 1.0


class TransportLike(Protocol):
    """What the runtime needs from the peer transport (transport.py PeerTransport)."""

    def send(self, messages: Iterable[Message]) -> None: ...

    def clock_samples(self) -> Mapping[int, ClockSampleLike]: ...


@dataclass(frozen=True, slots=True)
class MemberStatus:
    node_id: int
    voter: bool
    http_url: str | None
    match_index: int | None  # the leader's view; None on followers
    lag: int | None  # entries behind the leader's last index (leader only)


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """This node's view (GET /v1/cluster; the API reads the StatusLike fields)."""

    node_id: int
    role: str
    term: int
    leader_id: int | None
    leader_http_url: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    members: list[MemberStatus] = field(default_factory=list)
    disk_healthy: bool = True
    fsync: str = "always"
    clock_ms: int = 0  # the state machine's clock (the largest stamp applied)
    clock_skew_ms: float = 0.0  # this node's wall clock minus the quorum median (leader)
    shutting_down: bool = False


@dataclass(slots=True)
class _Waiter:
    term: int
    future: asyncio.Future[Result]


@dataclass(slots=True)
class _InFlight:
    ready: Ready
    done: bool


class Runtime:
    def __init__(self, config: NodeConfig, storage: SyncableStorage, *,
                 log: logging.Logger | None = None, rng: random.Random | None = None) -> None:
        self.node_id = config.node_id
        self.config = config
        self.log = log or logging.getLogger(f"raftsched.node{config.node_id}")
        self._storage = storage
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: TransportLike | None = None
        self._thread: StorageThread | None = None
        self._core: RaftNode | None = None
        self._ticker: Ticker | None = None
        self.app = SchedApp()
        self.clock = QuorumClock(node_id=config.node_id,
                                 max_sample_age_s=config.limits.clock_sample_max_age_s)
        self._http_urls: dict[int, str] = {config.node_id: config.http_url}
        self._http_urls.update({pid: p.http_url for pid, p in config.peers.items()})
        self._drain_scheduled = False
        self._pipeline: deque[_InFlight] = deque()
        self._waiters: dict[int, _Waiter] = {}  # log index -> the proposal waiting there
        self._reads: dict[int, asyncio.Future[None]] = {}  # read context -> waiter
        self._reads_by_index: list[tuple[int, int]] = []  # heap of (index, context)
        self._next_read_context = 1
        self._work_events: dict[str, asyncio.Event] = {}
        self._tick_in_flight = False
        self._last_view: tuple[Role, int, int] = (Role.FOLLOWER, 0, 0)
        self.shutting_down = False
        self.disk_healthy = True
        self.fatal: asyncio.Future[BaseException] | None = None
        self.snapshot_index = 0
        # Counters (metrics): read by runtime_metrics.py.
        self.proposals_total = 0
        self.proposals_failed = 0
        self.overloaded_total = 0
        self.ticks_proposed = 0
        self.applied_total = 0

    # -- lifecycle ------------------------------------------------------------------------

    def attach_transport(self, transport: TransportLike) -> None:
        self._transport = transport

    async def start(self) -> None:
        """Bootstrap a new cluster's storage, restore the app, start ticking."""
        assert self._core is None, "started twice"
        assert self._transport is not None, "attach_transport before start"
        loop = self._loop = asyncio.get_running_loop()
        self.fatal = loop.create_future()
        self._bootstrap_storage()
        thread = self._thread = StorageThread(self._storage, loop=loop,
                                              on_fatal=self._on_fatal, log=self.log)
        hard_state, snapshot = self._storage.initial_state()
        self.app.restore(snapshot.data)
        self.snapshot_index = snapshot.meta.index
        assert self.app.applied_index == snapshot.meta.index, "snapshot data and meta disagree"
        # The restored state is long-lived: keep it out of every future collection.
        gc.collect()
        gc.freeze()
        self._core = RaftNode(self._raft_config(), LockedStorage(self._storage, thread.lock),
                              self._rng)
        self.log.info("node %d started: term %d, vote %d, commit %d, snapshot %d, last %d, "
                      "voters %s, fsync %s", self.node_id, hard_state.term, hard_state.vote,
                      hard_state.commit, snapshot.meta.index, self._storage.last_index(),
                      sorted(self._core.membership.voters), self.config.fsync)
        interval = self.config.raft.tick_ms / 1000.0
        self._ticker = Ticker(loop=loop, interval_s=interval, on_tick=self._on_tick)
        self._ticker.start()
        self._kick()

    def _raft_config(self) -> RaftConfig:
        r = self.config.raft
        return RaftConfig(
            node_id=self.node_id,
            election_timeout_ticks=r.election_ticks,
            heartbeat_interval_ticks=r.heartbeat_ticks,
            max_entries_per_append=r.max_entries_per_append,
            max_bytes_per_append=r.max_bytes_per_append,
            max_inflight_appends=r.max_inflight_appends,
            snapshot_chunk_bytes=r.snapshot_chunk_bytes,
            max_promote_lag_entries=r.max_promote_lag_entries,
        )

    def _bootstrap_storage(self) -> None:
        """A new cluster's node starts over the empty snapshot carrying the initial voters
        (node.py "Bootstrapping"); a joining node starts with no configuration."""
        hard_state, snapshot = self._storage.initial_state()
        fresh = (snapshot.meta.index == 0 and not snapshot.meta.membership.members
                 and self._storage.last_index() == 0 and hard_state.term == 0)
        if not fresh or self.config.join:
            return
        voters = self.config.initial_voters
        self.log.info("bootstrapping a new cluster with voters %s", sorted(voters))
        meta = SnapshotMeta(index=0, term=0, membership=Membership(voters=voters))
        self._storage.apply_snapshot(Snapshot(meta=meta, data=b""))
        self._storage.sync()

    async def shutdown(self) -> None:
        """SIGTERM: refuse new requests, hand leadership over, let in-flight requests finish
        (bounded), fail the rest, make everything durable, stop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        loop = asyncio.get_running_loop()
        core = self._core
        grace_s = self.config.limits.shutdown_grace_s
        deadline = loop.time() + grace_s
        if core is not None and core.role is Role.LEADER and len(core.membership.voters) > 1:
            target = self._transfer_target()
            if target is not None:
                self.log.info("shutting down: transferring leadership to node %d", target)
                try:
                    core.transfer_leadership(target)
                    self._kick()
                except Exception as exc:
                    self.log.warning("leadership transfer before shutdown failed: %s", exc)
        while (self._waiters or self._reads) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if core is not None and core.role is Role.LEADER:
            # A transfer completes within an election timeout or is abandoned by the core.
            r = self.config.raft
            transfer_deadline = loop.time() + 2 * r.election_ticks * r.tick_ms / 1000.0
            while core.role is Role.LEADER and loop.time() < min(deadline, transfer_deadline):
                await asyncio.sleep(0.01)
        self._fail_all(ShuttingDown())
        if self._ticker is not None:
            self._ticker.stop()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.stop)
            if self.disk_healthy:
                await loop.run_in_executor(None, self._storage.sync)
        self._storage.close()
        self.log.info("node %d stopped cleanly", self.node_id)

    def _transfer_target(self) -> int | None:
        core = self._core
        if core is None:
            return None
        match = core.status().match
        voters = [v for v in core.membership.voters if v != self.node_id]
        if not voters:
            return None
        return max(voters, key=lambda v: (match.get(v, 0), -v))

    def _on_fatal(self, exc: BaseException) -> None:
        self.disk_healthy = False
        self._fail_all(OutcomeUnknown(f"the node's storage failed: {exc}"))
        if self._ticker is not None:
            self._ticker.stop()
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(exc)

    def _fail_all(self, exc: Exception) -> None:
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._waiters.clear()
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        self._reads_by_index.clear()

    # -- inputs ---------------------------------------------------------------------------

    def deliver(self, msg: Message) -> None:
        """A strictly decoded message from an authenticated peer (transport on_message)."""
        core = self._core
        if core is None or not self.disk_healthy:
            return
        try:
            core.step(msg)
        except AssertionError as exc:  # a broken invariant: crash, never corrupt the log
            self._crash(exc)
            return
        self._kick()

    def _on_tick(self) -> None:
        core = self._core
        assert core is not None
        if not self.disk_healthy:
            return
        try:
            core.tick()
        except AssertionError as exc:
            self._crash(exc)
            return
        if core.role is Role.LEADER and not self.shutting_down:
            self._maybe_propose_tick()
        self._kick()

    def _maybe_propose_tick(self) -> None:
        if self._tick_in_flight:
            return
        due_ms = self.app.next_deadline_ms()
        if due_ms is None:
            return
        stamp = self._stamp()
        if due_ms > stamp:
            return
        try:
            future = self._propose_now(Tick(), stamp)
        except (NotLeader, NoLeader, Overloaded):
            return
        self._tick_in_flight = True
        self.ticks_proposed += 1
        future.add_done_callback(self._tick_done)

    def _tick_done(self, future: asyncio.Future[Result]) -> None:
        self._tick_in_flight = False
        if not future.cancelled():
            future.exception()  # retrieved: a lost tick is simply proposed again

    def _stamp(self) -> int:
        core = self._core
        assert core is not None and self._transport is not None
        return self.clock.stamp_ms(core.membership.voters, self._transport.clock_samples())

    # -- the API (RuntimeLike) -------------------------------------------------------------

    @property
    def state(self) -> SchedulerState:
        return self.app.state

    def status(self) -> RuntimeStatus:
        core = self._core
        if core is None:
            return RuntimeStatus(self.node_id, "starting", 0, None, None, 0, 0, 0, 0,
                                 shutting_down=self.shutting_down)
        st = core.status()
        is_leader = st.role is Role.LEADER
        members = []
        for nid in sorted(st.membership.members):
            match = st.match.get(nid) if is_leader else None
            if is_leader and nid == self.node_id:
                match = st.last_index
            members.append(MemberStatus(
                node_id=nid, voter=nid in st.membership.voters, http_url=self._http_urls.get(nid),
                match_index=match, lag=None if match is None else st.last_index - match))
        return RuntimeStatus(
            node_id=self.node_id,
            role=st.role.value,
            term=st.term,
            leader_id=st.leader or None,
            leader_http_url=self._http_urls.get(st.leader) if st.leader else None,
            commit_index=st.commit,
            applied_index=self.app.applied_index,
            last_index=st.last_index,
            snapshot_index=self.snapshot_index,
            members=members,
            disk_healthy=self.disk_healthy,
            fsync=self.config.fsync,
            clock_ms=self.app.state.clock_ms,
            clock_skew_ms=round(self.clock.skew_ms, 1),
            shutting_down=self.shutting_down,
        )

    async def propose(self, command: Command) -> Result:
        """Commit `command`, wait until it is applied here, return the state machine's
        answer. Raises NotLeader, NoLeader, Overloaded, OutcomeUnknown, ShuttingDown."""
        if self.shutting_down:
            raise ShuttingDown()
        future = self._propose_now(command, self._stamp() if self._is_leader() else 0)
        try:
            async with asyncio.timeout(self.config.limits.propose_timeout_s):
                return await future
        except TimeoutError:
            self.proposals_failed += 1
            raise OutcomeUnknown("the entry was not applied in time; retry with the same "
                                 "idempotency key") from None

    def _is_leader(self) -> bool:
        return self._core is not None and self._core.role is Role.LEADER

    def _propose_now(self, command: Command, stamp_ms: int) -> asyncio.Future[Result]:
        core = self._core
        loop = self._loop
        if core is None or loop is None or not self.disk_healthy:
            raise NoLeader("the node is not running")
        if core.role is not Role.LEADER:
            raise self._not_leader(core.leader)
        if len(self._waiters) >= self.config.limits.max_inflight_proposals:
            self.overloaded_total += 1
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, "proposals in flight")
        data = encode_proposal(command, stamp_ms=stamp_ms, proposer_id=self.node_id)
        try:
            index, term = core.propose(data)
        except NotLeaderError as exc:
            raise self._not_leader(exc.leader) from None
        except ProposalDroppedError as exc:
            self.overloaded_total += 1
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, str(exc)) from None
        future: asyncio.Future[Result] = loop.create_future()
        old = self._waiters.get(index)
        if old is not None and not old.future.done():  # our own older-term entry: overwritten
            old.future.set_exception(OutcomeUnknown())
        self._waiters[index] = _Waiter(term, future)
        self.proposals_total += 1
        self._kick()
        return future

    def _not_leader(self, leader: int) -> Exception:
        if leader and leader != self.node_id:
            return NotLeader(leader, self._http_urls.get(leader))
        return NoLeader()

    async def read_barrier(self) -> None:
        """Return once this node's state reflects every write acknowledged before the call
        (ReadIndex, §6.4; on a follower the leader confirms the index)."""
        if self.shutting_down:
            raise ShuttingDown()
        core = self._core
        loop = self._loop
        if core is None or loop is None:
            raise NoLeader("the node is not running")
        if len(self._reads) >= self.config.limits.max_pending_reads:
            self.overloaded_total += 1
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, "reads waiting for confirmation")
        context = self._next_read_context
        self._next_read_context += 1
        try:
            core.read_index(context)
        except NotLeaderError:
            raise NoLeader() from None
        except ProposalDroppedError as exc:
            self.overloaded_total += 1
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, str(exc)) from None
        future: asyncio.Future[None] = loop.create_future()
        self._reads[context] = future
        self._kick()
        try:
            async with asyncio.timeout(self.config.limits.read_timeout_s):
                await future
        except TimeoutError:
            self._reads.pop(context, None)
            raise NoLeader("no leader confirmed the read in time") from None

    async def wait_for_work(self, queue: str, timeout_s: float) -> None:
        """Return when `queue` may have a leasable job (woken by apply, no polling) or after
        `timeout_s`."""
        if self._has_work(queue):
            return
        event = self._work_events.get(queue)
        if event is None:
            event = self._work_events[queue] = asyncio.Event()
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            pass

    def _has_work(self, queue: str) -> bool:
        q = self.app.state.queues.get(queue)
        return q is not None and not q.config.paused and q.counts["pending"] > 0

    def _wake_workers(self) -> None:
        if not self._work_events:
            return
        for name in [n for n in self._work_events if self._has_work(n)]:
            self._work_events.pop(name).set()

    # -- the Ready loop --------------------------------------------------------------------

    def _kick(self) -> None:
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _crash(self, exc: BaseException) -> None:
        self.log.critical("internal error, the node stops: %s: %s", type(exc).__name__, exc,
                          exc_info=exc)
        self._on_fatal(exc)

    def _drain(self) -> None:
        self._drain_scheduled = False
        try:
            self._drain_readys()
        except Exception as exc:
            self._crash(exc)

    def _drain_readys(self) -> None:
        core = self._core
        if core is None or not self.disk_healthy:
            return
        view = (core.role, core.term, core.leader)
        while True:
            progressed = False
            while core.has_ready():
                self._handle_ready(core.ready())
                progressed = True
            pipeline = self._pipeline
            while pipeline and pipeline[0].done:
                self._finish(pipeline.popleft().ready)
                progressed = True
            if not progressed:
                break
        new_view = (core.role, core.term, core.leader)
        if new_view != view or new_view != self._last_view:
            self._on_view_change(new_view)

    def _handle_ready(self, rd: Ready) -> None:
        if rd.eager_messages:
            self._send(rd.eager_messages)
        self._apply(rd)
        item = _InFlight(rd, done=True)
        self._pipeline.append(item)
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None or rd.must_sync:
            item.done = False
            thread = self._thread
            assert thread is not None

            def persisted(_result: object, _fsync_s: float) -> None:
                item.done = True
                self._drain()

            thread.submit_ready(rd, persisted)

    def _finish(self, rd: Ready) -> None:
        core = self._core
        assert core is not None
        if rd.messages:
            self._send(rd.messages)
        if rd.snapshot is not None:
            self.snapshot_index = max(self.snapshot_index, rd.snapshot.meta.index)
        core.advance(rd)

    def _send(self, messages: tuple[Message, ...]) -> None:
        transport = self._transport
        assert transport is not None
        transport.send(messages)

    def _apply(self, rd: Ready) -> None:
        app = self.app
        if rd.snapshot is not None and rd.snapshot.meta.index > app.applied_index:
            self.log.info("restoring the state machine from a snapshot at index %d",
                          rd.snapshot.meta.index)
            app.restore(rd.snapshot.data)
            self._fail_waiters_up_to(app.applied_index)
        waiters = self._waiters
        applied_any = False
        for entry in rd.committed_entries:
            if entry.index <= app.applied_index:
                continue  # covered by a restored snapshot
            answer = app.apply(entry)
            applied_any = True
            waiter = waiters.pop(entry.index, None) if waiters else None
            if waiter is None or waiter.future.done():
                continue
            if answer is not None and waiter.term == entry.term:
                waiter.future.set_result(answer.result)
            else:  # another leader's entry took this index: ours was never committed
                self.proposals_failed += 1
                waiter.future.set_exception(OutcomeUnknown())
        if applied_any:
            self.applied_total += len(rd.committed_entries)
            self._wake_workers()
        for read_state in rd.read_states:
            if read_state.context in self._reads:
                heapq.heappush(self._reads_by_index, (read_state.index, read_state.context))
        self._serve_reads()

    def _fail_waiters_up_to(self, index: int) -> None:
        for idx in [i for i in self._waiters if i <= index]:
            waiter = self._waiters.pop(idx)
            if not waiter.future.done():
                waiter.future.set_exception(OutcomeUnknown())

    def _serve_reads(self) -> None:
        heap = self._reads_by_index
        applied = self.app.applied_index
        while heap and heap[0][0] <= applied:
            _, context = heapq.heappop(heap)
            future = self._reads.pop(context, None)
            if future is not None and not future.done():
                future.set_result(None)

    def _on_view_change(self, view: tuple[Role, int, int]) -> None:
        role, term, leader = view
        old_role, _old_term, old_leader = self._last_view
        self._last_view = view
        if role is Role.LEADER and old_role is not Role.LEADER:
            self.log.info("became leader in term %d", term)
        elif old_role is Role.LEADER and role is not Role.LEADER:
            self.log.info("stepped down in term %d (leader now %s)", term, leader or "unknown")
        elif leader != old_leader:
            self.log.info("term %d: leader is %s", term, leader or "unknown")


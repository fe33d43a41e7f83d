"""`Runtime`: one node's event-loop driver of the Raft core, the storage and the scheduler.

Theory of operation (raftsched/raft/ready.py is the contract). Everything runs on one asyncio
loop except disk writes, which go to the storage thread (storage_thread.py). Inputs - ticks
(ticker.py), peer messages (`deliver`, from the transport), proposals and read barriers from
the HTTP API - call the core directly and schedule one `_drain` for the loop iteration, so
all inputs of an iteration share one Ready (batching). `_drain` then, for each Ready:

1. sends `eager_messages` at once (the leader's appends: replication overlaps its fsync);
2. writes it to the in-memory mirror of the log the core reads (mirror.py), restores the
   app from `snapshot` and applies `committed_entries` right away - they are durable
   already - answering the proposals waiting on them (waiters.py), and serves read states
   whose index is applied (§6.4);
3. hands the writes to the storage thread (all Readys of the pass in one batch) and moves on
   WITHOUT waiting (overlapping Readys): while one fsync runs, the next Readys queue up
   behind it and share the next fsync (group commit);
4. when the storage thread reports a Ready durable, and every earlier Ready is finished, sends
   its `messages` (they may promise what was just synced) and `advance`s it. Readys are
   finished strictly in the order they were handed out. A disk failure stops all of it: the
   node exits (node_cmd.py), and nothing a failed write would promise ever leaves.

Proposals. `propose(command)` stamps the command with the quorum-median clock (stamp.py),
proposes it and waits until the entry at the returned (index, term) is applied; the answer is
the state machine's `Ok | Refused`. If another entry is applied at that index the proposal was
overwritten by a new leader (OutcomeUnknown; the client retries with its idempotency key).
When this node stops leading, its pending proposals get STRANDED_GRACE_ELECTIONS election
timeouts to be committed or overwritten by a new leader (a transfer: they get their real
answer), then fail as OutcomeUnknown (a leader that lost its quorum answers in about a second,
not at the timeout); a proposal not applied within `propose_timeout_s` is OutcomeUnknown
too. Reads the core drops (`Ready.dropped_reads`) fail at once with NoLeader. The number of
waiting proposals and reads is bounded (`Overloaded` past it: 429 with Retry-After).

The leader's own entries, one at a time: the Bootstrap settings of a new cluster until one is
applied, then a `Tick` whenever the state machine has due work by the stamp clock (a lease
expiry, a delayed job, a cron fire, a retention removal), again at once while a Tick answers
that more remains, else on the next tick (SPEC §4).

Snapshots by applied-entry threshold (snapshots.py, big states serialized in a forked
child); cluster operations (membership, transfer, backup, address discovery) in
cluster_ops.py through the small internal API at the end of this class; GET /v1/cluster and
/metrics views in runtime_status.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from raftsched.app import SchedApp, encode_proposal
from raftsched.raft.config import RaftConfig
from raftsched.raft.errors import NotLeaderError, ProposalDroppedError
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.storage import MemoryStorage, persist_ready
from raftsched.raft.types import (
    ConfChange,
    Entry,
    EntryKind,
    Membership,
    Role,
    Snapshot,
    SnapshotMeta,
)
from raftsched.sched import Command, Ok, Refused, Result, SchedulerState, Tick
from raftsched.sched.commands import Bootstrap

from .api_runtime import RuntimeMetrics
from .cluster_ops import ClusterOps
from .config import NodeConfig, PeerInfo
from .errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ShuttingDown
from .gc_policy import GcPolicy
from .membership import MemberDirectory
from .mirror import mirror_of
from .runtime_metrics import Counters, FsyncHistogram
from .runtime_status import RuntimeStatus, StatusView
from .runtime_work import WorkWaiters
from .snapshots import SnapshotInfo, Snapshotter
from .stamp import ClockSampleLike, QuorumClock
from .storage_thread import StorageThread, SyncableStorage
from .ticker import Ticker
from .waiters import Waiters

RETRY_AFTER_OVERLOADED_S: Final = 0.2
SNAPSHOT_SCRATCH: Final = "snapshot-serializing.tmp"
APPLY_SLICE_S: Final = 0.02  # longest stretch of applying before yielding to the loop
# After stepping down, our pending proposals wait this many election timeouts for a new
# leader to commit or overwrite them, then fail as outcome unknown.
STRANDED_GRACE_ELECTIONS: Final = 2


class TransportLike(Protocol):
    """What the runtime needs from the peer transport (transport.py PeerTransport)."""

    def send(self, messages: Iterable[Message]) -> None: ...

    def clock_samples(self) -> Mapping[int, ClockSampleLike]: ...

    def set_peers(self, peers: Mapping[int, tuple[str, int]]) -> None: ...


@dataclass(slots=True)
class _InFlight:
    ready: Ready
    done: bool


class Runtime:
    def __init__(
        self,
        config: NodeConfig,
        storage: SyncableStorage,
        *,
        log: logging.Logger | None = None,
        rng: random.Random | None = None,
        gc_policy: GcPolicy | None = None,
    ) -> None:
        self.node_id = config.node_id
        # The process's collector policy (installed by `raftsched node`): told after each
        # apply slice and on ticks. None: the runtime leaves the collector alone.
        self.gc_policy = gc_policy
        self.config = config
        self.log = log or logging.getLogger(f"raftsched.node{config.node_id}")
        self.storage = storage  # the durable log: the storage thread's alone once started
        self.mirror = MemoryStorage()  # what the core reads (mirror.py)
        self._rng = rng or random.Random()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: TransportLike | None = None
        self.thread: StorageThread | None = None
        self._core: RaftNode | None = None
        self._ticker: Ticker | None = None
        self.snapshotter: Snapshotter | None = None
        self.work = WorkWaiters()  # lease long polls, woken by the app's observer
        self.app = SchedApp(observer=self.work)
        self.work.app = self.app
        if gc_policy is not None:  # thaws are predicted from the state's growth in jobs
            gc_policy.jobs = lambda: len(self.app.state.jobs)
        self.clock = QuorumClock(
            node_id=config.node_id, max_sample_age_s=config.limits.clock_sample_max_age_s
        )
        self.directory = MemberDirectory(
            node_id=config.node_id,
            own=PeerInfo(config.peer_addr, config.http_url),
            initial=config.peers,
            data_dir=config.data_dir if config.data_dir.exists() else None,
            log=self.log,
        )
        self.cluster = ClusterOps(self)
        self._status = StatusView(self)
        self._drain_scheduled = False
        self._pipeline: deque[_InFlight] = deque()
        # Readys handed out in this drain pass, for the storage thread in one batch.
        self._to_persist: list[tuple[Ready, Callable[[object, float], None]]] = []
        self.waiters = Waiters()
        # Committed entries (and snapshots to restore) not applied yet, in log order.
        self._apply_queue: deque[Entry | Snapshot] = deque()
        self._apply_scheduled = False
        self._replaying = False  # start(): the local log's committed entries, applied at once
        self._tick_in_flight = False
        self._last_view: tuple[Role, int, int] = (Role.FOLLOWER, 0, 0)
        self._last_membership: Membership | None = None
        self.shutting_down = False
        self.disk_healthy = True
        self.fatal: asyncio.Future[BaseException] | None = None
        self.counters = Counters()
        self._stamps_refused_seen = 0
        self.fsync_histogram = FsyncHistogram()

    # -- lifecycle ------------------------------------------------------------------------

    def attach_transport(self, transport: TransportLike) -> None:
        self.transport = transport

    async def start(self) -> None:
        """Bootstrap a new cluster's storage, restore the app, start ticking."""
        assert self._core is None, "started twice"
        assert self.transport is not None, "attach_transport before start"
        loop = self.loop = asyncio.get_running_loop()
        self.fatal = loop.create_future()
        self._bootstrap_storage()
        scratch = self.config.data_dir / SNAPSHOT_SCRATCH
        if scratch.exists():  # a serializer child outlived a killed process
            scratch.unlink()
        thread = self.thread = StorageThread(
            self.storage, loop=loop, on_fatal=self._on_fatal, log=self.log
        )
        thread.observe_fsync = self.fsync_histogram.observe
        mirror = self.mirror = mirror_of(self.storage)
        hard_state, snapshot = mirror.initial_state()
        self.app.restore(snapshot.data)
        assert self.app.applied_index == snapshot.meta.index, "snapshot data and meta disagree"
        self._thaw_after_restore()
        r = self.config.raft
        self.snapshotter = Snapshotter(
            storage=self.storage,
            mirror=mirror,
            thread=thread,
            every_entries=r.snapshot_entries,
            keep_entries=r.snapshot_keep_entries,
            log=self.log,
        )
        self._core = RaftNode(self._raft_config(), mirror, self._rng)
        self.log.info(
            "node %d started: term %d, vote %d, commit %d, snapshot %d, last %d, "
            "voters %s, fsync %s",
            self.node_id,
            hard_state.term,
            hard_state.vote,
            hard_state.commit,
            snapshot.meta.index,
            mirror.last_index(),
            sorted(self._core.membership.voters),
            self.config.fsync,
        )
        self._on_membership(self._core.membership)
        # Replay what the local log holds committed before ticking, voting or serving: a
        # node that led, or answered reads, with a backlog would keep clients waiting on it.
        self._replaying = True
        try:
            self._drain_readys()
        finally:
            self._replaying = False
        self.log.info("replayed the log: applied index %d", self.app.applied_index)
        self._ticker = Ticker(loop=loop, interval_s=r.tick_ms / 1000.0, on_tick=self._on_tick)
        self._ticker.start()
        self.cluster.start()
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
        hard_state, snapshot = self.storage.initial_state()
        fresh = (
            snapshot.meta.index == 0
            and not snapshot.meta.membership.members
            and self.storage.last_index() == 0
            and hard_state.term == 0
        )
        if not fresh or self.config.join:
            return
        voters = self.config.initial_voters
        self.log.info("bootstrapping a new cluster with voters %s", sorted(voters))
        meta = SnapshotMeta(index=0, term=0, membership=Membership(voters=voters))
        self.storage.apply_snapshot(Snapshot(meta=meta, data=b""))
        self.storage.sync()

    async def shutdown(self) -> None:
        """SIGTERM: refuse new requests, hand leadership over, let in-flight requests finish
        (bounded), fail the rest, make everything durable, stop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        loop = asyncio.get_running_loop()
        core = self._core
        deadline = loop.time() + self.config.limits.shutdown_grace_s
        await self.cluster.stop()
        transferring = False
        if core is not None and core.role is Role.LEADER and len(core.membership.voters) > 1:
            target = self.cluster.transfer_target()
            if target is not None:
                self.log.info("shutting down: transferring leadership to node %d", target)
                try:
                    core.transfer_leadership(target)
                    transferring = True
                    self._kick()
                except Exception as exc:
                    self.log.warning("leadership transfer before shutdown failed: %s", exc)
        while self.waiters and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if core is not None and transferring:
            # A transfer completes within an election timeout or is abandoned by the core.
            r = self.config.raft
            transfer_deadline = loop.time() + 2 * r.election_ticks * r.tick_ms / 1000.0
            while core.role is Role.LEADER and loop.time() < min(deadline, transfer_deadline):
                await asyncio.sleep(0.01)
        self._fail_all(ShuttingDown())
        if self._ticker is not None:
            self._ticker.stop()
        if self.thread is not None:
            await loop.run_in_executor(None, self.thread.stop)
            if self.disk_healthy:
                await loop.run_in_executor(None, self.storage.sync)
        self.storage.close()
        self.log.info("node %d stopped cleanly", self.node_id)

    def _on_fatal(self, exc: BaseException) -> None:
        self.disk_healthy = False
        self._fail_all(OutcomeUnknown(f"the node stopped: {exc}"))
        if self._ticker is not None:
            self._ticker.stop()
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(exc)

    def _crash(self, exc: BaseException) -> None:
        self.log.critical(
            "internal error, the node stops: %s: %s", type(exc).__name__, exc, exc_info=exc
        )
        self._on_fatal(exc)

    def _fail_all(self, exc: Exception) -> None:
        self.waiters.fail_all(exc)

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
        if self.gc_policy is not None:
            self.gc_policy.maybe_thaw()
        self._kick()

    def _maybe_propose_tick(self) -> None:
        """The leader's own entries: the Bootstrap settings of a new cluster (until one is
        applied), then a Tick whenever due work waits (SPEC §4). One at a time."""
        if self._tick_in_flight:
            return
        state = self.app.state
        command: Command
        if not state.bootstrapped:
            command = Bootstrap(settings=self.config.sched)
        else:
            stamp = self.stamp()
            if not state.has_due_work(stamp):
                return
            command = Tick()
        try:
            future = self.propose_entry(command, self.stamp())
        except (NotLeader, NoLeader, Overloaded):
            return
        self._tick_in_flight = True
        self.counters.ticks_proposed += 1
        future.add_done_callback(self._tick_done)

    def _tick_done(self, future: asyncio.Future[Result]) -> None:
        self._tick_in_flight = False
        if future.cancelled() or future.exception() is not None:
            return  # a lost tick is simply proposed again on a later tick
        # Due work is done in bounded slices per entry: while the state machine says more
        # is due right now, go on at once rather than one slice per tick.
        result = future.result()
        more = (
            isinstance(result, Ok) and isinstance(result.value, dict) and result.value.get("more")
        )
        if more and self.is_leader() and not self.shutting_down and self.disk_healthy:
            self._maybe_propose_tick()

    def stamp(self) -> int:
        core = self._core
        assert core is not None and self.transport is not None
        return self.clock.stamp_ms(core.membership.voters, self.transport.clock_samples())

    # -- the API (RuntimeLike) -------------------------------------------------------------

    @property
    def state(self) -> SchedulerState:
        return self.app.state

    def status(self) -> RuntimeStatus:
        return self._status.status()

    def state_digest(self) -> tuple[int, str]:
        """(applied index, hash of the whole scheduler state there): what replicas that
        converged agree on. Costs a snapshot's serialization: for checks, not polling."""
        return self.app.applied_index, self.app.state_hash()

    def metrics_snapshot(self) -> RuntimeMetrics:
        return self._status.metrics()

    async def propose(self, command: Command) -> Result:
        """Commit `command`, wait until it is applied here, return the state machine's
        answer. Raises NotLeader, NoLeader, Overloaded, OutcomeUnknown, ShuttingDown."""
        if self.shutting_down:
            raise ShuttingDown()
        future = self.propose_entry(command, self.stamp() if self.is_leader() else 0)
        try:
            async with asyncio.timeout(self.config.limits.propose_timeout_s):
                result = await future
        except TimeoutError:
            self.counters.count("outcome_unknown")
            raise OutcomeUnknown(
                "the entry was not applied in time; retry with the same idempotency key"
            ) from None
        except OutcomeUnknown:
            self.counters.count("outcome_unknown")
            raise
        self.counters.count("refused" if isinstance(result, Refused) else "committed")
        return result

    async def read_barrier(self) -> None:
        """Return once this node's state reflects every write acknowledged before the call
        (ReadIndex, §6.4; on a follower the leader confirms the index)."""
        if self.shutting_down:
            raise ShuttingDown()
        core = self._core
        loop = self.loop
        if core is None or loop is None:
            raise NoLeader("the node is not running")
        if self.config.unsafe.stale_reads:
            return  # UNSAFE (jepsen's proof that stale reads are caught): no ReadIndex
        if len(self.waiters.reads) >= self.config.limits.max_pending_reads:
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, "reads waiting for confirmation")
        context, future = self.waiters.new_read(loop)
        try:
            core.read_index(context)
        except NotLeaderError:
            self.waiters.drop_read(context)
            raise NoLeader() from None
        except ProposalDroppedError as exc:
            self.waiters.drop_read(context)
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, str(exc)) from None
        self._kick()
        try:
            async with asyncio.timeout(self.config.limits.read_timeout_s):
                await future
        except TimeoutError:
            self.waiters.drop_read(context)
            raise NoLeader("no leader confirmed the read in time") from None

    async def wait_for_work(self, queue: str, timeout_s: float) -> None:
        """Return when an entry applied after the call may have made a job of `queue`
        leasable (edge-triggered, runtime_work.py) or after `timeout_s`. The waiter is
        registered before the first suspension."""
        await self.work.wait(queue, timeout_s)

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> Any:
        return await self.cluster.add_member(node_id, peer_addr, http_url)

    async def remove_member(self, node_id: int) -> Any:
        return await self.cluster.remove_member(node_id)

    async def transfer_leadership(self, to: int | None) -> Any:
        return await self.cluster.transfer_leadership(to)

    async def snapshot_now(self) -> SnapshotInfo:
        return await self.take_snapshot()

    async def backup(self) -> tuple[bytes | str, str]:
        return await self.cluster.backup()

    # -- internal API (cluster_ops.py) ----------------------------------------------------

    @property
    def started(self) -> bool:
        return self._core is not None

    @property
    def core(self) -> RaftNode:
        assert self._core is not None, "the runtime is not started"
        return self._core

    def is_leader(self) -> bool:
        return self._core is not None and self._core.role is Role.LEADER

    def not_leader(self, leader: int) -> Exception:
        if leader and leader != self.node_id:
            return NotLeader(leader, self.directory.http_url(leader))
        return NoLeader()

    def propose_entry(self, command: Command, stamp_ms: int) -> asyncio.Future[Result]:
        """Propose now (leader only); the future completes when the entry is applied."""
        core = self._core
        if core is None or self.loop is None or not self.disk_healthy:
            raise NoLeader("the node is not running")
        if core.role is not Role.LEADER:
            self.counters.count("not_leader")
            raise self.not_leader(core.leader)
        self._check_room()
        data = encode_proposal(command, stamp_ms=stamp_ms, proposer_id=self.node_id)
        try:
            index, term = core.propose(data)
        except NotLeaderError as exc:
            self.counters.count("not_leader")
            raise self.not_leader(exc.leader) from None
        except ProposalDroppedError as exc:
            self.counters.count("overloaded")
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, str(exc)) from None
        assert self.loop is not None
        future = self.waiters.add_proposal(self.loop, index, term, data=data, command=command)
        self._kick()
        return future

    def propose_conf_change(self, change: ConfChange) -> asyncio.Future[Result]:
        """Propose a membership change (leader only; raises the core's errors)."""
        index, term = self.core.propose_conf_change(change)
        return self.wait_applied(index, term, config_change=True)

    def _check_room(self) -> None:
        if len(self.waiters.proposals) >= self.config.limits.max_inflight_proposals:
            self.counters.count("overloaded")
            raise Overloaded(RETRY_AFTER_OVERLOADED_S, "proposals in flight")

    def wait_applied(
        self, index: int, term: int, *, config_change: bool = False
    ) -> asyncio.Future[Result]:
        assert self.loop is not None
        future = self.waiters.add_proposal(self.loop, index, term, config_change=config_change)
        self._kick()
        return future

    async def take_snapshot(self) -> SnapshotInfo:
        snapshotter = self.snapshotter
        core = self._core
        if snapshotter is None or core is None:
            raise NoLeader("the node is not running")
        index = self.app.applied_index
        off_loop = len(self.app.state.jobs) >= self.config.raft.snapshot_fork_min_jobs
        return await snapshotter.take(
            index=index,
            membership=core.membership_at(index),
            serialize=self.app.snapshot,
            on_written=core.snapshot_taken,
            off_loop=off_loop,
            scratch=self.config.data_dir / SNAPSHOT_SCRATCH,
        )

    # -- the Ready loop --------------------------------------------------------------------

    def _kick(self) -> None:
        if not self._drain_scheduled and self.loop is not None:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

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
        while True:
            progressed = False
            while self.disk_healthy and core.has_ready():
                self._handle_ready(core.ready())
                progressed = True
            if self._to_persist:
                assert self.thread is not None
                self.thread.submit_readys(self._to_persist)
                self._to_persist = []
            pipeline = self._pipeline
            while self.disk_healthy and pipeline and pipeline[0].done:
                self._finish(pipeline.popleft().ready)
                progressed = True
            if not progressed:
                break
        view = (core.role, core.term, core.leader)
        if view != self._last_view:
            self._on_view_change(view)
        if core.membership is not self._last_membership:
            self._on_membership(core.membership)
        snapshotter = self.snapshotter
        if snapshotter is not None and snapshotter.due(self.app.applied_index):
            self.loop_task(self.take_snapshot())

    def loop_task(self, coro: Any) -> None:
        assert self.loop is not None
        task = self.loop.create_task(coro)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("background task failed: %s", task.exception())

    def _handle_ready(self, rd: Ready) -> None:
        if rd.eager_messages:
            self._send(rd.eager_messages)
        if self.config.unsafe.ack_before_fsync and rd.messages:
            self._send(rd.messages)  # UNSAFE: acknowledges writes not yet durable
            rd = replace(rd, messages=())
        persist_ready(self.mirror, rd)  # the disk gets the same writes on the storage thread
        self._apply(rd)
        item = _InFlight(rd, done=True)
        self._pipeline.append(item)
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None or rd.must_sync:
            item.done = False

            def persisted(_result: object, _fsync_s: float) -> None:
                item.done = True
                self._drain()

            self._to_persist.append((rd, persisted))

    def _finish(self, rd: Ready) -> None:
        if rd.messages:
            self._send(rd.messages)
        if rd.snapshot is not None and self.snapshotter is not None:
            self.snapshotter.index = max(self.snapshotter.index, rd.snapshot.meta.index)
        self.core.advance(rd)

    def _send(self, messages: tuple[Message, ...]) -> None:
        transport = self.transport
        assert transport is not None
        transport.send(messages)

    def _apply(self, rd: Ready) -> None:
        """Queue the Ready's snapshot and committed entries for the app, in log order, and
        apply what fits in one slice now; its read states wait for their index."""
        queue = self._apply_queue
        if rd.snapshot is not None:
            queue.append(rd.snapshot)
        queue.extend(rd.committed_entries)
        for read_state in rd.read_states:
            self.waiters.confirmed(read_state)
        for context in rd.dropped_reads:
            self.waiters.dropped(context, NoLeader("the leader could not confirm the read"))
        self._apply_some()

    def _apply_continue(self) -> None:
        self._apply_scheduled = False
        if self.disk_healthy:
            try:
                self._apply_some()
            except Exception as exc:
                self._crash(exc)

    def _apply_some(self) -> None:
        """Apply queued entries for at most APPLY_SLICE_S, then yield to the loop (a long
        replay after a restart, or a burst of big batches, must not stall heartbeats and
        HTTP); the rest continues on the next loop iteration."""
        app, waiters, queue = self.app, self.waiters, self._apply_queue
        started = time.perf_counter()
        deadline = started + (math.inf if self._replaying else APPLY_SLICE_S)
        applied = 0
        while queue:
            item = queue.popleft()
            if isinstance(item, Snapshot):
                if item.meta.index > app.applied_index:
                    self.log.info(
                        "restoring the state machine from a snapshot at index %d", item.meta.index
                    )
                    self.work.before_restore()
                    app.restore(item.data)
                    self._thaw_after_restore()
                    waiters.fail_up_to(app.applied_index)
                    self.work.wake_all()
                continue
            if item.index <= app.applied_index:
                continue  # covered by a restored snapshot
            if item.kind is EntryKind.CONFIG:
                self.refresh_peers()  # committed now: a removed node is no longer dialed
            own = waiters.own_command(item) if waiters.proposals else None
            answer = app.apply(item, own)
            applied += 1
            if waiters.proposals:
                waiters.applied(item, answer.result if answer is not None else None)
            if time.perf_counter() > deadline:
                break
        if queue and not self._apply_scheduled and self.loop is not None:
            self._apply_scheduled = True
            self.loop.call_soon(self._apply_continue)
        if applied:
            self.counters.entries_applied += applied
            self._check_stamps()
            if self.gc_policy is not None:
                self.gc_policy.after_apply(time.perf_counter() - started)
        waiters.serve_reads(app.applied_index)

    def _thaw_after_restore(self) -> None:
        """A restored state is long-lived: collect once and freeze it (the restore already
        paused this node for longer than the full collection)."""
        if self.gc_policy is not None:
            self.gc_policy.thaw()
        else:
            gc.collect()
            gc.freeze()

    def _check_stamps(self) -> None:
        refused = self.stamps_refused()
        if refused != self._stamps_refused_seen:
            self.log.warning(
                "the state machine clamped %d leader stamp(s) beyond its per-entry clock "
                "step (a leader clock far ahead?); %d so far",
                refused - self._stamps_refused_seen,
                refused,
            )
            self._stamps_refused_seen = refused

    def stamps_refused(self) -> int:
        """Entries whose stamp the state machine clamped (replicated: the same everywhere)."""
        skew = getattr(self.app.state, "clock_skew", None)
        value = getattr(skew, "refused_entries", 0)
        return value if isinstance(value, int) else 0

    def _on_view_change(self, view: tuple[Role, int, int]) -> None:
        role, term, leader = view
        old_role, _old_term, old_leader = self._last_view
        self._last_view = view
        if role is Role.LEADER and old_role is not Role.LEADER:
            self.log.info("became leader in term %d", term)
            self.cluster.on_became_leader()
        elif old_role is Role.LEADER and role is not Role.LEADER:
            self.log.info("stepped down in term %d (leader now %s)", term, leader or "unknown")
            if self.waiters.proposals and self.loop is not None:
                r = self.config.raft
                grace_s = STRANDED_GRACE_ELECTIONS * r.election_ticks * r.tick_ms / 1000.0
                self.loop.call_later(grace_s, self._fail_stranded_proposals)
        elif leader != old_leader:
            self.log.info("term %d: leader is %s", term, leader or "unknown")

    def _fail_stranded_proposals(self) -> None:
        """Our entries still waiting some time after we stopped leading: a new leader (a
        transfer) commits or overwrites them within moments, and then they have their
        answer; still waiting means no leader reaches us (we lost our quorum), and they may
        or may not commit later. Say so now rather than at propose_timeout_s (the client
        retries with its idempotency key)."""
        if self.is_leader():  # leading again: our new term commits or overwrites them
            return
        failed = self.waiters.fail_proposals(
            OutcomeUnknown("this node stopped leading before the entry was applied")
        )
        if failed:  # (propose() counts them as outcome_unknown)
            self.log.info("failed %d pending proposal(s) as outcome unknown", failed)

    def _on_membership(self, membership: Membership) -> None:
        self._last_membership = membership
        self.refresh_peers()
        self.cluster.on_membership(membership)

    def refresh_peers(self) -> None:
        """Dial every known node whose removal is not committed: members, nodes being added
        (a joining node has no membership yet but must answer its leader), and a node whose
        removal is only appended: a leader removing itself still leads until that entry
        commits (dissertation §4.2.2), and commits it only if our acknowledgements reach it
        (dropping it at append left it to step down without an answer: outcome unknown)."""
        transport = self.transport
        core = self._core
        if transport is None or core is None:
            return
        membership = core.membership
        gone = membership.removed & core.membership_at(core.log.committed).removed
        known = self.directory.known_ids() | membership.members | membership.removed
        transport.set_peers(self.directory.peers_for(known - gone))

    def loop_kick(self) -> None:
        self._kick()

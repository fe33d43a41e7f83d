"""Drives one RaftNode exactly as ready.py prescribes, on the simulated disk and network.

Theory of operation: a host is a node's runtime. Inputs (ticks, messages, client proposals
and reads) are handed to the core; after each, the host takes the core's `Ready`s. Two host
modes exist (`HostTimings.pipelined`):

- Pipelined (the default; what the networked runtime does, ready.py "OVERLAPPING
  READYS"). Each Ready's eager messages go out at once and the Ready joins a FIFO queue for
  a simulated storage worker; the host keeps stepping the core and taking new Readys while
  earlier ones are still being written. The worker takes every queued Ready, writes them
  (a short random time), then fsyncs once if any must be synced (group commit; a random
  time, or longer while a disk-stall fault holds the disk). When the batch is durable the
  host finishes its Readys in hand-out order: sends their messages, applies their committed
  entries, serves reads and calls `advance`. With `send_unsynced_early` (chosen per host
  at random) a Ready with `must_sync=False` sends its messages at hand-out too, which the
  contract allows ("nothing unsynced is promised by these messages").
- Serial (the old host, kept with `--serial-host`): a Ready that must be synced holds
  back its messages, commits, `advance` and every new input until its fsync completes.

In both modes a crash in the window loses unsynced writes (all of them, or an arbitrary
prefix plus possibly a torn record: disk.py), and nothing that depended on them has left.

What the log means is not the host's business: a `ReplicatedApp` (app.py) applies committed
entries, answers waiting clients and takes snapshots; an `AppKind` encodes proposals, stamped
with this node's clock (`now_ms`: virtual time plus this node's `clock_skew_ms`, which a
clock-jump fault moves). Each host ticks every `tick_units` virtual units (10 +/- up to 10%
when tick drift is on), so nodes' election timers run at slightly different rates.

A host is up, paused (no ticks, inputs and storage completions queue) or down (crashed:
inputs are lost). `crash` discards the core and the unsynced disk tail; `restart` builds a
fresh core on the durable image, as a restarted process would. Every callback scheduled
before a crash carries the incarnation it belongs to and is ignored afterwards.

The host takes snapshots itself once the applied log grows past `snapshot_threshold`
entries (the app's state, taken at the applied index, with the membership in force there).
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raftsched.raft.config import RaftConfig
from raftsched.raft.describe import describe_entry, describe_message, describe_ready
from raftsched.raft.errors import NotLeaderError, ProposalDroppedError, RaftError
from raftsched.raft.messages import Heartbeat, HeartbeatResponse, Message
from raftsched.raft.ready import Ready
from raftsched.raft.storage import persist_ready
from raftsched.raft.types import ConfChange, Entry, Membership, NodeId, Status

from .app import KV_APP, MS_PER_UNIT, AppAnswer, AppKind, KVApp, ReplicatedApp
from .disk import SimDisk
from .events import UNITS_PER_TICK, EventLoop
from .kv import KVStateMachine

MAX_INBOX = 20_000
"""Inputs queued while paused or syncing; beyond it the oldest are dropped (a full socket)."""


class RaftCore(Protocol):
    """The part of RaftNode's API (raftsched/raft/node.py) the host drives."""

    def tick(self) -> None: ...
    def step(self, msg: Message) -> None: ...
    def propose(self, data: bytes) -> tuple[int, int]: ...
    def propose_batch(self, datas: Sequence[bytes]) -> tuple[int, int]: ...
    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]: ...
    def read_index(self, context: int) -> None: ...
    def transfer_leadership(self, to: NodeId) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, rd: Ready) -> None: ...
    def status(self) -> Status: ...
    def snapshot_taken(self, index: int) -> None: ...
    def membership_at(self, index: int) -> Membership: ...


CoreFactory = Callable[[RaftConfig, SimDisk, random.Random], RaftCore]


class HostObserver(Protocol):
    """What the invariant checker hears from a host."""

    def on_handed(self, node_id: NodeId, rd: Ready, status: Status) -> None: ...
    def on_send(self, node_id: NodeId, msg: Message) -> None: ...
    def before_persist(self, node_id: NodeId, rd: Ready) -> None: ...
    def on_persist(self, node_id: NodeId, rd: Ready) -> None: ...
    def on_synced(self, node_id: NodeId, rd: Ready) -> None: ...
    def on_apply(self, node_id: NodeId, entry: Entry, chain_hash: bytes) -> None: ...
    def on_status(self, node_id: NodeId, status: Status) -> None: ...
    def on_restart(self, node_id: NodeId, durable_commit: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A host's answer to a client request."""

    ok: bool
    value: Any = None  # ok: the result; not ok: an error description
    definite: bool = True  # not ok and definite: the request certainly had no effect
    leader_hint: NodeId = 0
    index: int = 0  # the log index a write was applied at


ReplyCallback = Callable[[Reply], None]


@dataclass(slots=True)
class HostTimings:
    fsync_units_min: int = 1
    fsync_units_max: int = 7
    write_units_max: int = 2  # pipelined: the storage worker's writes before its fsync
    snapshot_threshold: int = 40  # applied entries beyond the snapshot before taking one
    pipelined: bool = True  # False: the serial host (module docstring)
    # Pipelined: Readys handed out and not yet finished, at most (a runtime's bounded queue
    # to its storage thread); beyond it the host stops taking Readys until a batch is done.
    max_pipelined_readys: int = 32
    # Probability that a crash keeps a random prefix of the unsynced writes (else none),
    # and that it then tears the next append record.
    crash_keeps_prefix_probability: float = 0.5
    crash_tears_probability: float = 0.5


class NodeHost:
    def __init__(
        self,
        *,
        node_id: NodeId,
        config: RaftConfig,
        disk: SimDisk,
        loop: EventLoop,
        send: Callable[[Message], None],
        rng: random.Random,
        core_factory: CoreFactory,
        observer: HostObserver | None,
        timings: HostTimings,
        next_read_context: Callable[[], int],
        app_kind: AppKind = KV_APP,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.disk = disk
        self._loop = loop
        self._send = send
        self._rng = rng
        self._core_factory = core_factory
        self._observer = observer
        self.timings = timings
        self._next_read_context = next_read_context
        self.app_kind = app_kind
        self.clock_skew_ms = 0  # this node's wall clock minus the true (virtual) time
        self.incarnation = 0
        self.up = False
        self.paused = False
        self.retired = False  # removed from the cluster for good
        self.syncing = False  # serial: waiting for an fsync
        self.ticks = 0
        self.tick_units = float(UNITS_PER_TICK)  # tick drift changes it per host
        self._next_tick_at = 0.0
        self.disk_stall_until = 0  # a disk-stall fault: no write completes before then
        self.client_reachable = True  # False: a client partition cuts this node off
        # Pipelined mode: Readys handed out and not finished, in order; how many of them
        # the storage worker has taken; completions deferred while paused.
        self._pipeline: deque[Ready] = deque()
        self._worker_taken = 0
        self._worker_busy = False
        self._deferred: list[Callable[[], None]] = []
        self.send_unsynced_early = rng.random() < 0.5
        # The verbose trace's core-level lines (cluster.py `detail`); None: not tracing.
        self.detail: Callable[[str], None] | None = None
        self._inbox: deque[Callable[[], None]] = deque()
        self.core: RaftCore | None = None
        self.app: ReplicatedApp = app_kind.restore(b"", 0)
        self._write_waiters: dict[Hashable, ReplyCallback] = {}
        self._read_waiters: dict[int, tuple[str, ReplyCallback]] = {}
        self._reads_ready: list[tuple[int, str, ReplyCallback]] = []  # (index, key, cb)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Boot (or reboot) the core from the durable image."""
        assert not self.up and not self.retired
        self.incarnation += 1
        self.up = True
        self.paused = False
        self._reset_io()
        hard_state, snapshot = self.disk.initial_state()
        self.app = self.app_kind.restore(snapshot.data, snapshot.meta.index)
        seed = self._rng.getrandbits(64)
        self.core = self._core_factory(self.config, self.disk, random.Random(seed))
        if self._observer is not None:
            self._observer.on_restart(self.node_id, hard_state.commit)
        # Each node ticks with its own phase so ticks of different nodes interleave.
        self._next_tick_at = float(self._loop.now + self._rng.randint(1, UNITS_PER_TICK))
        self._schedule_tick()
        self._after_input()

    def crash(self, *, keep_unsynced: bool = True) -> None:
        """Power loss: the process dies and unsynced writes are lost, or (if
        `keep_unsynced`, at random) an arbitrary prefix of them survives (disk.py)."""
        if not self.up:
            return
        self.up = False
        self.core = None
        self._reset_io()
        self._write_waiters.clear()
        self._read_waiters.clear()
        self._reads_ready.clear()
        self.incarnation += 1
        keep_ops, torn = self._crash_extent() if keep_unsynced else (0, None)
        self.disk.crash(keep_ops, torn)

    def _reset_io(self) -> None:
        self.syncing = False
        self._inbox.clear()
        self._pipeline.clear()
        self._worker_taken = 0
        self._worker_busy = False
        self._deferred.clear()

    def _crash_extent(self) -> tuple[int, int | None]:
        """How much of the unsynced journal survives a power loss (disk.py `crash`)."""
        timings, rng = self.timings, self._rng
        sizes = self.disk.pending_append_sizes()
        if not sizes or rng.random() >= timings.crash_keeps_prefix_probability:
            return 0, None
        keep = rng.randint(0, len(sizes))
        if keep < len(sizes) and sizes[keep] > 0 and rng.random() < timings.crash_tears_probability:
            return keep, rng.randint(0, sizes[keep] - 1)
        return keep, None

    def retire(self) -> None:
        """The node was removed from the cluster: stop it for good."""
        self.crash()
        self.retired = True

    def pause(self) -> None:
        if self.up:
            self.paused = True

    def resume(self) -> None:
        if self.up and self.paused:
            self.paused = False
            deferred, self._deferred = self._deferred, []
            for callback in deferred:
                callback()
            self._pump()

    # -- inputs -------------------------------------------------------------------------

    def deliver(self, msg: Message) -> None:
        if not self.up:
            return
        self._input(lambda: self._core().step(msg))

    def propose(self, request: object, reply: ReplyCallback) -> None:
        """Propose a request of this host's app kind (kv: a kv.Command)."""
        if not self.up or not self.client_reachable:
            return  # the client will time out
        self._input(lambda: self._propose_now(request, self._to_client(reply)))

    def read(self, key: str, reply: ReplyCallback) -> None:
        if not self.up or not self.client_reachable:
            return
        self._input(lambda: self._read_now(key, self._to_client(reply)))

    def _to_client(self, reply: ReplyCallback) -> ReplyCallback:
        """Answers are lost while clients cannot reach this node (a client partition)."""

        def send(answer: Reply) -> None:
            if self.client_reachable:
                reply(answer)

        return send

    def call(self, action: Callable[[RaftCore], None]) -> None:
        """Run an administrative action (membership change, transfer) on the core."""
        if self.up:
            self._input(lambda: action(self._core()))

    def status(self) -> Status | None:
        return self.core.status() if self.core is not None and self.up else None

    def now_ms(self) -> int:
        """This node's wall clock: what it stamps on the entries it proposes."""
        return max(0, self._loop.now * MS_PER_UNIT + self.clock_skew_ms)

    @property
    def kv(self) -> KVStateMachine:
        """The key-value state machine (only when the app is the KV map)."""
        assert isinstance(self.app, KVApp), "this host does not run the KV app"
        return self.app.kv

    # -- internals ----------------------------------------------------------------------

    def _core(self) -> RaftCore:
        assert self.core is not None, "the core is only used while the host is up"
        return self.core

    def _send_msg(self, msg: Message) -> None:
        if self._observer is not None:
            self._observer.on_send(self.node_id, msg)
        if self.detail is not None and not _routine(msg):
            self.detail(f"send {describe_message(msg)}")
        self._send(msg)

    def _input(self, action: Callable[[], None]) -> None:
        if self.paused or self.syncing or self._inbox:
            if len(self._inbox) >= MAX_INBOX:
                self._inbox.popleft()
            self._inbox.append(action)
            return
        action()
        self._after_input()

    def _pump(self) -> None:
        self._after_input()
        while self._inbox and self.up and not self.paused and not self.syncing:
            self._inbox.popleft()()
            self._after_input()

    def _schedule_tick(self) -> None:
        incarnation = self.incarnation
        at = max(self._loop.now, round(self._next_tick_at))
        self._loop.call_at(at, lambda: self._on_tick(incarnation))

    def _on_tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        self._next_tick_at += self.tick_units
        self._schedule_tick()
        if self.paused:
            return  # a paused process does not notice time passing
        self.ticks += 1
        self._input(lambda: self._core().tick())

    def _propose_now(self, request: object, reply: ReplyCallback) -> None:
        kind = self.app_kind
        try:
            index, term = self._core().propose(
                kind.encode_proposal(request, self.now_ms(), self.node_id)
            )
        except NotLeaderError as err:
            reply(Reply(False, "not leader", definite=True, leader_hint=err.leader))
            return
        except ProposalDroppedError as err:
            reply(Reply(False, f"dropped: {err}", definite=True))
            return
        self._write_waiters[kind.proposal_key(request, index, term)] = reply

    def _read_now(self, key: str, reply: ReplyCallback) -> None:
        context = self._next_read_context()
        try:
            self._core().read_index(context)
        except NotLeaderError as err:
            reply(Reply(False, "no leader", definite=True, leader_hint=err.leader))
            return
        except RaftError as err:
            reply(Reply(False, f"refused: {err}", definite=True))
            return
        self._read_waiters[context] = (key, reply)

    def _after_input(self) -> None:
        if self.timings.pipelined:
            self._take_readys()
        else:
            self._drain_serially()

    # -- the serial host -------------------------------------------------------------------

    def _drain_serially(self) -> None:
        """Drain Readys until one must wait for an fsync or none is left."""
        core = self.core
        while self.up and not self.syncing and core is not None and core.has_ready():
            rd = self._hand_out(core)
            self._persist(rd)
            if rd.must_sync:
                delay = self._fsync_delay()
                if delay > 0:
                    self.syncing = True
                    self._loop.call_later(
                        delay, functools.partial(self._sync_done, self.incarnation, rd)
                    )
                    return
                self.disk.sync()
            self._finish(rd)

    def _hand_out(self, core: RaftCore) -> Ready:
        rd = core.ready()
        if self._observer is not None:
            self._observer.on_handed(self.node_id, rd, core.status())
        if self.detail is not None and (
            rd.hard_state or rd.entries or rd.snapshot or rd.committed_entries or rd.read_states
        ):
            self.detail(f"node {self.node_id} {describe_ready(rd)}")
        for msg in self._early_messages(rd):
            self._send_msg(msg)
        return rd

    def _fsync_delay(self) -> int:
        lo, hi = self.timings.fsync_units_min, self.timings.fsync_units_max
        delay = self._rng.randint(lo, hi) if hi > 0 else 0
        return max(delay, self.disk_stall_until - self._loop.now)

    def _early_messages(self, rd: Ready) -> tuple[Message, ...]:
        """Messages that may leave before this Ready's fsync (ready.py: only the eager ones)."""
        return rd.eager_messages

    def _late_messages(self, rd: Ready) -> tuple[Message, ...]:
        return rd.messages

    def _persist(self, rd: Ready) -> None:
        if self._observer is not None:
            self._observer.before_persist(self.node_id, rd)
        persist_ready(self.disk, rd)
        if self._observer is not None:
            self._observer.on_persist(self.node_id, rd)

    def _sync_done(self, incarnation: int, rd: Ready) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        self.disk.sync()
        self.syncing = False
        self._finish(rd)
        self._pump()

    # -- the pipelined host (the networked runtime's model) --------------------------------

    def _take_readys(self) -> None:
        """Take every Ready the core has (bounded), queue them for the storage worker."""
        core = self.core
        limit = self.timings.max_pipelined_readys
        while self.up and core is not None and len(self._pipeline) < limit and core.has_ready():
            rd = self._hand_out(core)
            if self.send_unsynced_early and not rd.must_sync:
                for msg in self._late_messages(rd):
                    self._send_msg(msg)
            self._pipeline.append(rd)
        self._kick_worker()

    def _kick_worker(self) -> None:
        if self._worker_busy or self._worker_taken >= len(self._pipeline) or not self.up:
            return
        self._worker_busy = True
        first, self._worker_taken = self._worker_taken, len(self._pipeline)
        batch = [self._pipeline[i] for i in range(first, self._worker_taken)]
        hi = self.timings.write_units_max
        delay = self._rng.randint(0, hi) if hi > 0 else 0
        self._at(delay, functools.partial(self._worker_wrote, batch))

    def _at(self, delay: int, callback: Callable[[], None]) -> None:
        """Run a storage-worker completion after `delay`, or at resume if paused then."""
        incarnation = self.incarnation

        def run() -> None:
            if incarnation != self.incarnation or not self.up:
                return
            if self.paused:
                self._deferred.append(run)
                return
            callback()

        self._loop.call_later(max(0, delay), run)

    def _worker_wrote(self, batch: list[Ready]) -> None:
        for rd in batch:
            self._persist(rd)
        if any(rd.must_sync for rd in batch):
            self._at(self._fsync_delay(), functools.partial(self._worker_synced, batch))
        else:
            self._worker_synced(batch)

    def _worker_synced(self, batch: list[Ready]) -> None:
        if any(rd.must_sync for rd in batch):
            self.disk.sync()
        self._worker_busy = False
        for rd in batch:
            done = self._pipeline.popleft()
            assert done is rd, "Readys finish in the order they were handed out"
            self._worker_taken -= 1
            self._finish(rd, early_sent=self.send_unsynced_early and not rd.must_sync)
            if not self.up:
                return  # a seeded bug or an observer crashed us; nothing more to do
        self._take_readys()

    def _finish(self, rd: Ready, *, early_sent: bool = False) -> None:
        core = self._core()
        if self._observer is not None:
            self._observer.on_synced(self.node_id, rd)
        if not early_sent:
            for msg in self._late_messages(rd):
                self._send_msg(msg)
        if rd.snapshot is not None and rd.snapshot.meta.index > self.app.applied_index:
            self.app = self.app_kind.restore(rd.snapshot.data, rd.snapshot.meta.index)
        for entry in rd.committed_entries:
            self._apply(entry)
        for read_state in rd.read_states:
            waiter = self._read_waiters.pop(read_state.context, None)
            if waiter is not None:
                self._reads_ready.append((read_state.index, waiter[0], waiter[1]))
        self._serve_reads()
        core.advance(rd)
        if self._observer is not None:
            self._observer.on_status(self.node_id, core.status())
        self._maybe_snapshot()

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.app.applied_index:
            return  # already covered by a snapshot restored on this incarnation
        if self.detail is not None:
            self.detail(f"node {self.node_id} applies {describe_entry(entry)}")
        answer = self.app.apply_entry(entry)
        if self._observer is not None:
            self._observer.on_apply(self.node_id, entry, self.app.chain_hash)
        if answer is not None:
            self._answer_write(answer, entry.index)

    def _answer_write(self, answer: AppAnswer, index: int) -> None:
        waiter = self._write_waiters.pop(answer.key, None)
        if waiter is None:
            return
        if answer.ok:
            waiter(Reply(True, answer.value, index=index))
        else:
            waiter(Reply(False, answer.value, definite=answer.definite))

    def _serve_reads(self) -> None:
        if not self._reads_ready:
            return
        applied = self.app.applied_index
        waiting: list[tuple[int, str, ReplyCallback]] = []
        for index, key, reply in self._reads_ready:
            if applied >= index:
                reply(Reply(True, self.app.read(key)))
            else:
                waiting.append((index, key, reply))
        self._reads_ready = waiting

    def _maybe_snapshot(self) -> None:
        applied = self.app.applied_index
        if applied - self.disk.current.snapshot.meta.index < self.timings.snapshot_threshold:
            return
        if applied > self.disk.current.last_index():
            return
        membership = self._core().membership_at(applied)
        self.disk.create_snapshot(applied, membership, self.app.snapshot())
        self._core().snapshot_taken(applied)

    @property
    def applied_membership(self) -> Membership:
        """The configuration in force at the applied index: committed."""
        return self._core().membership_at(self.app.applied_index)


def _routine(msg: Message) -> bool:
    """Heartbeats outside read rounds: every tick, too many to show in a trace."""
    return isinstance(msg, Heartbeat | HeartbeatResponse) and not msg.context

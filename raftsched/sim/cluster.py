"""A simulated cluster: hosts, disks, the network and the invariant checker, wired together.

Theory of operation: the cluster owns everything of one run that is not a client or a fault:
one `NodeHost` per node id (ids are never reused: a replacement gets the next fresh id),
the `Network` that routes messages to hosts, and the `InvariantChecker` that observes every
host. All randomness comes from one `random.Random` derived from the seed, handed out in a
fixed order, so a seed replays exactly. `trace` lines (with the virtual time) feed a running
hash of the whole run, which the determinism test compares, and the verbose replay output.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raftsched.raft.config import RaftConfig
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.types import Entry, Membership, NodeId, Role, Status

from .app import KV_APP, AppKind
from .disk import SimDisk
from .events import UNITS_PER_TICK, EventLoop
from .invariants import InvariantChecker
from .network import Network
from .node_host import CoreFactory, HostTimings, NodeHost, RaftCore


@dataclass(slots=True)
class ClusterOptions:
    nodes: int = 3
    voters: int = 0  # founders that vote (the rest start as learners); 0: all of them
    tick_drift: float = 0.0  # each host's tick period is off by up to this fraction
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    timings: HostTimings = field(default_factory=HostTimings)
    check_invariants: bool = True
    # Small appends make a catching-up follower acknowledge a long log piecewise, which
    # exercises the commit rule (§5.4.2) far more than one big append would.
    max_entries_per_append: int = 2
    # Small chunks: every snapshot transfer is a multi-chunk InstallSnapshot exchange.
    snapshot_chunk_bytes: int = 256


HostClass = type[NodeHost]
DiskFactory = Callable[[Membership, bool], SimDisk]


def real_core_factory(config: RaftConfig, disk: SimDisk, rng: random.Random) -> RaftCore:
    return RaftNode(config, disk, rng)


def default_disk(membership: Membership, track_durability: bool) -> SimDisk:
    return SimDisk(membership, track_durability=track_durability)


class SimCluster:
    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        options: ClusterOptions,
        core_factory: CoreFactory,
        *,
        host_class: HostClass = NodeHost,
        disk_factory: DiskFactory = default_disk,
        trace_sink: Callable[[str], None] | None = None,
        app_kind: AppKind = KV_APP,
    ) -> None:
        assert options.nodes >= 1
        self.app_kind = app_kind
        self.loop = loop
        self.rng = rng
        self.options = options
        self._core_factory = core_factory
        self._host_class = host_class
        self._disk_factory = disk_factory
        self._trace_sink = trace_sink
        self._trace_hash = hashlib.blake2b(digest_size=16)
        self.checker = InvariantChecker() if options.check_invariants else None
        self.network = Network(loop, random.Random(rng.getrandbits(64)), self._route)
        self.hosts: dict[NodeId, NodeHost] = {}
        voters = options.voters or options.nodes
        assert 1 <= voters <= options.nodes
        self.bootstrap = Membership(
            voters=frozenset(range(1, voters + 1)),
            learners=frozenset(range(voters + 1, options.nodes + 1)),
        )
        self._next_node_id = options.nodes + 1
        self._read_context = 0
        self.leader_changes = 0
        # Called with (node id, term) the moment a node is first seen leading a new term,
        # from inside that node's Ready processing (its first messages are in flight).
        self.leader_listeners: list[Callable[[NodeId, int], None]] = []
        self._last_leader: tuple[int, NodeId] = (0, 0)
        for node_id in sorted(self.bootstrap.members):
            self._add_host(node_id, self.bootstrap)

    # -- tracing ------------------------------------------------------------------------

    def trace(self, text: str) -> None:
        line = f"[{self.loop.now / UNITS_PER_TICK:8.1f} ticks] {text}"
        self._trace_hash.update(line.encode())
        if self._trace_sink is not None:
            self._trace_sink(line)

    def detail(self, text: str) -> None:
        """A core-level line (raft/describe.py) for the verbose trace only: not hashed, so
        a verbose replay has the same trace hash as the run it replays."""
        if self._trace_sink is not None:
            self._trace_sink(f"[{self.loop.now / UNITS_PER_TICK:8.1f} ticks]   {text}")

    def trace_hash(self) -> str:
        return self._trace_hash.hexdigest()

    # -- hosts --------------------------------------------------------------------------

    def _add_host(self, node_id: NodeId, membership: Membership) -> NodeHost:
        opts = self.options
        config = RaftConfig(
            node_id=node_id,
            election_timeout_ticks=opts.election_timeout_ticks,
            heartbeat_interval_ticks=opts.heartbeat_interval_ticks,
            max_entries_per_append=opts.max_entries_per_append,
            snapshot_chunk_bytes=opts.snapshot_chunk_bytes,
        )
        # Founders start from the bootstrap configuration at index 0. A joiner starts with
        # an empty one (the core then accepts its first leader's messages) and must learn
        # the configuration from a snapshot: see MembershipChange.begin.
        disk = self._disk_factory(membership, opts.check_invariants)
        host = self._host_class(
            node_id=node_id,
            config=config,
            disk=disk,
            loop=self.loop,
            send=self.network.send,
            rng=random.Random(self.rng.getrandbits(64)),
            core_factory=self._core_factory,
            observer=self if opts.check_invariants else None,
            timings=opts.timings,
            next_read_context=self._next_context,
            app_kind=self.app_kind,
        )
        if self._trace_sink is not None:
            host.detail = self.detail
        if opts.tick_drift:
            drift = self.rng.uniform(-opts.tick_drift, opts.tick_drift)
            host.tick_units = UNITS_PER_TICK * (1.0 + drift)
        self.hosts[node_id] = host
        if self.checker is not None:
            self.checker.register_disk(node_id, disk)
        return host

    def start(self) -> None:
        for host in self.hosts.values():
            host.start()

    def add_fresh_node(self) -> NodeHost:
        node_id = self._next_node_id
        self._next_node_id += 1
        host = self._add_host(node_id, Membership(voters=frozenset()))
        host.start()
        self.trace(f"node {node_id} started (fresh, empty disk)")
        return host

    def _next_context(self) -> int:
        self._read_context += 1
        return self._read_context

    def _route(self, msg: Message) -> None:
        host = self.hosts.get(msg.dst)
        if host is not None:
            host.deliver(msg)

    def live_hosts(self) -> list[NodeHost]:
        return [h for h in self.hosts.values() if h.up and not h.retired]

    def leader(self) -> NodeHost | None:
        """The up, unpaused leader with the highest term, if any."""
        best: tuple[int, NodeHost] | None = None
        for host in self.live_hosts():
            status = host.status()
            if (
                status is not None
                and status.role is Role.LEADER
                and not host.paused
                and (best is None or status.term > best[0])
            ):
                best = (status.term, host)
        return best[1] if best is not None else None

    # -- HostObserver (forwarded to the checker, plus the trace) -------------------------

    def on_handed(self, node_id: NodeId, rd: Ready, status: Status) -> None:
        assert self.checker is not None
        self.checker.on_handed(node_id, rd, status)

    def on_send(self, node_id: NodeId, msg: Message) -> None:
        assert self.checker is not None
        self.checker.on_send(node_id, msg)

    def before_persist(self, node_id: NodeId, rd: Ready) -> None:
        assert self.checker is not None
        self.checker.before_persist(node_id, rd)

    def on_persist(self, node_id: NodeId, rd: Ready) -> None:
        assert self.checker is not None
        self.checker.on_persist(node_id, rd)

    def on_synced(self, node_id: NodeId, rd: Ready) -> None:
        assert self.checker is not None
        self.checker.on_synced(node_id, rd)

    def on_apply(self, node_id: NodeId, entry: Entry, chain_hash: bytes) -> None:
        assert self.checker is not None
        self.checker.on_apply(node_id, entry, chain_hash)

    def on_status(self, node_id: NodeId, status: Status) -> None:
        assert self.checker is not None
        if status.role is Role.LEADER and status.term > self._last_leader[0]:
            self.leader_changes += 1
            self._last_leader = (status.term, node_id)
            self.trace(f"node {node_id} is leader of term {status.term}")
            for listener in list(self.leader_listeners):
                listener(node_id, status.term)
        self.checker.on_status(node_id, status)

    def on_restart(self, node_id: NodeId, durable_commit: int) -> None:
        assert self.checker is not None
        self.checker.on_restart(node_id, durable_commit)

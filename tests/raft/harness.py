"""An in-memory cluster for the Raft core tests: N RaftNodes over MemoryStorage, a network
that holds messages until the test delivers them, and the ready loop of ready.py.

Theory of operation. Nothing happens unless the test asks: `tick()` advances the logical
clocks, `deliver()` hands queued messages to their destinations (dropping those that cross
a cut link or reach an isolated or stopped node), and every node's Ready is processed right
after each input (persist to its MemoryStorage, queue its messages, apply its committed
entries). `stabilize()` delivers until the network is quiet. The application is a list of
the NORMAL commands applied, per node; `check_safety()` compares what every node applied.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from raftsched.raft.config import RaftConfig
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.storage import MemoryStorage, persist_ready
from raftsched.raft.types import (
    Entry,
    EntryKind,
    Membership,
    NodeId,
    ReadState,
    Role,
)

MAX_DELIVERY_ROUNDS = 10_000


@dataclass
class App:
    """The replicated application: the commands applied, in order, with their indexes."""

    applied_index: int = 0
    # index -> (term, kind, data) of every entry applied since the last restore
    entries: dict[int, tuple[int, EntryKind, bytes]] = field(default_factory=dict)
    commands: list[bytes] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped_reads: list[int] = field(default_factory=list)  # contexts, Ready.dropped_reads

    def snapshot_data(self) -> bytes:
        return b"\n".join(self.commands)

    def restore(self, index: int, data: bytes) -> None:
        self.applied_index = index
        self.entries = {}
        self.commands = data.split(b"\n") if data else []


class Cluster:
    def __init__(
        self,
        ids: Iterable[NodeId] = (1, 2, 3),
        *,
        seed: int = 0,
        node_cls: type[RaftNode] = RaftNode,
        learners: Iterable[NodeId] = (),
        **config: Any,
    ) -> None:
        self.ids = sorted(ids)
        self.seed = seed
        self.node_cls = node_cls
        self.config_overrides = config
        membership = Membership(frozenset(self.ids), frozenset(learners))
        self.storages: dict[NodeId, MemoryStorage] = {}
        self.nodes: dict[NodeId, RaftNode] = {}
        self.apps: dict[NodeId, App] = {}
        for node_id in [*self.ids, *sorted(learners)]:
            self.storages[node_id] = MemoryStorage(membership)
            self._start(node_id)
        self.queue: list[Message] = []
        self.cut_links: set[frozenset[NodeId]] = set()
        self.isolated: set[NodeId] = set()
        self.stopped: set[NodeId] = set()
        self.drop: Callable[[Message], bool] = lambda m: False
        self.sent: list[Message] = []  # every message ever sent, for assertions
        # index -> (term, kind, data) as first applied anywhere: must never change.
        self.committed: dict[int, tuple[int, EntryKind, bytes]] = {}
        self.leaders_by_term: dict[int, NodeId] = {}
        self.read_floors: dict[int, int] = {}  # read context -> max commit when requested

    # ------------------------------------------------------------------ nodes

    def _start(self, node_id: NodeId) -> None:
        cfg = RaftConfig(node_id, **self.config_overrides)
        rng = random.Random(self.seed * 7919 + node_id)
        self.nodes[node_id] = self.node_cls(cfg, self.storages[node_id], rng)
        _, snapshot = self.storages[node_id].initial_state()
        app = App()
        app.restore(snapshot.meta.index, snapshot.data)
        self.apps[node_id] = app

    def add_node(self, node_id: NodeId) -> RaftNode:
        """A brand-new node with an empty configuration, waiting for the leader."""
        self.storages[node_id] = MemoryStorage()
        self._start(node_id)
        return self.nodes[node_id]

    def restart(self, node_id: NodeId) -> RaftNode:
        """Crash and restart: a new RaftNode over the same (fully synced) storage."""
        self.queue = [m for m in self.queue if m.dst != node_id]
        self._start(node_id)
        self.stopped.discard(node_id)
        return self.nodes[node_id]

    def stop(self, node_id: NodeId) -> None:
        self.stopped.add(node_id)

    def node(self, node_id: NodeId) -> RaftNode:
        return self.nodes[node_id]

    def leader(self) -> NodeId:
        """The leader of the highest term among live nodes (0 if none)."""
        best, best_term = 0, -1
        for node_id, node in sorted(self.nodes.items()):
            if node_id in self.stopped:
                continue
            if node.role is Role.LEADER and node.term > best_term:
                best, best_term = node_id, node.term
        return best

    # ------------------------------------------------------------------ the ready loop

    def process(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if node_id in self.stopped:
            return
        while node.has_ready():
            rd = node.ready()
            self._handle_ready(node_id, node, rd)
            node.advance(rd)

    def _handle_ready(self, node_id: NodeId, node: RaftNode, rd: Ready) -> None:
        storage = self.storages[node_id]
        app = self.apps[node_id]
        self._send(rd.eager_messages)
        persist_ready(storage, rd)
        if rd.snapshot is not None:
            app.restore(rd.snapshot.meta.index, rd.snapshot.data)
        self._send(rd.messages)
        for entry in rd.committed_entries:
            self._apply(node_id, app, entry)
        app.read_states.extend(rd.read_states)
        # Not exclusive with read_states: a duplicated forwarded request can be answered
        # twice, once served and once refused; the caller takes the first answer.
        app.dropped_reads.extend(rd.dropped_reads)
        for read in rd.read_states:
            floor = self.read_floors.get(read.context)
            # Linearizability of ReadIndex (§6.4): the read index covers every entry that
            # was committed anywhere before the read was requested.
            assert floor is None or read.index >= floor, (
                f"stale read on {node_id}: context {read.context} index {read.index} < {floor}"
            )
        if node.role is Role.LEADER:
            previous = self.leaders_by_term.setdefault(node.term, node_id)
            assert previous == node_id, f"two leaders in term {node.term}: {previous}, {node_id}"

    def _apply(self, node_id: NodeId, app: App, entry: Entry) -> None:
        assert entry.index == app.applied_index + 1, (
            f"node {node_id} applies {entry.index} after {app.applied_index}"
        )
        app.applied_index = entry.index
        record = (entry.term, entry.kind, entry.data)
        app.entries[entry.index] = record
        first = self.committed.setdefault(entry.index, record)
        assert first == record, f"node {node_id} applied {record} at {entry.index}, not {first}"
        if entry.kind is EntryKind.NORMAL:
            app.commands.append(entry.data)

    def _send(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.sent.append(m)
            self.queue.append(m)

    def process_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.process(node_id)

    # ------------------------------------------------------------------ network

    def can_deliver(self, m: Message) -> bool:
        if m.src in self.isolated or m.dst in self.isolated:
            return False
        if m.dst in self.stopped or m.src in self.stopped or m.dst not in self.nodes:
            return False
        if frozenset((m.src, m.dst)) in self.cut_links:
            return False
        return not self.drop(m)

    def deliver(self, limit: int | None = None) -> int:
        """Deliver the queued messages (those sent meanwhile wait for the next call)."""
        batch, self.queue = self.queue, []
        if limit is not None:
            batch, rest = batch[:limit], batch[limit:]
            self.queue = rest + self.queue
        delivered = 0
        for m in batch:
            if self.can_deliver(m):
                delivered += 1
                self.nodes[m.dst].step(m)
                self.process(m.dst)
        return delivered

    def stabilize(self) -> None:
        self.process_all()
        for _ in range(MAX_DELIVERY_ROUNDS):
            if not self.queue:
                return
            self.deliver()
        raise AssertionError("the network never went quiet")

    def take(self, predicate: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        """Remove and return the queued messages matching `predicate`."""
        taken = [m for m in self.queue if predicate(m)]
        self.queue = [m for m in self.queue if not predicate(m)]
        return taken

    def isolate(self, node_id: NodeId) -> None:
        self.isolated.add(node_id)

    def heal(self) -> None:
        self.isolated.clear()
        self.cut_links.clear()
        self.drop = lambda m: False

    def cut(self, a: NodeId, b: NodeId) -> None:
        self.cut_links.add(frozenset((a, b)))

    # ------------------------------------------------------------------ time

    def tick(self, ticks: int = 1, nodes: Iterable[NodeId] | None = None) -> None:
        """Tick the given (default: all live) nodes `ticks` times, stabilizing after each."""
        targets = sorted(nodes) if nodes is not None else sorted(self.nodes)
        for _ in range(ticks):
            for node_id in targets:
                if node_id not in self.stopped:
                    self.nodes[node_id].tick()
                    self.process(node_id)
            self.stabilize()

    def elect(self, node_id: NodeId) -> None:
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.nodes[node_id].role is Role.LEADER, f"{node_id} failed to win"

    # ------------------------------------------------------------------ application

    def propose(self, node_id: NodeId, data: bytes) -> tuple[int, int]:
        result = self.nodes[node_id].propose(data)
        self.process(node_id)
        return result

    def read_index(self, node_id: NodeId, context: int) -> None:
        """Request a linearizable read; `_handle_ready` checks the answer is not stale."""
        self.read_floors[context] = max(node.log.committed for node in self.nodes.values())
        self.nodes[node_id].read_index(context)
        self.process(node_id)

    def take_snapshot(self, node_id: NodeId, compact: bool = True) -> int:
        """The application on `node_id` snapshots at its applied index (and compacts)."""
        node = self.nodes[node_id]
        storage = self.storages[node_id]
        app = self.apps[node_id]
        index = app.applied_index
        storage.create_snapshot(index, node.membership_at(index), app.snapshot_data())
        if compact:
            storage.compact(index)
        node.snapshot_taken(index)
        return index

    def commands(self, node_id: NodeId) -> list[bytes]:
        return self.apps[node_id].commands

    def check_safety(self) -> None:
        """Log Matching over the persisted logs, and State Machine Safety over applies
        (the latter is also asserted on every apply)."""
        logs = {}
        for node_id, storage in self.storages.items():
            first, last = storage.first_index(), storage.last_index()
            logs[node_id] = {e.index: e for e in storage.entries(first, last + 1, 1 << 62)}
        ids = sorted(logs)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                common = sorted(set(logs[a]) & set(logs[b]))
                # Log Matching (§5.3): same index and term -> identical prefixes.
                matched = [x for x in common if logs[a][x].term == logs[b][x].term]
                if matched:
                    top = matched[-1]
                    for x in common:
                        if x <= top:
                            ea, eb = logs[a][x], logs[b][x]
                            assert (ea.term, ea.data) == (eb.term, eb.data), (a, b, x)


def with_config(cfg: RaftConfig, **changes: Any) -> RaftConfig:
    return replace(cfg, **changes)


# ---------------------------------------------------------------------- single-node helpers


def make_node(
    node_id: NodeId = 1,
    voters: Iterable[NodeId] = (1, 2, 3),
    *,
    seed: int = 0,
    storage: MemoryStorage | None = None,
    node_cls: type[RaftNode] = RaftNode,
    **config: Any,
) -> tuple[RaftNode, MemoryStorage]:
    """One node over its own MemoryStorage, for tests that feed it messages by hand."""
    if storage is None:
        storage = MemoryStorage(Membership(frozenset(voters)))
    node = node_cls(RaftConfig(node_id, **config), storage, random.Random(seed))
    return node, storage


def drain(node: RaftNode, storage: MemoryStorage) -> list[Ready]:
    """Run the ready loop to quiescence, persisting to `storage`; return the Readys."""
    readies = []
    while node.has_ready():
        rd = node.ready()
        persist_ready(storage, rd)
        node.advance(rd)
        readies.append(rd)
    return readies


def outbox(readies: Iterable[Ready]) -> list[Message]:
    """Every message of `readies`, eager ones first within each Ready (send order)."""
    return [m for rd in readies for m in (*rd.eager_messages, *rd.messages)]


def log_terms(storage: MemoryStorage) -> list[int]:
    first, last = storage.first_index(), storage.last_index()
    return [e.term for e in storage.entries(first, last + 1, 1 << 62)]

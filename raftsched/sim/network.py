"""The simulated network between Raft nodes: delay, loss, duplication, reordering, partitions.

Theory of operation: `send` decides a message's fate at once with the run's random source:
dropped (loss, or the link is cut), delivered once or twice (duplication), each copy after
a random delay. Links are FIFO by default, like the TCP connections of the real transport
(a message never overtakes an earlier one on the same directed link); a `reorder` copy is
the exception, held back for longer and overtaken, and with `fifo_links=False` every
message takes its own delay and reordering is everywhere (UDP-like). A cut link is checked
again on delivery, so a partition also swallows what was in flight. Links are directed: a
one-way partition cuts a->b and keeps b->a.

Clients are not on this network (the simulator models them as co-located with the node
they talk to, with their own small delay), so a partition isolates nodes from each other
only, as in the jepsen harness's iptables rules between nodes.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftsched.raft.messages import Message
from raftsched.raft.types import NodeId

from .events import EventLoop


@dataclass(slots=True)
class NetworkConditions:
    """The network's current behaviour; the fault schedule changes it during a run."""

    delay_units_min: int = 1
    delay_units_max: int = 6
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0  # a copy held back by up to `reorder_delay_units_max`
    reorder_delay_units_max: int = 40

    def __post_init__(self) -> None:
        assert 0 <= self.delay_units_min <= self.delay_units_max
        for p in (self.loss_probability, self.duplicate_probability, self.reorder_probability):
            assert 0.0 <= p <= 1.0


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


class Network:
    """Delivers messages between node ids through the event loop."""

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        deliver: Callable[[Message], None],
    ) -> None:
        self._loop = loop
        self._rng = rng
        self._deliver = deliver
        self.conditions = NetworkConditions()
        self._cut: set[tuple[NodeId, NodeId]] = set()
        self.stats = NetworkStats()
        self.fifo_links = True
        self._link_clear_at: dict[tuple[NodeId, NodeId], int] = {}  # last FIFO arrival

    # -- partitions ---------------------------------------------------------------------

    def cut(self, src: NodeId, dst: NodeId) -> None:
        """Cut the directed link src -> dst."""
        self._cut.add((src, dst))

    def partition(self, side_a: Iterable[NodeId], side_b: Iterable[NodeId]) -> None:
        """Cut every link between the two sides, both ways."""
        a, b = list(side_a), list(side_b)
        for x in a:
            for y in b:
                self._cut.add((x, y))
                self._cut.add((y, x))

    def heal(self) -> None:
        self._cut.clear()

    def is_cut(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) in self._cut

    def cut_links(self) -> frozenset[tuple[NodeId, NodeId]]:
        return frozenset(self._cut)

    # -- sending ------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.stats.sent += 1
        cond = self.conditions
        rng = self._rng
        if (msg.src, msg.dst) in self._cut or (
            cond.loss_probability and rng.random() < cond.loss_probability
        ):
            self.stats.dropped += 1
            return
        copies = 1
        if cond.duplicate_probability and rng.random() < cond.duplicate_probability:
            copies = 2
            self.stats.duplicated += 1
        link = (msg.src, msg.dst)
        for _ in range(copies):
            at = self._loop.now + rng.randint(cond.delay_units_min, cond.delay_units_max)
            if cond.reorder_probability and rng.random() < cond.reorder_probability:
                at += rng.randint(1, cond.reorder_delay_units_max)
            elif self.fifo_links:
                at = max(at, self._link_clear_at.get(link, 0))
                self._link_clear_at[link] = at
            self._loop.call_at(at, functools.partial(self._arrive, msg))

    def _arrive(self, msg: Message) -> None:
        if (msg.src, msg.dst) in self._cut:
            self.stats.dropped += 1
            return
        self.stats.delivered += 1
        self._deliver(msg)

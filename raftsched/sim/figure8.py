"""A targeted nemesis that stages the Raft paper's Figure 8 under a running workload.

Theory of operation: Figure 8 shows why a leader may not commit an entry of an older term
by counting replicas (§5.4.2). Random faults almost never line it up, so this fault steers
the cluster through it, reacting to leader elections the moment they happen:
  1. isolate the leader L1: as a stale leader it keeps appending client writes of its term
     that reach nobody, while the others elect L2;
  2. the instant L2 is elected, isolate it instead (its first appends, still in flight, are
     swallowed) and reconnect L1: L2 now holds an entry of a newer term that nobody has;
  3. L1, with the longest log, wins the next term and catches the others up piecewise
     (appends are small), so its fresh no-op reaches them after its old entries; L1
     crashes the moment it applies past its old commit while a follower still lacks the no-op
     (or after a few ticks), and what it had in flight is lost; a follower that holds
     the no-op only unsynced (the pipelined host writes ahead) loses power with it;
  4. L2 is reconnected: with its newer last term it can win the others' votes and
     overwrite every entry of L1's old term that is not really committed.
Correct Raft survives all of it: nothing L1 acknowledged is lost. A core that commits old
terms by counting acknowledges entries in step 3 that step 4 overwrites, which the state
machine safety and linearizability checks then catch.
"""

from __future__ import annotations

import random

from raftsched.raft.types import NodeId

from .cluster import SimCluster
from .events import UNITS_PER_TICK
from .node_host import NodeHost


class Figure8:
    def __init__(self, cluster: SimCluster, rng: random.Random) -> None:
        self._cluster = cluster
        self._rng = rng
        self.phase = "idle"
        self._l1: NodeId = 0
        self._l2: NodeId = 0
        self._attempt = 0
        self.staged = 0
        cluster.leader_listeners.append(self._on_leader)

    def busy(self) -> bool:
        return self.phase != "idle"

    def begin(self) -> bool:
        cluster = self._cluster
        leader = cluster.leader()
        if self.busy() or leader is None:
            return False
        if any(not h.up or h.paused for h in cluster.hosts.values() if not h.retired):
            return False
        self._attempt += 1
        self._l1 = leader.node_id
        self.phase = "await-l2"
        cluster.network.heal()
        cluster.network.partition([self._l1], self._others(self._l1))
        cluster.trace(f"figure-8: isolate leader {self._l1}")
        self._deadline(100)
        return True

    def abort(self, why: str) -> None:
        if self.busy():
            self.phase = "idle"
            self._cluster.network.heal()
            self._cluster.trace(f"figure-8: ends ({why})")

    def _others(self, node_id: NodeId) -> list[NodeId]:
        return sorted(i for i, h in self._cluster.hosts.items() if not h.retired and i != node_id)

    def _deadline(self, ticks: int) -> None:
        attempt, phase = self._attempt, self.phase

        def expire() -> None:
            if self._attempt == attempt and self.phase == phase:
                self.abort(f"timed out in {phase}")

        self._cluster.loop.call_later(ticks * UNITS_PER_TICK, expire)

    def _on_leader(self, node_id: NodeId, term: int) -> None:
        cluster = self._cluster
        if self.phase == "await-l2" and node_id != self._l1:
            self._l2 = node_id
            cluster.network.heal()
            cluster.network.partition([self._l2], self._others(self._l2))
            cluster.trace(f"figure-8: isolate new leader {self._l2}, reconnect {self._l1}")
            self.phase = "await-l1"
            self._deadline(100)
        elif self.phase == "await-l1":
            if node_id != self._l1:
                self.abort(f"node {node_id} won instead of {self._l1}")
                return
            self.phase = "crash-l1"
            followers = [i for i in self._others(self._l1) if i != self._l2]
            applied = cluster.hosts[self._l1].app.applied_index
            self._poll(term, followers, applied, cluster.loop.now + 6 * UNITS_PER_TICK)

    def _poll(self, term: int, followers: list[NodeId], applied: int, give_up_at: int) -> None:
        """Crash L1 the moment it applies (answers clients) past what it had applied when
        elected while a follower still lacks its no-op: the window Figure 8 is about. A
        commit that was never applied is never observed. Polled every time unit, briefly."""
        cluster = self._cluster
        if self.phase != "crash-l1":
            return
        l1 = cluster.hosts[self._l1]
        if l1.up and l1.app.applied_index > applied:
            for node_id in followers:
                # The durable log: a pipelined follower may already hold the no-op
                # unsynced; it then loses power too (step 3's window, on its disk).
                log = cluster.hosts[node_id].disk.durable
                if log.term(log.last_index()) < term:
                    self._crash_l1(also=node_id)
                    return
        if cluster.loop.now >= give_up_at:
            self._crash_l1()
            return
        cluster.loop.call_later(1, lambda: self._poll(term, followers, applied, give_up_at))

    def _crash_l1(self, also: NodeId = 0) -> None:
        cluster = self._cluster
        l1 = cluster.hosts[self._l1]
        l1.crash()
        follower = cluster.hosts.get(also)
        if follower is not None and follower.disk.current.last_index() > (
            follower.disk.durable.last_index()
        ):
            follower.crash(keep_unsynced=False)
            cluster.trace(f"figure-8: node {also} loses power too (its tail was unsynced)")
            delay = self._rng.randint(1, 3) * UNITS_PER_TICK
            cluster.loop.call_later(delay, lambda: _restart(follower))
        # Keep L1 cut off while it is down: what it sent last is still in flight and is
        # swallowed, as if it died before sending (a crash between write and send).
        cluster.network.heal()
        cluster.network.partition([self._l1], self._others(self._l1))
        cluster.trace(f"figure-8: crash {self._l1}, reconnect {self._l2}")
        down_units = self._rng.randint(10, 40) * UNITS_PER_TICK
        attempt = self._attempt

        def restart() -> None:
            if self._attempt == attempt:
                cluster.network.heal()
            if not l1.up and not l1.retired:
                l1.start()
                cluster.trace(f"figure-8: node {self._l1} restarted")
            if self._attempt == attempt:
                self.phase = "idle"

        cluster.loop.call_later(down_units, restart)


def _restart(host: NodeHost) -> None:
    if not host.up and not host.retired:
        host.start()

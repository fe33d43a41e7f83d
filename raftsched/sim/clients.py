"""Simulated clients: a read/write/cas workload that records a history for the checkers.

Theory of operation: a client process first registers a session (dissertation §6.3: a
`register` command whose log index becomes its client id; registrations are retried until
one commits and are not part of the history). Then it runs one operation at a time. It
records INVOKE,
sends the request to the node it believes leads (reads sometimes to a random node, which
forwards the ReadIndex to its leader), and waits with a timeout. A write's (client_id, seq)
stays the same across retries, so the state machine's session table applies it once and a
retry gets the first answer (dissertation §6.3). The outcome it records:
  OK   the node answered (a write: it applied the command; a read: served after ReadIndex);
  FAIL certainly no effect: a cas whose compare failed, or a request every attempt of which
       was refused before it entered any log (not leader, proposal dropped), or any read;
  INFO the outcome is unknown (an attempt may be in some log): Jepsen's rule then retires the
       process, and the client continues as a fresh process with a fresh session.
When `finishing` (the liveness phase) clients stop starting new operations and retry the
pending ones without giving up, so every pending write must eventually commit.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftsched.raft.types import NodeId

from .app import SESSION_EXPIRED
from .events import UNITS_PER_TICK, EventLoop
from .history import Event, EventType
from .kv import CAS, READ, REGISTER, WRITE, Command
from .node_host import NodeHost, Reply


@dataclass(slots=True)
class Workload:
    clients: int = 4
    keys: int = 3
    read_fraction: float = 0.4
    cas_fraction: float = 0.2  # of the non-reads
    follower_read_fraction: float = 0.3  # reads sent to a random node instead of the leader
    think_units_max: int = 20
    timeout_units: int = 25 * UNITS_PER_TICK
    retry_units: int = 2 * UNITS_PER_TICK
    max_attempts: int = 4  # per operation in the safety phase, then INFO / FAIL
    # After a timeout a client forgets its leader guess with this probability; otherwise
    # it keeps trying the node it trusts (as real clients do, and deposed leaders see).
    forget_leader_probability: float = 0.5
    # The state machine's session table size (None: kv.MAX_SESSIONS). Fewer sessions than
    # clients: registrations evict each other, and commands of an evicted session are
    # refused as expired (never applied), which the history must survive.
    max_sessions: int | None = None


@dataclass(slots=True)
class _Pending:
    process: int
    command: Command
    attempts: int = 0
    maybe_applied: bool = False  # some attempt entered a log: failure is no longer certain
    token: int = 0  # identifies the attempt a reply or timeout belongs to
    registration: bool = False  # a session registration, not a recorded operation


class ClientPool:
    """All client processes of one run, sharing the history."""

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        workload: Workload,
        hosts: Callable[[], dict[NodeId, NodeHost]],
        trace: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._rng = rng
        self.workload = workload
        self._hosts = hosts
        self._trace = trace
        self.history: list[Event] = []
        self.finishing = False
        self.stopped = False
        self._next_nonce = 1
        self._next_value = 1
        self._pending: dict[int, _Pending] = {}  # slot -> pending op
        self._client_of_slot: dict[int, tuple[int, int]] = {}  # slot -> (client_id, seq)
        self.registrations = 0
        self.expired_sessions = 0  # commands refused because their session was evicted
        self._leader_guess: dict[int, NodeId] = {}
        self.acked_writes: list[tuple[int, int]] = []  # (index, client_id) of OK writes/cas
        self._token = 0

    def start(self) -> None:
        for slot in range(self.workload.clients):
            self._client_of_slot[slot] = (0, 0)  # 0: not registered yet
            self._loop.call_later(self._rng.randint(1, 50), functools.partial(self._next_op, slot))

    def pending_count(self) -> int:
        """Recorded operations still waiting for an outcome (registrations excluded)."""
        return sum(1 for p in self._pending.values() if not p.registration)

    def operations(self) -> int:
        return sum(1 for e in self.history if e.type is EventType.INVOKE)

    # -- one operation ------------------------------------------------------------------

    def _record(self, process: int, type_: EventType, f: str, key: str, value: Any) -> None:
        self.history.append(Event(process, type_, f, key, value, self._loop.now))
        self._trace(f"client {process} {type_.value} {f} {key} {value!r}")

    def _next_op(self, slot: int) -> None:
        if self.finishing or self.stopped or slot in self._pending:
            return
        rng, wl = self._rng, self.workload
        client_id, seq = self._client_of_slot[slot]
        if client_id == 0:
            nonce = self._next_nonce
            self._next_nonce += 1
            register = Command(0, nonce, REGISTER, "", None)
            self._pending[slot] = _Pending(process=0, command=register, registration=True)
            self._attempt(slot)
            return
        seq += 1
        self._client_of_slot[slot] = (client_id, seq)
        key = f"k{rng.randrange(wl.keys)}"
        roll = rng.random()
        if roll < wl.read_fraction:
            command = Command(client_id, seq, READ, key, None)
        elif rng.random() < wl.cas_fraction:
            old = rng.choice([None, *range(max(1, self._next_value - 4), self._next_value)])
            command = Command(client_id, seq, CAS, key, [old, self._take_value()])
        else:
            command = Command(client_id, seq, WRITE, key, self._take_value())
        self._pending[slot] = _Pending(process=client_id, command=command)
        self._record(client_id, EventType.INVOKE, command.op, key, command.value)
        self._attempt(slot)

    def _take_value(self) -> int:
        value = self._next_value
        self._next_value += 1
        return value

    def _target(self, slot: int, command: Command) -> NodeHost | None:
        hosts = [h for h in self._hosts().values() if not h.retired]
        if not hosts:
            return None
        guess = self._leader_guess.get(slot, 0)
        by_id = {h.node_id: h for h in hosts}
        if command.op == READ and self._rng.random() < self.workload.follower_read_fraction:
            return self._rng.choice(hosts)
        if guess in by_id:
            return by_id[guess]
        return self._rng.choice(hosts)

    def _attempt(self, slot: int) -> None:
        pending = self._pending.get(slot)
        if pending is None or self.stopped:
            return
        pending.attempts += 1
        self._token += 1
        token = pending.token = self._token
        host = self._target(slot, pending.command)
        self._loop.call_later(self.workload.timeout_units, lambda: self._timeout(slot, token))
        if host is None:
            return
        reply: Callable[[Reply], None] = lambda r: self._loop.call_later(  # noqa: E731
            self._rng.randint(1, 3), lambda: self._on_reply(slot, token, host.node_id, r)
        )
        command = pending.command
        send_delay = self._rng.randint(1, 3)
        if command.op == READ:
            self._loop.call_later(send_delay, lambda: host.read(command.key, reply))
        else:
            self._loop.call_later(send_delay, lambda: host.propose(command, reply))

    def _on_reply(self, slot: int, token: int, node_id: NodeId, reply: Reply) -> None:
        pending = self._pending.get(slot)
        if pending is None or pending.token != token:
            return  # a late answer to an attempt we already gave up on
        command = pending.command
        if reply.ok and pending.registration:
            self._leader_guess[slot] = node_id
            del self._pending[slot]
            self._client_of_slot[slot] = (int(reply.value), 0)
            self.registrations += 1
            self._schedule_next(slot)
            return
        if reply.ok:
            self._leader_guess[slot] = node_id
            del self._pending[slot]
            if command.op == CAS and reply.value is not True:
                self._record(pending.process, EventType.FAIL, CAS, command.key, command.value)
            else:
                self._record(pending.process, EventType.OK, command.op, command.key, reply.value)
                if command.op != READ:
                    self.acked_writes.append((reply.index, command.client_id))
            self._schedule_next(slot)
            return
        self._leader_guess[slot] = reply.leader_hint
        if not reply.definite:
            pending.maybe_applied = True
        if reply.value == SESSION_EXPIRED and not pending.registration:
            self.expired_sessions += 1
            self._give_up(slot, pending)  # retrying with an evicted session never succeeds
            return
        self._retry_or_give_up(slot, pending)

    def _timeout(self, slot: int, token: int) -> None:
        pending = self._pending.get(slot)
        if pending is None or pending.token != token:
            return
        if self._rng.random() < self.workload.forget_leader_probability:
            self._leader_guess[slot] = 0
        # No answer: the attempt may have entered a log and may still commit.
        pending.maybe_applied = True
        self._retry_or_give_up(slot, pending)

    def _retry_or_give_up(self, slot: int, pending: _Pending) -> None:
        pending.token = 0  # ignore anything still in flight for the old attempt
        if pending.registration:
            if self.finishing:
                del self._pending[slot]  # no new sessions once the run is winding down
            else:
                self._loop.call_later(self.workload.retry_units, lambda: self._attempt(slot))
            return
        if self.finishing or pending.attempts < self.workload.max_attempts:
            self._loop.call_later(self.workload.retry_units, lambda: self._attempt(slot))
            return
        self._give_up(slot, pending)

    def _give_up(self, slot: int, pending: _Pending) -> None:
        pending.token = 0
        del self._pending[slot]
        command = pending.command
        if command.op == READ or not pending.maybe_applied:
            self._record(pending.process, EventType.FAIL, command.op, command.key, None)
        else:
            self._record(pending.process, EventType.INFO, command.op, command.key, None)
            # Jepsen: a process whose outcome is unknown never issues another operation.
            self._client_of_slot[slot] = (0, 0)
        self._schedule_next(slot)

    def _schedule_next(self, slot: int) -> None:
        if self.finishing or self.stopped:
            return
        delay = self._rng.randint(1, self.workload.think_units_max)
        self._loop.call_later(delay, lambda: self._next_op(slot))

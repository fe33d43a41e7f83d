"""The nemesis: real faults on the running cluster, each logged as a history event.

Theory of operation. A schedule alternates a heal window and a fault window until the test
time is up: pick one fault (each enabled kind once per round, in a seeded random order; the
variant at random), apply it, record one
"nemesis" info event saying exactly what was done, hold it `fault_s`, undo it and record
that, then let the cluster run healthy for `heal_s`. One fault at a time, so every fault
window in the history has one cause. `heal_all` (always run at the end, also after an
error) lifts every partition, resumes paused nodes and restarts killed ones.

Faults (`--nemesis kind[:variant],...`; a bare kind picks a variant at random each time):
- kill:      random | leader | minority | all | all-after-ack
             kill -9, restarted (same data dir) at heal. all-after-ack waits for the next
             acknowledged write and kills every node in the same instant (from the
             recorder's completion hook, before the event loop runs anything else)
- pause:     random | leader | minority          SIGSTOP, SIGCONT at heal
- partition: halves | isolate-leader | ring | bridge | one-way
             real TCP faults on the directed-link proxies (jepsen/proxy.py). ring (each node
             sees a majority, no two the same one) needs 5 nodes. one-way: a node's
             outgoing or incoming links are cut, not both.
- transfer:  POST /v1/cluster/leader to a random other voter (nothing to heal)
- delay:     uniform: every link holds its bytes one of DELAYS_MS, both ways (a slow
             network: at 200 ms a heartbeat round trip nears the election timeout)
- skew:      leader | random: the node is restarted (SIGTERM) with its wall clock off by
             one of SKEWS_MS, either sign (the server's test failpoint
             RAFTSCHED_FAILPOINT_CLOCK_OFFSET_MS); `leader` then hands it the leadership
             back, so the skewed node is the one stamping entries. Heal restarts it with
             the true clock. Needs no privileges: the machine's clock is never touched.
- member:    replace: DELETE /v1/cluster/members/<random member> (the leader too) and stop
             that node; at heal a NEW node (ids are never reused) starts with `join` and
             is added with POST /v1/cluster/members (it is promoted to voter once caught
             up). Members reach a node added this way through one shared proxy, so a
             later partition cuts all of its incoming links or none (jepsen/cluster.py).
`kill:all` and `kill:all-after-ack` are only used when named: they take the whole cluster
down at once (with the power-loss failpoint they are what can expose acknowledgements sent
before the fsync).

The partition shapes are pure functions of (nodes, rng) below, tested without processes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .cluster import Cluster, ClusterError
from .history import Op
from .http_client import NodeApi
from .observe import leader, status
from .recorder import Recorder

Pair = tuple[int, int]
VARIANTS: Final[dict[str, tuple[str, ...]]] = {
    "kill": ("random", "leader", "minority", "all", "all-after-ack"),
    "pause": ("random", "leader", "minority"),
    "partition": ("halves", "isolate-leader", "ring", "bridge", "one-way"),
    "transfer": ("random",),
    "member": ("replace",),
    "delay": ("uniform",),
    "skew": ("leader", "random"),
}
# How far a skewed node's clock is off (either sign), ms.
SKEWS_MS: Final = (2_000, 30_000, 300_000)
SKEW_READY_TIMEOUT_S: Final = 15.0
DELAYS_MS: Final = (
    20,
    50,
    100,
    200,
)  # one way, per link: 200 ms makes RTTs near the election timeout
# Variants a bare kind never picks: they must be asked for by name.
EXPLICIT_ONLY: Final = frozenset({("kill", "all"), ("kill", "all-after-ack")})
# Client operations whose ok means "a write was acknowledged".
WRITE_FS: Final = frozenset({"submit", "lease", "heartbeat", "complete", "fail"})
TRANSFER_TIMEOUT_S: Final = 5.0
MEMBER_CHANGE_TIMEOUT_S: Final = 10.0  # a removal or an addition is retried / looked for this long


class NemesisSpecError(ValueError):
    """A --nemesis value names an unknown fault or one the cluster size cannot do."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    variants: tuple[str, ...]

    def __str__(self) -> str:
        return self.kind + (":" + "|".join(self.variants) if self.variants else "")


def parse_nemesis(text: str, *, nodes: int) -> list[FaultSpec]:
    """`partition,kill:leader,pause` -> specs; "" or "none" -> no faults."""
    specs: list[FaultSpec] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw or raw == "none":
            continue
        kind, _, variant = raw.partition(":")
        if kind not in VARIANTS:
            raise NemesisSpecError(f"unknown nemesis {kind!r} (known: {', '.join(VARIANTS)})")
        if variant:
            if variant not in VARIANTS[kind]:
                raise NemesisSpecError(
                    f"unknown {kind} variant {variant!r} (known: {', '.join(VARIANTS[kind])})"
                )
            chosen: tuple[str, ...] = (variant,)
        else:
            chosen = tuple(v for v in VARIANTS[kind] if (kind, v) not in EXPLICIT_ONLY)
        if nodes < 5:
            if chosen == ("ring",):
                raise NemesisSpecError("partition:ring needs 5 nodes (with 3 it cuts nothing)")
            chosen = tuple(v for v in chosen if v != "ring")
        specs.append(FaultSpec(kind, chosen))
    return specs


# -- partition shapes (pure) --------------------------------------------------------------


def cut_between(components: Sequence[Iterable[int]]) -> frozenset[Pair]:
    """Every directed link between two different components."""
    groups = [frozenset(c) for c in components]
    return frozenset(
        (a, b)
        for i, g in enumerate(groups)
        for j, h in enumerate(groups)
        if i != j
        for a in g
        for b in h
    )


def all_pairs(nodes: Sequence[int]) -> frozenset[Pair]:
    return frozenset((a, b) for a in nodes for b in nodes if a != b)


def halves(nodes: Sequence[int], rng: random.Random) -> tuple[list[list[int]], frozenset[Pair]]:
    """A random minority (n // 2 nodes) and majority."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    small, big = sorted(shuffled[: len(nodes) // 2]), sorted(shuffled[len(nodes) // 2 :])
    return [small, big], cut_between([small, big])


def isolate(node: int, nodes: Sequence[int]) -> tuple[list[list[int]], frozenset[Pair]]:
    rest = [n for n in nodes if n != node]
    return [[node], rest], cut_between([[node], rest])


def majorities_ring(nodes: Sequence[int], rng: random.Random) -> frozenset[Pair]:
    """Nodes on a random ring, each connected to its neighbours within n // 2 places: each
    sees a majority (itself included) and no two see the same one."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    reach = (majority - 1 + 1) // 2  # itself plus `reach` on each side covers a majority
    allowed = set()
    for i, a in enumerate(ring):
        for step in range(1, reach + 1):
            for b in (ring[(i + step) % n], ring[(i - step) % n]):
                allowed.add((a, b))
    return all_pairs(nodes) - allowed


def bridge(nodes: Sequence[int], rng: random.Random) -> tuple[int, frozenset[Pair]]:
    """Two halves that cannot talk, and one node (the bridge) that talks to both."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    middle = shuffled[0]
    rest = shuffled[1:]
    left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    return middle, cut_between([left, right])


def one_way(node: int, nodes: Sequence[int], *, inbound: bool) -> frozenset[Pair]:
    """Cut `node`'s incoming links (it hears nobody, everyone hears it) or its outgoing
    links (nobody hears it, it hears everyone)."""
    others = [n for n in nodes if n != node]
    if inbound:
        return frozenset((o, node) for o in others)
    return frozenset((node, o) for o in others)


# -- the schedule -------------------------------------------------------------------------


@dataclass(slots=True)
class Active:
    """What the current fault did, so heal can undo exactly that."""

    kind: str
    killed: list[int] = field(default_factory=list)
    restart_last: int | None = None  # killed too, but restarted after the others elected
    paused: list[int] = field(default_factory=list)
    partitioned: bool = False
    removed: list[int] = field(default_factory=list)
    delayed: bool = False
    skewed: list[int] = field(default_factory=list)


class Nemesis:
    def __init__(
        self,
        *,
        cluster: Cluster,
        api: NodeApi,
        recorder: Recorder,
        rng: random.Random,
        faults: Sequence[FaultSpec],
        fault_s: float,
        heal_s: float,
    ) -> None:
        assert fault_s > 0 and heal_s > 0
        self.cluster = cluster
        self.api = api
        self.recorder = recorder
        self.rng = rng
        self.faults = list(faults)
        self.fault_s = fault_s
        self.heal_s = heal_s
        self.current: str | None = None  # for the progress display
        self.applied = 0
        self._active: Active | None = None

    async def run(self, until: float) -> None:
        """Alternate heal and fault windows until the monotonic time `until`."""
        if not self.faults:
            return
        turn: list[FaultSpec] = []
        while True:
            await _sleep_until(min(time.monotonic() + self.heal_s, until))
            if time.monotonic() >= until:
                return
            if not turn:
                # Every kind once per round, in a seeded order: a short run still sees each.
                turn = self.rng.sample(self.faults, len(self.faults))
            spec = turn.pop()
            variant = self.rng.choice(spec.variants)
            try:
                await self.apply(spec.kind, variant)
                if spec.kind != "transfer":  # a transfer is instant: nothing to hold
                    await _sleep_until(min(time.monotonic() + self.fault_s, until))
                await self.heal()
            except ClusterError as exc:
                # A node died under us (a crash: the runner reports it). Say so in the
                # history, restore health (restart what is down) and carry on.
                self.recorder.nemesis(
                    "error", {"fault": f"{spec.kind}:{variant}", "error": str(exc)}
                )
                self._active = None
                await self.heal_all()

    async def _leader_or_random(self) -> tuple[int, str]:
        found = await leader(self.api, self.cluster.running())
        if found is not None:
            return found, "leader"
        return self.rng.choice(self.cluster.node_ids), "random (no leader found)"

    def _minority(self) -> list[int]:
        ids = list(self.cluster.node_ids)
        return sorted(self.rng.sample(ids, (len(ids) - 1) // 2))

    async def _targets(self, variant: str) -> tuple[list[int], str]:
        ids = self.cluster.node_ids
        if variant == "leader":
            node, how = await self._leader_or_random()
            return [node], how
        if variant == "minority":
            return self._minority(), "minority"
        if variant in ("all", "all-after-ack"):
            return list(ids), variant
        return [self.rng.choice(ids)], "random"

    async def apply(self, kind: str, variant: str) -> None:
        assert self._active is None, "one fault at a time"
        self.applied += 1
        self.current = f"{kind}:{variant}"
        if kind == "kill":
            nodes, how = await self._targets(variant)
            nodes = [n for n in nodes if self.cluster.alive(n)]
            self._active = Active(kind, killed=nodes)
            if variant == "all-after-ack":
                # The old leader's machine comes back last: the others must elect among
                # themselves, from what they made durable.
                self._active.restart_last = await leader(self.api, self.cluster.running())
                await self._kill_after_ack(nodes, how)
            else:
                self.cluster.kill_now(nodes)
                self.recorder.nemesis("kill", {"kind": how, "nodes": nodes})
            await asyncio.to_thread(self.cluster.reap, nodes)
        elif kind == "pause":
            nodes, how = await self._targets(variant)
            nodes = [n for n in nodes if self.cluster.alive(n) and not self.cluster.paused(n)]
            for n in nodes:
                self.cluster.pause(n)
            self._active = Active(kind, paused=nodes)
            self.recorder.nemesis("pause", {"kind": how, "nodes": nodes})
        elif kind == "partition":
            value = await self._partition(variant)
            self._active = Active(kind, partitioned=True)
            self.recorder.nemesis("partition", value)
        elif kind == "transfer":
            self.recorder.nemesis("transfer-leader", await self._transfer())
            self._active = Active(kind)
        elif kind == "member":
            self._active = Active(kind, removed=await self._remove_member())
        elif kind == "skew":
            self._active = Active(kind, skewed=await self._skew(variant))
        elif kind == "delay":
            delay_ms = self.rng.choice(DELAYS_MS)
            self.cluster.set_delay(delay_ms)
            self._active = Active(kind, delayed=True)
            self.recorder.nemesis("delay", {"kind": variant, "delay_ms": delay_ms})
        else:
            raise AssertionError(f"unknown fault {kind}")

    async def _kill_after_ack(self, nodes: list[int], how: str) -> None:
        """Kill `nodes` the moment the next write is acknowledged (or after fault_s with
        none); the event names that acknowledgement's history index ("after")."""
        struck: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def strike(after: int | None) -> None:
            self.cluster.kill_now(nodes)
            self.recorder.nemesis("kill", {"kind": how, "nodes": nodes, "after": after})
            struck.set_result(None)

        def hook(op: Op) -> None:
            if op.type == "ok" and op.f in WRITE_FS and not struck.done():
                strike(op.index)

        self.recorder.on_completion.append(hook)
        try:
            await asyncio.wait_for(asyncio.shield(struck), self.fault_s)
        except TimeoutError:
            if not struck.done():
                strike(None)
        finally:
            self.recorder.on_completion.remove(hook)

    async def _partition(self, variant: str) -> dict[str, Any]:
        ids = self.cluster.node_ids
        value: dict[str, Any] = {"kind": variant}
        if variant == "halves":
            components, blocked = halves(ids, self.rng)
            value["components"] = components
        elif variant == "isolate-leader":
            node, how = await self._leader_or_random()
            components, blocked = isolate(node, ids)
            value.update(components=components, isolated=node, target=how)
        elif variant == "ring":
            blocked = majorities_ring(ids, self.rng)
        elif variant == "bridge":
            middle, blocked = bridge(ids, self.rng)
            value["bridge"] = middle
        elif variant == "one-way":
            node = self.rng.choice(ids)
            inbound = self.rng.random() < 0.5
            blocked = one_way(node, ids, inbound=inbound)
            value.update(node=node, direction="inbound" if inbound else "outbound")
        else:
            raise AssertionError(f"unknown partition {variant}")
        self.cluster.set_blocked(blocked)
        value["blocked"] = sorted([a, b] for a, b in blocked)
        return value

    async def _skew(self, variant: str) -> list[int]:
        """Restart one node with its clock off; for `leader`, make it lead again."""
        if variant == "leader":
            node, how = await self._leader_or_random()
        else:
            node, how = self.rng.choice(self.cluster.node_ids), "random"
        offset_ms = self.rng.choice(SKEWS_MS) * self.rng.choice((-1, 1))
        await asyncio.to_thread(self.cluster.restart, node, clock_offset_ms=offset_ms)
        value: dict[str, Any] = {"kind": how, "node": node, "offset_ms": offset_ms}
        if variant == "leader" and await self._caught_up(node):
            value["transfer"] = await self._transfer(to=node)
        self.recorder.nemesis("skew", value)
        return [node]

    async def _caught_up(self, node: int) -> bool:
        """Until `node` serves and follows a leader whose commit index it has applied."""
        deadline = time.monotonic() + SKEW_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            mine = await status(self.api, node)
            lead = mine.leader_id if mine is not None else None
            theirs = await status(self.api, lead) if lead is not None else None
            if (
                mine is not None
                and theirs is not None
                and mine.applied_index >= theirs.commit_index
            ):
                return True
            await asyncio.sleep(0.1)
        return False

    async def _transfer(self, to: int | None = None) -> dict[str, Any]:
        """Leadership to `to` (default: a random other running node)."""
        current = await leader(self.api, self.cluster.running())
        if current is None:
            return {"kind": "transfer", "error": "no leader"}
        if current == to:
            return {"kind": "transfer", "from": current, "to": to, "status": None, "error": None}
        others = [n for n in self.cluster.running() if n != current]
        if not others:
            return {"kind": "transfer", "from": current, "error": "no other running node"}
        target = to if to is not None else self.rng.choice(others)
        outcome = await self.api.call(
            current,
            "POST",
            "/v1/cluster/leader",
            role="admin",
            timeout_s=TRANSFER_TIMEOUT_S,
            body={"to": target},
        )
        return {
            "kind": "transfer",
            "from": current,
            "to": target,
            "status": outcome.status,
            "error": outcome.error,
        }

    async def _members_seen(self) -> list[int] | None:
        """The member ids in the leader's GET /v1/cluster (None: no leader answered)."""
        current = await leader(self.api, self.cluster.running())
        if current is None:
            return None
        outcome = await self.api.call(
            current, "GET", "/v1/cluster", role="read", timeout_s=TRANSFER_TIMEOUT_S
        )
        members = outcome.body.get("members") if isinstance(outcome.body, dict) else None
        if not isinstance(members, list):
            return None
        return [int(m["node_id"]) for m in members if isinstance(m, dict) and "node_id" in m]

    async def _remove_member(self) -> list[int]:
        """Remove one member and stop it: [its id], or [] when the cluster refused."""
        ids = self.cluster.node_ids
        victim = self.rng.choice(ids)
        target = await leader(self.api, self.cluster.running()) or self.rng.choice(ids)
        outcome = await self.api.call(
            target,
            "DELETE",
            f"/v1/cluster/members/{victim}",
            role="admin",
            timeout_s=MEMBER_CHANGE_TIMEOUT_S,
        )
        removed = outcome.verdict == "ok"
        if outcome.verdict == "info":  # it may still commit: look at the members
            deadline = time.monotonic() + MEMBER_CHANGE_TIMEOUT_S
            while time.monotonic() < deadline and not removed:
                seen = await self._members_seen()
                removed = seen is not None and victim not in seen
                await asyncio.sleep(0.2)
        self.recorder.nemesis(
            "remove-member",
            {
                "kind": "replace",
                "node": victim,
                "removed": removed,
                "status": outcome.status,
                "error": outcome.error,
            },
        )
        if not removed:
            return []
        await asyncio.to_thread(self.cluster.retire, victim)
        return [victim]

    async def _add_member(self) -> None:
        """Start a new node and add it (retried until a leader takes it, bounded)."""
        node_id = self.cluster.next_node_id()
        peer_addr, http_url = await asyncio.to_thread(self.cluster.add_node, node_id)
        body = {"node_id": node_id, "peer_addr": peer_addr, "http_url": http_url}
        deadline = time.monotonic() + MEMBER_CHANGE_TIMEOUT_S
        added, status, error = False, None, None
        while not added and time.monotonic() < deadline:
            target = await leader(self.api, self.cluster.running())
            if target is None:
                await asyncio.sleep(0.2)
                continue
            outcome = await self.api.call(
                target,
                "POST",
                "/v1/cluster/members",
                role="admin",
                timeout_s=TRANSFER_TIMEOUT_S,
                body=body,
            )
            status, error = outcome.status, outcome.error
            added = outcome.verdict == "ok" or outcome.code == "member_exists"
            if not added:
                await asyncio.sleep(0.3)
        self.recorder.nemesis(
            "add-member", {"node": node_id, "added": added, "status": status, "error": error}
        )
        if added:
            self.cluster.admit(node_id)
        else:
            await asyncio.to_thread(self.cluster.retire, node_id)

    async def heal(self) -> None:
        """Undo the current fault (if any) and record it."""
        active, self._active = self._active, None
        self.current = None
        if active is None:
            return
        if active.removed:
            await self._add_member()
        if active.partitioned:
            self.cluster.heal_network()
            self.recorder.nemesis("heal", {"kind": "partition"})
        if active.delayed:
            self.cluster.set_delay(0)
            self.recorder.nemesis("heal", {"kind": "delay"})
        for n in active.skewed:
            await asyncio.to_thread(self.cluster.restart, n, clock_offset_ms=0)
        if active.skewed:
            self.recorder.nemesis("unskew", {"nodes": active.skewed})
        for n in active.paused:
            if self.cluster.alive(n) and self.cluster.paused(n):
                self.cluster.resume(n)
        if active.paused:
            self.recorder.nemesis("resume", {"nodes": active.paused})
        first = [n for n in active.killed if n != active.restart_last]
        for n in first:
            if not self.cluster.alive(n):
                self.cluster.start_node(n)
        if first:
            self.recorder.nemesis("start", {"nodes": first})
        last = active.restart_last
        if last is not None and last in active.killed and not self.cluster.alive(last):
            await self._until_leader_among(first)
            self.cluster.start_node(last)
            self.recorder.nemesis("start", {"nodes": [last], "last": True})

    async def _until_leader_among(self, nodes: list[int]) -> None:
        """Until one of `nodes` leads (bounded: MEMBER_CHANGE_TIMEOUT_S)."""
        deadline = time.monotonic() + MEMBER_CHANGE_TIMEOUT_S
        while time.monotonic() < deadline and await leader(self.api, nodes) is None:
            await asyncio.sleep(0.1)

    async def heal_all(self) -> None:
        """Lift every fault, whatever its origin: the network, delays, paused, dead and
        clock-skewed nodes."""
        await self.heal()
        self.cluster.heal_network()
        self.cluster.set_delay(0)
        resumed = [
            n for n in self.cluster.node_ids if self.cluster.alive(n) and self.cluster.paused(n)
        ]
        for n in resumed:
            self.cluster.resume(n)
        started = [n for n in self.cluster.node_ids if not self.cluster.alive(n)]
        for n in started:
            self.cluster.nodes[n].clock_offset_ms = 0
            self.cluster.start_node(n)
        unskewed = [n for n in self.cluster.node_ids if self.cluster.nodes[n].clock_offset_ms]
        for n in unskewed:
            await asyncio.to_thread(self.cluster.restart, n, clock_offset_ms=0)
        self.recorder.nemesis(
            "heal", {"kind": "all", "resumed": resumed, "started": started, "unskewed": unskewed}
        )


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)

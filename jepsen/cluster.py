"""Real `raftsched node` processes on this machine, every peer link behind a fault proxy.

Theory of operation. `Cluster.start` picks free loopback ports, writes the cluster secret,
one token per role (admin, submit, worker, read; only their sha256 digests go to the nodes)
and one TOML config per node, then starts `python -m raftsched.cli node --config <file>`
per node in its own session (a Ctrl-C in the terminal reaches the harness, not the nodes:
the harness decides how they stop). Node i's config lists peer j at the address of the
proxy for the directed link i->j (jepsen/proxy.py), both the peer port and the HTTP URL
(followers forward client requests to the leader over HTTP: a partition must cut that
too). Clients talk to each node's real HTTP port.

The harness talks to nodes only over HTTP and with signals: it never imports
raftsched.server, so it tests exactly what an operator runs.

Every process is tracked by pid and signalled by pid: kill (SIGKILL), pause (SIGSTOP),
resume (SIGCONT), restart (same data dir, same ports, same config). `stop` ends them all:
SIGCONT to paused ones, SIGTERM, a shared deadline, SIGKILL for stragglers, and a wait on
every pid. It is idempotent and also registered with atexit, so an exception or a Ctrl-C
anywhere in the harness still leaves no process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from .proxy import HOST, LinkMode, ProxyHub

NODE_MODULE: Final = "raftsched.cli"  # the `raftsched` entry point's module
ROLES: Final = ("admin", "submit", "worker", "read")
UNSAFE_MODES: Final = ("stale_reads", "ack_before_fsync")
POWER_LOSS_ENV: Final = "RAFTSCHED_FAILPOINT_POWER_LOSS"  # docs/operations.md
CLOCK_OFFSET_ENV: Final = "RAFTSCHED_FAILPOINT_CLOCK_OFFSET_MS"  # raftsched/server/wall_clock.py
FSYNC_DELAY_ENV: Final = "RAFTSCHED_FAILPOINT_FSYNC_DELAY_MS"  # raftsched/storage/files.py
STOP_GRACE_S: Final = 15.0  # SIGTERM -> SIGKILL for the whole cluster
KILL_WAIT_S: Final = 10.0  # a SIGKILLed process is reaped within this
STACK_DUMP_TIMEOUT_S: Final = 10.0
LOG_TAIL_LINES: Final = 20
EPHEMERAL_RANGE_FILE: Final = "/proc/sys/net/ipv4/ip_local_port_range"
PORT_RANGE_LOW: Final = 10_000  # node ports come from [PORT_RANGE_LOW, ephemeral low)
PORT_TRIES_MAX: Final = 1_000


class ClusterError(RuntimeError):
    """A node could not be started or signalled (the message carries its log tail)."""


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out as source ports of outgoing connections."""
    try:
        low, high = Path(EPHEMERAL_RANGE_FILE).read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports free right now, chosen BELOW the ephemeral range: a port the
    OS handed out for bind(0) can be taken as the source port of any outgoing connection
    before a node (re)binds it, and this harness alone opens thousands of connections
    (one per request, one per proxied link). Candidates are tried at random, bounded."""
    rng = rng or random.Random()
    low = PORT_RANGE_LOW
    high = min(ephemeral_range()[0], 65536) - 1
    assert high - low > 100 * count, "no room for ports below the ephemeral range"
    chosen: list[int] = []
    for _ in range(PORT_TRIES_MAX):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(low, high)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        chosen.append(port)
    raise ClusterError(f"could not find {count} free ports in [{low}, {high}]")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Tokens:
    """One bearer token per role; the nodes only see their sha256 digests."""

    admin: str
    submit: str
    worker: str
    read: str

    @classmethod
    def generate(cls) -> Tokens:
        return cls(*(secrets.token_urlsafe(24) for _ in ROLES))

    def of(self, role: str) -> str:
        assert role in ROLES, role
        token: str = getattr(self, role)
        return token

    def toml(self) -> str:
        return "".join(f'"{sha256_hex(self.of(role))}" = "{role}"\n' for role in ROLES)


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    nodes: int = 3
    unsafe: frozenset[str] = frozenset()  # names from UNSAFE_MODES
    fsync: str = "always"
    tick_ms: int = 30
    election_ticks: int = 10
    power_loss: bool = False  # kill -9 loses unsynced writes (needed to show ack_before_fsync)
    fsync_delay_ms: int = 0  # every fsync first sleeps this long: a slow disk
    fsync_delay_nodes: frozenset[int] | None = None  # the nodes with that disk (None: all)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        assert self.nodes in (1, 3, 5), "a cluster of 3 or 5 nodes (1 for tests)"
        unknown = set(self.unsafe) - set(UNSAFE_MODES)
        assert not unknown, f"unknown unsafe mode(s) {sorted(unknown)}"
        assert self.fsync in ("always", "never")


@dataclass(slots=True)
class Node:
    node_id: int
    http_port: int
    peer_port: int
    data_dir: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    paused: bool = False
    starts: int = 0
    killed: bool = False  # the harness killed it: its exit is not a crash
    join: bool = False  # added at run time (`join = true`: no membership until added)
    retired: bool = False  # removed from the cluster and stopped
    clock_offset_ms: int = 0  # its wall clock's offset (the clock failpoint), while it runs

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True, slots=True)
class Link:
    """The proxies of the directed link src->dst (src dials dst)."""

    src: int
    dst: int
    peer_proxy: str
    http_proxy: str


@dataclass
class Cluster:
    base: Path
    options: ClusterOptions = field(default_factory=ClusterOptions)
    tokens: Tokens = field(default_factory=Tokens.generate)

    def __post_init__(self) -> None:
        self.nodes: dict[int, Node] = {}  # every node ever started, retired ones too
        self.members: list[int] = []  # the current members, as the harness changed them
        self.urls: dict[int, str] = {}  # node id -> its real HTTP URL (clients use these)
        self.links: dict[tuple[int, int], Link] = {}
        self.blocked: frozenset[tuple[int, int]] = frozenset()
        self.delay_ms = 0
        self.crashes: list[dict[str, float | int | None]] = []  # exits the harness did not cause
        self.stuck: list[dict[str, int | str]] = []  # nodes that ignored SIGTERM (stack dumps)
        self._hub = ProxyHub()
        self._started = False
        self._stopped = False

    # -- setup ------------------------------------------------------------------------------

    @property
    def node_ids(self) -> list[int]:
        """The current members (nodes added at run time included, removed ones not)."""
        return sorted(self.members)

    def url(self, node_id: int) -> str:
        return self.nodes[node_id].url

    def start(self) -> None:
        """Proxies, files, configs, then every node process."""
        assert not self._started, "a Cluster starts once"
        self._started = True
        atexit.register(self.stop)
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "logs").mkdir(exist_ok=True)
        ids = list(range(1, self.options.nodes + 1))
        for node_id in ids:
            self._new_node(node_id)
        self.members = list(ids)
        self._hub.start()
        for src in ids:
            for dst in ids:
                if src != dst:
                    self._add_link(src, dst)
        self._secret_file.write_text(secrets.token_hex(32) + "\n")
        self._secret_file.chmod(0o600)
        self._tokens_file.write_text(self.tokens.toml())
        self._tokens_file.chmod(0o600)
        for node in self.nodes.values():
            node.config_path.write_text(self._config_toml(node))
        for node_id in ids:
            self.start_node(node_id)

    @property
    def _secret_file(self) -> Path:
        return self.base / "cluster.secret"

    @property
    def _tokens_file(self) -> Path:
        return self.base / "tokens.toml"

    def _new_node(self, node_id: int) -> Node:
        assert node_id not in self.nodes, f"node id {node_id} was used (ids are never reused)"
        http_port, peer_port = free_ports(2)
        node = Node(
            node_id=node_id,
            http_port=http_port,
            peer_port=peer_port,
            data_dir=self.base / f"node{node_id}",
            config_path=self.base / f"node{node_id}.toml",
            log_path=self.base / "logs" / f"node{node_id}.log",
        )
        self.nodes[node_id] = node
        self.urls[node_id] = node.url
        return node

    # -- membership -------------------------------------------------------------------------

    def next_node_id(self) -> int:
        return max(self.nodes) + 1

    def add_node(self, node_id: int) -> tuple[str, str]:
        """Start a new node that joins (it has no membership until a member adds it);
        returns the (peer_addr, http_url) to announce in POST /v1/cluster/members.

        The members learn a new node's address from that one request (docs/operations.md),
        so they all reach it through ONE shared proxy per kind ("peer *->n"): a partition
        that cuts any link into a node added at run time cuts every link into it. Its own
        outgoing links get one proxy per directed link, as usual."""
        node = self._new_node(node_id)
        node.join = True
        peer_name, http_name = f"peer *->{node_id}", f"http *->{node_id}"
        self._hub.add(peer_name, (HOST, node.peer_port))
        self._hub.add(http_name, (HOST, node.http_port))
        for other in self.members:
            self._add_link(node_id, other)
            self.links[(other, node_id)] = Link(other, node_id, peer_name, http_name)
        node.config_path.write_text(self._config_toml(node))
        self.start_node(node_id)
        return (
            f"{HOST}:{self._hub.port(peer_name)}",
            f"http://{HOST}:{self._hub.port(http_name)}",
        )

    def admit(self, node_id: int) -> None:
        """The cluster accepted `node_id`: clients and faults may now pick it."""
        assert node_id in self.nodes and node_id not in self.members
        self.members.append(node_id)

    def retire(self, node_id: int) -> None:
        """A removed (or never admitted) node: out of the members, its process stopped
        (SIGTERM, SIGKILL after STOP_GRACE_S) and reaped."""
        if node_id in self.members:
            self.members.remove(node_id)
        node = self.nodes[node_id]
        node.retired = True
        node.killed = True  # its exit is ours, not a crash
        if node.proc is None or not node.alive():
            return
        if node.paused:
            node.proc.send_signal(signal.SIGCONT)
            node.paused = False
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=KILL_WAIT_S)

    def _add_link(self, src: int, dst: int) -> None:
        target = self.nodes[dst]
        peer_name, http_name = f"peer {src}->{dst}", f"http {src}->{dst}"
        self._hub.add(peer_name, (HOST, target.peer_port))
        self._hub.add(http_name, (HOST, target.http_port))
        self.links[(src, dst)] = Link(src, dst, peer_name, http_name)

    def proxy_port(self, name: str) -> int:
        return self._hub.port(name)

    def _config_toml(self, node: Node) -> str:
        opts = self.options
        lines = [
            f"node_id = {node.node_id}",
            f'data_dir = "{node.data_dir}"',
            f'peer_addr = "{HOST}:{node.peer_port}"',
            f'http_addr = "{HOST}:{node.http_port}"',
            f'secret_file = "{self._secret_file}"',
            f'tokens_file = "{self._tokens_file}"',
            "auth = true  # loopback would default to off: the harness tests what production runs",
            f'fsync = "{opts.fsync}"',
            f'log_level = "{opts.log_level}"',
            f"join = {'true' if node.join else 'false'}",
            "",
            "[raft]",
            f"tick_ms = {opts.tick_ms}",
            f"election_ticks = {opts.election_ticks}",
        ]
        if opts.unsafe:
            lines += ["", "[unsafe]  # DELIBERATELY BROKEN: the checkers must catch this run"]
            lines += [f"{mode} = true" for mode in sorted(opts.unsafe)]
        for other in self.node_ids:
            if other == node.node_id:
                continue
            link = self.links[(node.node_id, other)]
            lines += [
                "",
                f"[peers.{other}]  # through the proxies of the link {node.node_id}->{other}",
                f'peer_addr = "{HOST}:{self._hub.port(link.peer_proxy)}"',
                f'http_url = "http://{HOST}:{self._hub.port(link.http_proxy)}"',
            ]
        return "\n".join(lines) + "\n"

    # -- processes --------------------------------------------------------------------------

    def start_node(self, node_id: int) -> None:
        """Start (or restart after a kill) with the same config, data dir and ports."""
        node = self.nodes[node_id]
        if node.alive():
            raise ClusterError(f"node {node_id} is already running (pid {node.pid})")
        if node.proc is not None:
            code = node.proc.wait(timeout=KILL_WAIT_S)
            if not node.killed:
                self.crashes.append({"node": node_id, "exit_code": code, "at": time.time()})
        if node.log is not None:
            node.log.close()
        node.log = node.log_path.open("ab")
        node.log.write(f"--- jepsen: start #{node.starts + 1} at {time.time():.3f}\n".encode())
        node.log.flush()
        env = dict(os.environ)
        if self.options.power_loss:
            env[POWER_LOSS_ENV] = "1"
        slow = self.options.fsync_delay_nodes
        if self.options.fsync_delay_ms and (slow is None or node_id in slow):
            env[FSYNC_DELAY_ENV] = str(self.options.fsync_delay_ms)
        env.pop(CLOCK_OFFSET_ENV, None)
        if node.clock_offset_ms:
            env[CLOCK_OFFSET_ENV] = str(node.clock_offset_ms)
        argv = [sys.executable, "-m", NODE_MODULE, "node", "--config", str(node.config_path)]
        node.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=node.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        node.paused = False
        node.killed = False
        node.starts += 1
        self._write_pids()

    def restart(self, node_id: int, *, clock_offset_ms: int = 0) -> None:
        """Stop the node (SIGTERM, SIGKILL after STOP_GRACE_S) and start it again, its wall
        clock offset by `clock_offset_ms` (the server's clock failpoint; 0: the true clock)."""
        node = self.nodes[node_id]
        if node.proc is not None and node.alive():
            node.killed = True  # this exit is ours
            if node.paused:
                node.proc.send_signal(signal.SIGCONT)
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._dump_stacks(node)
                node.proc.kill()
                node.proc.wait(timeout=KILL_WAIT_S)
        node.clock_offset_ms = clock_offset_ms
        self.start_node(node_id)

    def _write_pids(self) -> None:
        """cluster/pids.json: who to look for if the harness itself is killed -9."""
        pids = {str(i): n.pid for i, n in self.nodes.items() if n.pid is not None}
        (self.base / "pids.json").write_text(json.dumps(pids) + "\n")

    def alive(self, node_id: int) -> bool:
        return self.nodes[node_id].alive()

    def paused(self, node_id: int) -> bool:
        return self.nodes[node_id].paused

    def running(self) -> list[int]:
        """Nodes whose process runs and is not paused."""
        return [i for i in self.node_ids if self.alive(i) and not self.paused(i)]

    def _signal(self, node_id: int, sig: signal.Signals) -> subprocess.Popen[bytes]:
        node = self.nodes[node_id]
        if node.proc is None or not node.alive():
            raise ClusterError(f"node {node_id} is not running\n{self.log_tail(node_id)}")
        node.proc.send_signal(sig)
        return node.proc

    def kill_now(self, node_ids: list[int]) -> None:
        """SIGKILL every node in `node_ids` back to back, without waiting in between (the
        nodes die within microseconds of each other); `reap` waits for them."""
        for node_id in node_ids:
            if not self.alive(node_id):
                continue  # already dead (its exit is reported by start_node)
            self._signal(node_id, signal.SIGKILL)
            self.nodes[node_id].killed = True
            self.nodes[node_id].paused = False

    def reap(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            proc = self.nodes[node_id].proc
            assert proc is not None
            proc.wait(timeout=KILL_WAIT_S)

    def kill(self, node_id: int) -> None:
        """kill -9 (no shutdown code runs), then reap it."""
        if not self.alive(node_id):
            raise ClusterError(f"node {node_id} is not running\n{self.log_tail(node_id)}")
        self.kill_now([node_id])
        self.reap([node_id])

    def pause(self, node_id: int) -> None:
        self._signal(node_id, signal.SIGSTOP)
        self.nodes[node_id].paused = True

    def resume(self, node_id: int) -> None:
        self._signal(node_id, signal.SIGCONT)
        self.nodes[node_id].paused = False

    def exit_codes(self) -> dict[int, int | None]:
        """Each node's exit code (None while it runs); a crash shows up here."""
        return {i: (n.proc.poll() if n.proc is not None else None) for i, n in self.nodes.items()}

    def log_tail(self, node_id: int, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.nodes[node_id].log_path.read_text(errors="replace")
        except OSError:
            return f"(no log for node {node_id})"
        return "\n".join(text.splitlines()[-lines:])

    # -- network ----------------------------------------------------------------------------

    def set_blocked(self, blocked: Iterable[tuple[int, int]]) -> None:
        """Exactly these directed links drop everything (src can no longer reach dst);
        every other link passes."""
        wanted = frozenset(blocked)
        for src, dst in wanted:
            assert (src, dst) in self.links, f"no link {src}->{dst}"
        # A proxy shared by several links (into a node added at run time) drops when any
        # of its links is cut.
        drop = {name for pair in wanted for name in self._link_names(pair)}
        every = {name for pair in self.links for name in self._link_names(pair)}
        self._hub.set_mode(sorted(every - drop), LinkMode.PASS)
        self._hub.set_mode(sorted(drop), LinkMode.DROP)
        self.blocked = wanted

    def heal_network(self) -> None:
        self.set_blocked(())

    def set_delay(self, delay_ms: int) -> None:
        """Every link (peer and HTTP, both directions) holds each chunk `delay_ms`."""
        assert delay_ms >= 0
        modes = self._hub.modes()
        names = sorted({name for pair in self.links for name in self._link_names(pair)})
        for mode in {modes[name] for name in names}:
            same = [name for name in names if modes[name] is mode]
            self._hub.set_mode(same, mode, delay_ms=delay_ms)
        self.delay_ms = delay_ms

    def _link_names(self, pair: tuple[int, int]) -> tuple[str, str]:
        link = self.links[pair]
        return link.peer_proxy, link.http_proxy

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> dict[int, int | None]:
        """Stop every node by pid (SIGCONT, SIGTERM, then SIGKILL after STOP_GRACE_S) and the
        proxies; returns the exit codes. Idempotent."""
        if self._stopped:
            return self.exit_codes()
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for node_id, node in self.nodes.items():
            if node.proc is not None and not node.alive() and not node.killed:
                code = node.proc.returncode
                self.crashes.append({"node": node_id, "exit_code": code, "at": time.time()})
        for node in self.nodes.values():
            if node.proc is not None and node.alive():
                with contextlib.suppress(ProcessLookupError):
                    if node.paused:
                        node.proc.send_signal(signal.SIGCONT)
                    node.proc.send_signal(signal.SIGTERM)
                node.paused = False
        deadline = time.monotonic() + STOP_GRACE_S
        for node in self.nodes.values():
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._dump_stacks(node)
                node.proc.kill()
                node.proc.wait(timeout=KILL_WAIT_S)
        for node in self.nodes.values():
            if node.log is not None:
                node.log.close()
                node.log = None
        self._hub.stop()
        return self.exit_codes()

    def _dump_stacks(self, node: Node) -> None:
        """A node that ignored SIGTERM: save its threads' stacks (py-spy, when installed)
        next to its log before it is SIGKILLed, for whoever debugs the hang."""
        py_spy = Path(sys.executable).with_name("py-spy")
        if node.pid is None or not py_spy.exists():
            return
        out = node.log_path.with_suffix(".stuck.txt")
        try:
            with out.open("wb") as sink:
                subprocess.run(
                    [str(py_spy), "dump", "--pid", str(node.pid)],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=STACK_DUMP_TIMEOUT_S,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired):
            return
        self.stuck.append({"node": node.node_id, "stacks": str(out)})

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> Mapping[str, object]:
        """For the report's meta: who is where."""
        return {
            "nodes": {
                i: {
                    "url": n.url,
                    "peer_port": n.peer_port,
                    "pid": n.pid,
                    "starts": n.starts,
                    "joined": n.join,
                    "retired": n.retired,
                    "clock_offset_ms": n.clock_offset_ms,
                }
                for i, n in self.nodes.items()
            },
            "members": self.node_ids,
            "unsafe": sorted(self.options.unsafe),
            "fsync": self.options.fsync,
            "power_loss": self.options.power_loss,
            "fsync_delay_ms": self.options.fsync_delay_ms,
            "fsync_delay_nodes": sorted(self.options.fsync_delay_nodes or self.node_ids),
            "base": str(self.base),
        }

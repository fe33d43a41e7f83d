"""`LocalCluster`: real `raftsched node` processes on free loopback ports, for tests.

Every wait has a deadline and fails with the tail of every node's log (captured to files in
the cluster's base dir), so a failing test says what the nodes said. Processes are started,
signalled and stopped by pid; nothing is killed by name. Used by the server, worker e2e and
jepsen tests (interfaces.md).

    with LocalCluster(tmp_path, nodes=3) as cluster:
        leader = cluster.wait_for_leader()
        cluster.post(leader, "/v1/jobs", {...})
        cluster.kill(leader); cluster.restart(leader)
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from raftsched.server.local_nodes import (
    ClusterFiles,
    NodeSpec,
    get_json,
    node_argv,
    prepare_files,
)

T = TypeVar("T")
LOG_TAIL_LINES = 25


def free_ports(count: int) -> list[int]:
    """Ports the OS just handed out (bound then released: free unless someone races us)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_base(offsets: Iterable[int]) -> int:
    """A base port B with B+o free right now for every o in `offsets` (tried at random,
    bounded): for commands that take a base port and add node numbers to it."""
    wanted = tuple(offsets)
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20_000, 60_000)
        socks: list[socket.socket] = []
        try:
            for o in wanted:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + o))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no base port with offsets {wanted} all free")


class ClusterError(AssertionError):
    """A wait on the cluster timed out or a node misbehaved (carries the node logs)."""


@dataclass
class HttpResult:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class _Node:
    spec: NodeSpec
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    join: bool = False
    paused: bool = False


class LocalCluster:
    def __init__(
        self,
        base: Path,
        *,
        nodes: int = 3,
        fsync: str = "always",
        tick_ms: int = 30,
        election_ticks: int = 10,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.files: ClusterFiles = prepare_files(base)
        self.fsync = fsync
        self.extra = [
            *extra_args,
            "--tick-ms",
            str(tick_ms),
            "--election-ticks",
            str(election_ticks),
        ]
        self.nodes: dict[int, _Node] = {}
        for i in range(1, nodes + 1):
            self._define(i)
        self.members = list(self.nodes)  # the initial voters

    def _define(self, node_id: int) -> _Node:
        http_port, peer_port = free_ports(2)
        node = _Node(NodeSpec(node_id, http_port, peer_port))
        self.nodes[node_id] = node
        return node

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        try:
            self.wait_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        """Until every running node answers GET /v1/cluster."""
        self.wait_until(
            "every running node to serve HTTP",
            lambda: all(
                self.status(i) is not None
                for i in self.nodes
                if self.alive(i) and not self.nodes[i].paused
            ),
            timeout_s,
        )

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        for node_id in self.members:
            self.start_node(node_id)

    def start_node(self, node_id: int, env: dict[str, str] | None = None) -> None:
        """Start (or restart) a node; `env` adds environment variables (failpoints)."""
        node = self.nodes[node_id]
        assert node.proc is None or node.proc.poll() is not None, f"node {node_id} is running"
        specs = [self.nodes[i].spec for i in self.members if i in self.nodes]
        if node_id not in self.members:
            specs.append(node.spec)
        argv = node_argv(
            node.spec, specs, self.files, fsync=self.fsync, join=node.join, extra=self.extra
        )
        log_path = self.log_path(node_id)
        if node.log is not None:
            node.log.close()
        node.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        node.proc = subprocess.Popen(
            argv,
            stdout=node.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        node.paused = False

    def add_node(self, node_id: int) -> NodeSpec:
        """Define and start a new node that joins (it has no membership until added)."""
        node = self._define(node_id)
        node.join = True
        self.start_node(node_id)
        return node.spec

    def pid(self, node_id: int) -> int:
        proc = self.nodes[node_id].proc
        assert proc is not None
        return proc.pid

    def alive(self, node_id: int) -> bool:
        proc = self.nodes[node_id].proc
        return proc is not None and proc.poll() is None

    def signal(self, node_id: int, sig: signal.Signals) -> None:
        proc = self.nodes[node_id].proc
        assert proc is not None and proc.poll() is None, f"node {node_id} is not running"
        proc.send_signal(sig)

    def kill(self, node_id: int) -> None:
        """kill -9: no shutdown code runs."""
        self.signal(node_id, signal.SIGKILL)
        proc = self.nodes[node_id].proc
        assert proc is not None
        proc.wait(timeout=10)

    def pause(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGSTOP)
        self.nodes[node_id].paused = True

    def resume(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGCONT)
        self.nodes[node_id].paused = False

    def terminate(self, node_id: int, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for the exit code (a clean stop is 0)."""
        node = self.nodes[node_id]
        assert node.proc is not None
        if node.paused:
            self.resume(node_id)
        node.proc.send_signal(signal.SIGTERM)
        try:
            return node.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
            raise ClusterError(
                f"node {node_id} ignored SIGTERM for {timeout_s}s\n" + self.logs()
            ) from None

    def restart(self, node_id: int) -> None:
        if self.alive(node_id):
            self.kill(node_id)
        self.start_node(node_id)

    def stop(self) -> None:
        """SIGTERM every node (SIGCONT first if paused), SIGKILL stragglers after 15 s."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                if node.paused:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in self.nodes.values():
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            if node.log is not None:
                node.log.close()
                node.log = None

    # -- observation --------------------------------------------------------------------

    def url(self, node_id: int) -> str:
        return self.nodes[node_id].spec.url

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in self.nodes]

    def log_path(self, node_id: int) -> Path:
        return self.files.log_file(f"node{node_id}")

    def logs(self) -> str:
        parts = []
        for node_id in self.nodes:
            try:
                lines = self.log_path(node_id).read_text(errors="replace").splitlines()
            except OSError:
                lines = ["(no log)"]
            state = "running" if self.alive(node_id) else "stopped"
            parts.append(
                f"--- node{node_id} ({state}) {self.log_path(node_id)}:\n"
                + "\n".join(lines[-LOG_TAIL_LINES:])
            )
        return "\n".join(parts)

    def status(self, node_id: int) -> dict[str, Any] | None:
        if not self.alive(node_id) or self.nodes[node_id].paused:
            return None
        doc = get_json(f"{self.url(node_id)}/v1/cluster", timeout_s=1.0)
        return doc if isinstance(doc, dict) else None

    def wait_until(
        self,
        what: str,
        check: Callable[[], T | None],
        timeout_s: float = 20.0,
        interval_s: float = 0.05,
    ) -> T:
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value is not None and value is not False:
                return value
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout_s}s waiting for {what}\n" + self.logs()
                )
            time.sleep(interval_s)

    def leader(self) -> int | None:
        """The leader every running node that knows one agrees on, and that says it leads."""
        seen = set()
        leader_says = None
        for node_id in self.nodes:
            st = self.status(node_id)
            if st is None:
                continue
            if st.get("leader_id"):
                seen.add(st["leader_id"])
            if st.get("role") == "leader":
                leader_says = st["node_id"]
        if leader_says is not None and seen == {leader_says}:
            return int(leader_says)
        return None

    def wait_for_leader(self, timeout_s: float = 20.0, *, not_: int | None = None) -> int:
        def check() -> int | None:
            leader = self.leader()
            return leader if leader is not None and leader != not_ else None

        return self.wait_until(
            "a leader" + (f" other than {not_}" if not_ else ""), check, timeout_s
        )

    def followers(self, leader: int) -> list[int]:
        return [i for i in self.nodes if i != leader and self.alive(i)]

    # -- HTTP ---------------------------------------------------------------------------

    def request(
        self,
        node_id: int,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> HttpResult:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(node_id) + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw, status, hdrs = err.read(), err.code, dict(err.headers)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return HttpResult(status, parsed, hdrs)

    def get(self, node_id: int, path: str, **kw: Any) -> HttpResult:
        return self.request(node_id, "GET", path, **kw)

    def post(self, node_id: int, path: str, body: Any = None, **kw: Any) -> HttpResult:
        return self.request(node_id, "POST", path, body, **kw)

    def running(self) -> Iterator[int]:
        return (i for i in self.nodes if self.alive(i))

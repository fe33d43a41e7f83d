"""A fault-injecting TCP proxy: one per directed link, so a partition is a real TCP fault.

Theory of operation. The harness never lets two nodes talk directly: node i's config names
peer j at the address of the proxy for the directed link i->j, which forwards to j's real
port. raftsched dials one connection per peer direction (docs/transport.md): on the
connection i dialed to j travel i's Raft messages (the "forward" bytes, client -> server) and
only j's handshake answers and clock pongs come back (the "backward" bytes). j's replies to
i's messages travel on the connection j dialed to i, through the proxy j->i. So:

- `LinkMode.DROP` on i->j is a message-level one-way partition: j never hears i, i still
  hears j. Dropping both i->j and j->i is a full cut between the two nodes. DROP closes the
  existing connections (RST) and blackholes new ones: accepted, read and discarded, never
  forwarded, never answered, so the dialer sees a handshake timeout as behind a dead route.
  Leaving DROP closes the held connections so dialers reconnect at once.
- `DROP_FORWARD` / `DROP_BACKWARD` drop one direction's bytes of every connection and keep
  the connections open: TCP-level one-way faults (what a firewall rule on one direction
  does). On a peer link, DROP_BACKWARD starves the dialer of pongs (it reconnects after its
  silence timeout) while its Raft frames still arrive.
- `delay_ms` holds every chunk that long in both directions, order preserved.

A `ProxyHub` runs every proxy on one event loop in a background thread, so a busy or paused
harness loop never stalls the cluster's traffic; its methods are called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

T = TypeVar("T")
CHUNK_BYTES: Final = 64 * 1024
QUEUE_CHUNKS_MAX: Final = 256  # chunks waiting per direction (delay mode); then backpressure
CONNECT_TIMEOUT_S: Final = 2.0
CONTROL_TIMEOUT_S: Final = 10.0  # a hub call from another thread waits this long at most
HOST: Final = "127.0.0.1"


class LinkMode(enum.Enum):
    PASS = "pass"
    DROP = "drop"  # blackhole: close existing connections, hold new ones silently
    DROP_FORWARD = "drop-forward"  # discard dialer -> target bytes, keep connections
    DROP_BACKWARD = "drop-backward"  # discard target -> dialer bytes, keep connections


@dataclass(slots=True)
class LinkStats:
    accepted: int = 0
    forwarded_bytes: int = 0
    dropped_bytes: int = 0
    held: int = 0  # connections blackholed by DROP
    aborted: int = 0  # connections closed by a mode change


@dataclass(slots=True, eq=False)  # hashed by identity: kept in a set
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class Proxy:
    """Forwards connections accepted on `listen_port` to `target`; one directed link.

    Runs on the event loop that calls `start`; every method must be called on that loop.
    """

    def __init__(self, *, name: str, target: tuple[str, int], listen_port: int = 0) -> None:
        self.name = name
        self.target = target
        self.mode = LinkMode.PASS
        self.delay_ms = 0
        self.stats = LinkStats()
        self._listen_port = listen_port
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        sock = self._server.sockets[0]
        port: int = sock.getsockname()[1]
        return port

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, HOST, self._listen_port)
        return self.port

    def set_mode(self, mode: LinkMode, *, delay_ms: int | None = None) -> None:
        assert delay_ms is None or delay_ms >= 0
        if delay_ms is not None:
            self.delay_ms = delay_ms
        if mode == self.mode:
            return
        old, self.mode = self.mode, mode
        if mode is LinkMode.DROP:
            self._abort_pairs()  # a cut link loses what was open across it
        if old is LinkMode.DROP:
            self._release_held()  # the dialers were waiting on a dead route: let them redial

    def _abort_pairs(self) -> None:
        for pair in list(self._pairs):
            pair.abort()
            self.stats.aborted += 1
        self._pairs.clear()

    def _release_held(self) -> None:
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._abort_pairs()
        self._release_held()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if self._cut():
            await self._hold(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.transport.abort()  # the target is down: the dialer sees a reset
            return
        if self._cut():  # cut while we were connecting
            up_writer.transport.abort()
            await self._hold(reader, writer)
            return
        pair = _Pair(client=writer, upstream=up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            self._spawn(self._pump(reader, up_writer, forward=True)),
            self._spawn(self._pump(up_reader, writer, forward=False)),
        ]
        try:
            await asyncio.gather(*pair.tasks, return_exceptions=True)
        finally:
            self._pairs.discard(pair)
            pair.abort()

    def _cut(self) -> bool:
        return self.mode is LinkMode.DROP

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Blackhole: swallow what the dialer sends and answer nothing until released."""
        self.stats.held += 1
        self._held.add(writer)
        try:
            while await reader.read(CHUNK_BYTES):
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._held.discard(writer)
            writer.transport.abort()

    def _drops(self, *, forward: bool) -> bool:
        if self.mode is LinkMode.DROP:
            return True
        if forward:
            return self.mode is LinkMode.DROP_FORWARD
        return self.mode is LinkMode.DROP_BACKWARD

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, forward: bool
    ) -> None:
        """Copy one direction; chunks wait in a bounded queue until due (delay mode)."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS_MAX)
        sender = self._spawn(self._send(queue, writer))
        try:
            while True:
                try:
                    data = await reader.read(CHUNK_BYTES)
                except OSError:
                    break
                if not data:
                    break
                if self._drops(forward=forward):
                    self.stats.dropped_bytes += len(data)
                    continue
                await queue.put((time.monotonic() + self.delay_ms / 1000, data))
            await queue.put(None)
            await sender
        finally:
            sender.cancel()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                writer.write(data)
                await writer.drain()
                self.stats.forwarded_bytes += len(data)
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            writer.transport.abort()


class ProxyHub:
    """Every link's proxy on one event loop in a daemon thread; thread-safe control."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="jepsen-proxies", daemon=True)
        self._proxies: dict[str, Proxy] = {}
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> None:
        assert not self._started
        self._thread.start()
        self._started = True

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._started and self._thread.is_alive(), "proxy hub not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def add(self, name: str, target: tuple[str, int]) -> int:
        """Start a proxy `name` forwarding to `target`; returns its (OS-chosen) port."""
        assert name not in self._proxies, f"proxy {name} exists"
        proxy = Proxy(name=name, target=target)
        port = self._call(proxy.start())
        self._proxies[name] = proxy
        return port

    def set_mode(
        self, names: Iterable[str], mode: LinkMode, *, delay_ms: int | None = None
    ) -> None:
        chosen = [self._proxies[n] for n in names]

        async def apply() -> None:
            for proxy in chosen:
                proxy.set_mode(mode, delay_ms=delay_ms)

        self._call(apply())

    def port(self, name: str) -> int:
        return self._proxies[name].port

    def modes(self) -> dict[str, LinkMode]:
        return {name: proxy.mode for name, proxy in self._proxies.items()}

    def stats(self, name: str) -> LinkStats:
        return self._proxies[name].stats

    def stop(self) -> None:
        """Close every proxy and end the thread (idempotent)."""
        if not self._started or not self._thread.is_alive():
            return

        async def close_all() -> None:
            for proxy in self._proxies.values():
                await proxy.close()

        try:
            self._call(close_all())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()

"""jepsen/proxy.py on real loopback sockets: every mode moves (or stops) the right bytes.

Each test runs an echo server that also records what it received, puts a Proxy in front of
it and talks through the proxy. Waits are bounded reads (asyncio.wait_for), never sleeps
that a result depends on: "nothing arrives" is checked with a short bounded read.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from jepsen.proxy import LinkMode, Proxy, ProxyHub

QUIET_S = 0.3  # how long "nothing arrives" is watched for
DEADLINE_S = 5.0


class EchoServer:
    """Echoes every chunk back and keeps what it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return "127.0.0.1", port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while data := await reader.read(4096):
                self.received += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self.handlers.discard(task)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[Proxy]:
    assert echo.server is not None
    target = echo.server.sockets[0].getsockname()[:2]
    p = Proxy(name="1->2", target=(target[0], target[1]))
    await p.start()
    yield p
    await p.close()


async def connect(p: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", p.port)


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), DEADLINE_S)


async def nothing_arrives(reader: asyncio.StreamReader) -> bool:
    """No byte (and no close) within QUIET_S."""
    try:
        await asyncio.wait_for(reader.read(1), QUIET_S)
    except TimeoutError:
        return True
    except OSError:
        return False
    return False  # data, or EOF: something happened


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """The connection ends (EOF or reset) within the deadline."""
    try:
        data = await asyncio.wait_for(reader.read(1), DEADLINE_S)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


async def wait_for(cond: object, what: str) -> None:
    assert callable(cond)
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_pass_forwards_both_ways(proxy: Proxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    assert await read_exactly(reader, 5) == b"hello"
    assert echo.received == b"hello"
    writer.close()


@pytest.mark.asyncio
async def test_drop_closes_open_connections_and_blackholes_new_ones(
    proxy: Proxy, echo: EchoServer
) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"a")
    assert await read_exactly(reader, 1) == b"a"
    proxy.set_mode(LinkMode.DROP)
    assert await closed_by_peer(reader), "an open connection must be cut"
    # A new connection is accepted but nothing crosses, in either direction.
    reader2, writer2 = await connect(proxy)
    writer2.write(b"lost")
    assert await nothing_arrives(reader2)
    assert echo.received == b"a"
    assert echo.connections == 1, "a blackholed dial must not reach the target"
    # Heal: the held connection is released (the dialer redials) and new ones pass.
    proxy.set_mode(LinkMode.PASS)
    assert await closed_by_peer(reader2)
    reader3, writer3 = await connect(proxy)
    writer3.write(b"back")
    assert await read_exactly(reader3, 4) == b"back"
    for w in (writer, writer2, writer3):
        w.close()


@pytest.mark.asyncio
async def test_drop_forward_loses_dialer_bytes_only(proxy: Proxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"x")
    assert await read_exactly(reader, 1) == b"x"
    proxy.set_mode(LinkMode.DROP_FORWARD)
    writer.write(b"yy")
    assert await nothing_arrives(reader)
    assert echo.received == b"x", "forward bytes must be dropped"
    proxy.set_mode(LinkMode.PASS)
    writer.write(b"z")  # the same connection still works after the fault
    assert await read_exactly(reader, 1) == b"z"
    assert proxy.stats.dropped_bytes == 2
    writer.close()


@pytest.mark.asyncio
async def test_drop_backward_loses_answers_only(proxy: Proxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy)
    proxy.set_mode(LinkMode.DROP_BACKWARD)
    writer.write(b"ping")
    await wait_for(lambda: echo.received == b"ping", "the target to receive the bytes")
    assert await nothing_arrives(reader), "the echo must be dropped on the way back"
    proxy.set_mode(LinkMode.PASS)
    writer.write(b"!")
    assert await read_exactly(reader, 1) == b"!"
    writer.close()


@pytest.mark.asyncio
async def test_delay_holds_chunks_in_order(proxy: Proxy) -> None:
    proxy.set_mode(LinkMode.PASS, delay_ms=150)
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(b"one")
    writer.write(b"two")
    assert await read_exactly(reader, 6) == b"onetwo"
    # Each direction holds the bytes 150 ms: at least 300 ms for the round trip.
    assert time.monotonic() - started >= 0.29
    writer.close()


@pytest.mark.asyncio
async def test_target_down_resets_the_dialer() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = Proxy(name="to-nowhere", target=("127.0.0.1", port))
    await p.start()
    try:
        reader, writer = await connect(p)
        writer.write(b"anyone?")
        assert await closed_by_peer(reader)
        writer.close()
    finally:
        await p.close()


def test_hub_controls_proxies_from_another_thread() -> None:
    hub = ProxyHub()
    hub.start()
    try:
        loop = asyncio.new_event_loop()
        try:
            server = EchoServer()
            target = loop.run_until_complete(server.start())
            port = hub.add("1->2", target)

            async def round_trip() -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"hub")
                data = await read_exactly(reader, 3)
                writer.close()
                return data

            assert loop.run_until_complete(round_trip()) == b"hub"
            hub.set_mode(["1->2"], LinkMode.DROP)
            assert hub.modes() == {"1->2": LinkMode.DROP}

            async def blocked() -> bool:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"x")
                quiet = await nothing_arrives(reader)
                writer.close()
                return quiet

            assert loop.run_until_complete(blocked())
            hub.set_mode(["1->2"], LinkMode.PASS)
            assert loop.run_until_complete(round_trip()) == b"hub"
            loop.run_until_complete(server.close())
        finally:
            loop.close()
    finally:
        hub.stop()
    hub.stop()  # idempotent

"""PeerTransport over real sockets on free ports: delivery both ways, reconnect, bounded queues,
clock samples, membership changes, shutdown. Every wait has a deadline; every transport is
closed, and no task outlives a test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from raftsched.raft.messages import AppendEntries, Heartbeat
from raftsched.raft.types import Entry, EntryKind
from raftsched.server.peer_control import (
    CONTROL_MAX_BYTES,
    Auth,
    ControlRecord,
    Hello,
    Welcome,
    decode_control,
    encode_control,
)
from raftsched.server.peer_handshake import ListenerHandshake
from raftsched.server.transport import PeerTransport, TransportLimits
from raftsched.wire.framing import FrameDecoder

from .transport_support import (
    CLUSTER_ID,
    FAST_LIMITS,
    SECRET,
    RawPeer,
    assert_nodelay,
    close_all,
    connect_all,
    heartbeat,
    raft_frame,
    start_node,
    wait_until,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    leaked = {t for t in asyncio.all_tasks() - before if not t.done()} - {asyncio.current_task()}
    assert not leaked, f"tasks left running: {leaked}"


def unused_port() -> int:
    """A port nothing listens on (bound then released; nothing else here binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_two_transports_exchange_messages_both_ways_in_order() -> None:
    a, b = await start_node(1), await start_node(2)
    try:
        connect_all([a, b])
        for i in range(100):
            a.transport.send([heartbeat(1, 2, i)])
            b.transport.send([heartbeat(2, 1, 1000 + i)])
        await wait_until(lambda: len(b.inbox) == 100 and len(a.inbox) == 100, "100 each way")
        assert b.contexts_from(1) == list(range(100))
        assert a.contexts_from(2) == [1000 + i for i in range(100)]
        stats = a.transport.peer_stats()[2]
        assert stats.connected and stats.dropped == 0 and stats.queue_bytes == 0
        assert b.transport.inbound_peers() == {1}
        assert_nodelay(a)
    finally:
        await close_all([a, b])


async def test_three_transports_all_pairs() -> None:
    nodes = [await start_node(i) for i in (1, 2, 3)]
    try:
        connect_all(nodes)
        for n in nodes:
            n.transport.send(
                heartbeat(n.node_id, dst, 10 * n.node_id + dst)
                for dst in (1, 2, 3)
                if dst != n.node_id
            )
        await wait_until(lambda: all(len(n.inbox) == 2 for n in nodes), "2 messages per node")
        for n in nodes:
            got = sorted((m.src, m.context) for m in n.inbox if isinstance(m, Heartbeat))
            assert got == sorted(
                (src, 10 * src + n.node_id) for src in (1, 2, 3) if src != n.node_id
            )
    finally:
        await close_all(nodes)


async def test_large_appends_are_delivered_intact() -> None:
    """Frames far larger than one socket read are reassembled (memoryview decode path)."""
    a, b = await start_node(1), await start_node(2)
    try:
        connect_all([a, b])
        entries = tuple(
            Entry(term=1, index=i, kind=EntryKind.NORMAL, data=bytes([i % 256]) * 50_000)
            for i in range(1, 41)
        )
        msg = AppendEntries(
            term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=entries, commit=0
        )
        a.transport.send([msg, heartbeat(1, 2, 5)])
        await wait_until(lambda: len(b.inbox) == 2, "the append and the heartbeat")
        assert b.inbox[0] == msg
        assert b.inbox[1] == heartbeat(1, 2, 5)
    finally:
        await close_all([a, b])


async def test_reconnects_after_the_remote_restarts() -> None:
    a, b = await start_node(1), await start_node(2)
    try:
        connect_all([a, b])
        a.transport.send([heartbeat(1, 2, 1)])
        await wait_until(lambda: b.contexts_from(1) == [1], "first delivery")
        port = b.transport.listen_port
        await b.transport.close()
        await wait_until(lambda: not a.transport.peer_stats()[2].connected, "a sees b down")
        b = await start_node(2, port=port, peers={1: a.address})
        await wait_until(lambda: a.transport.peer_stats()[2].connected, "a reconnects to b")
        a.transport.send([heartbeat(1, 2, 2)])
        b.transport.send([heartbeat(2, 1, 3)])
        await wait_until(lambda: b.contexts_from(1) == [2], "delivery after restart")
        await wait_until(lambda: a.contexts_from(2) == [3], "reverse delivery after restart")
        assert a.transport.peer_stats()[2].reconnects == 1
    finally:
        await close_all([a, b])


async def test_queue_is_bounded_and_send_never_blocks_while_the_peer_is_down() -> None:
    limits = TransportLimits(
        max_queue_bytes_per_peer=4096,
        connect_timeout_s=1.0,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        clock_ping_interval_s=0.05,
        peer_silence_timeout_s=3.0,
    )
    a = await start_node(1, peers={2: ("127.0.0.1", unused_port())}, limits=limits)
    try:
        started = time.monotonic()
        a.transport.send(heartbeat(1, 2, i) for i in range(10_000))
        assert time.monotonic() - started < 2.0, "send() returned promptly"
        stats = a.transport.peer_stats()[2]
        assert stats.queue_bytes <= 4096
        assert stats.dropped >= 10_000 - 4096 // 10  # a heartbeat frame is >= 10 bytes
        assert not stats.connected
        # A failed connection attempt discards what was queued (stale by the next connect).
        await wait_until(lambda: a.transport.peer_stats()[2].queue_bytes == 0, "discard")
        assert a.transport.peer_stats()[2].dropped == 10_000
    finally:
        await a.transport.close()


async def test_a_peer_that_stops_reading_fills_the_queue_not_the_loop() -> None:
    """The receiver is paused (SIGSTOP-like): writes back up into the kernel and the asyncio
    buffer, then our queue drops; the event loop keeps running throughout."""
    limits = TransportLimits(
        max_queue_bytes_per_peer=256 << 10,
        write_buffer_high_bytes=64 << 10,
        handshake_timeout_s=2.0,
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
        clock_ping_interval_s=0.05,
        peer_silence_timeout_s=30.0,
    )
    a, b = await start_node(1, limits=limits), await start_node(2, limits=limits)
    try:
        connect_all([a, b])
        await wait_until(lambda: a.transport.peer_stats()[2].connected, "connected")
        await wait_until(lambda: 1 in b.transport.inbound_peers(), "b accepted a")
        conn = b.transport._inbound.by_peer[1]
        assert conn._transport is not None
        conn._transport.pause_reading()
        big = Entry(term=1, index=1, kind=EntryKind.NORMAL, data=b"x" * 60_000)
        msg = AppendEntries(
            term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=(big,), commit=0
        )
        for _ in range(400):  # 24 MB offered: far beyond socket buffers + queue
            a.transport.send([msg])
            await asyncio.sleep(0)  # let flushes run
        await wait_until(lambda: a.transport.peer_stats()[2].dropped > 0, "drops")
        assert a.transport.peer_stats()[2].queue_bytes <= 256 << 10
        conn._transport.resume_reading()
        # Every message is accounted for: delivered, or dropped and counted. None lost.
        await wait_until(
            lambda: len(b.inbox) + a.transport.peer_stats()[2].dropped == 400,
            "delivered + dropped == sent",
        )
        assert a.transport.peer_stats()[2].queue_bytes == 0
        assert a.transport.peer_stats()[2].connected, "the slow peer was never cut off"
        assert all(m == msg for m in b.inbox)
    finally:
        await close_all([a, b])


async def test_clock_samples_have_plausible_offsets() -> None:
    a, b = await start_node(1), await start_node(2)
    try:
        connect_all([a, b])
        await wait_until(lambda: 2 in a.transport.clock_samples(), "a sample of b")
        await wait_until(lambda: 1 in b.transport.clock_samples(), "a sample of a")
        sample = a.transport.clock_samples()[2]
        # Same machine, same clock: the offset is within the measurement error.
        assert abs(sample.offset_ms) < 50 + sample.rtt_ms
        assert 0 <= sample.rtt_ms < 1000
        assert 0 <= sample.age_s < 5
        rtt = a.transport.peer_stats()[2].last_rtt_ms
        assert rtt is not None and rtt >= 0
    finally:
        await close_all([a, b])


async def test_set_peers_adds_removes_and_moves_peers() -> None:
    a, b, c = await start_node(1), await start_node(2), await start_node(3)
    try:
        a.transport.set_peers({1: a.address, 2: b.address})
        assert set(a.transport.peer_stats()) == {2}, "own id ignored"
        a.transport.send([heartbeat(1, 2, 1), heartbeat(1, 3, 1)])
        assert a.transport.unroutable == 1
        a.transport.set_peers({2: b.address, 3: c.address})
        a.transport.send([heartbeat(1, 3, 2)])
        await wait_until(lambda: c.contexts_from(1) == [2], "new peer reached")
        a.transport.set_peers({3: c.address})
        assert set(a.transport.peer_stats()) == {3}
        a.transport.send([heartbeat(1, 2, 3)])
        assert a.transport.unroutable == 2
        await wait_until(lambda: b.contexts_from(1) == [1], "earlier delivery only")
    finally:
        await close_all([a, b, c])


async def test_start_on_a_port_in_use_raises_a_clear_oserror() -> None:
    a = await start_node(1)
    try:
        t = PeerTransport(
            node_id=2,
            cluster_secret=SECRET,
            listen_host="127.0.0.1",
            listen_port=a.transport.listen_port,
            peers={},
            on_message=lambda m: None,
            limits=FAST_LIMITS,
        )
        with pytest.raises(OSError, match=r"cannot listen for peers on 127\.0\.0\.1:\d+"):
            await t.start()
        await t.close()
    finally:
        await a.transport.close()


async def test_different_secrets_never_deliver(caplog: pytest.LogCaptureFixture) -> None:
    a = await start_node(1)
    b = await start_node(2, secret=b"another secret")
    try:
        connect_all([a, b])
        a.transport.send([heartbeat(1, 2, 1)])

        def mac_failures() -> list[str]:
            return [r.getMessage() for r in caplog.records if "bad handshake MAC" in r.message]

        # Each dialer finds the listener's MAC wrong first and hangs up: one warning per
        # link however often it retries (the log is deduplicated until a success).
        await wait_until(lambda: len(mac_failures()) == 2, "both dialers refuse")
        await wait_until(lambda: a.transport.peer_stats()[2].dropped == 1, "message dropped")
        assert len(mac_failures()) == 2
        assert not a.transport.peer_stats()[2].connected
        assert b.inbox == [] and a.inbox == []
    finally:
        await close_all([a, b])


async def test_close_is_idempotent_and_stops_everything() -> None:
    nodes = [await start_node(i) for i in (1, 2)]
    connect_all(nodes)
    await wait_until(lambda: nodes[0].transport.peer_stats()[2].connected, "connected")
    await close_all(nodes)
    await close_all(nodes)
    assert nodes[0].transport.peer_stats() == {}


SILENCE_LIMITS = TransportLimits(
    handshake_timeout_s=2.0,
    connect_timeout_s=1.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    clock_ping_interval_s=0.05,
    peer_silence_timeout_s=0.3,
)


async def test_a_silent_listener_is_redialed(caplog: pytest.LogCaptureFixture) -> None:
    """A peer that authenticates and then never answers (paused, half-open) is detected by
    the missing pongs; the link redials instead of queueing into a dead socket."""
    caplog.set_level(logging.INFO, logger="raftsched.transport")
    accepted: list[asyncio.StreamWriter] = []

    async def mute_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        decoder = FrameDecoder(CONTROL_MAX_BYTES + 1)
        hs = ListenerHandshake(secret=SECRET, cluster_id=CLUSTER_ID, node_id=2)
        records: list[ControlRecord] = []
        with contextlib.suppress(ConnectionError):
            while len(records) < 2:
                records += [decode_control(f[1:]) for f in decoder.feed(await reader.read(512))]
                if len(records) == 1 and isinstance(records[0], Hello):
                    writer.write(encode_control(hs.on_hello(records[0])))
            assert isinstance(records[1], Auth)
            hs.on_auth(records[1])
            writer.write(encode_control(Welcome()))
            while await reader.read(65536):
                pass  # swallow pings, never answer

    server = await asyncio.start_server(mute_listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    a = await start_node(1, peers={2: ("127.0.0.1", port)}, limits=SILENCE_LIMITS)
    try:
        await wait_until(lambda: len(accepted) >= 2, "a second connection after the silence")
        assert any("no frame from the peer for" in r.getMessage() for r in caplog.records)
        # The listener sees the second connection before the dialer's handshake on it
        # completes and counts the reconnect: wait for the count, do not race it.
        await wait_until(lambda: a.transport.peer_stats()[2].reconnects >= 1, "the reconnect")
        assert 2 not in a.transport.clock_samples(), "no pong, no sample"
    finally:
        await a.transport.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_dialer_is_closed_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftsched.transport")
    b = await start_node(2, limits=SILENCE_LIMITS)
    peer = await RawPeer.connect(b.transport.listen_port)
    try:
        await peer.authenticate(3, 2)
        assert b.transport.inbound_peers() == {3}
        await peer.assert_closed()  # no pings from it: closed after the silence timeout
        assert any("silent for" in r.getMessage() for r in caplog.records)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert b.transport.rejected_connections == 0
    finally:
        await peer.close()
        await b.transport.close()


async def test_a_reconnecting_peer_replaces_its_old_inbound_connection() -> None:
    b = await start_node(2)
    old, new = await RawPeer.connect(b.transport.listen_port), None
    try:
        await old.authenticate(3, 2)
        new = await RawPeer.connect(b.transport.listen_port)
        await new.authenticate(3, 2)
        await old.assert_closed()
        await new.send(raft_frame(heartbeat(3, 2, 1)))
        await wait_until(lambda: b.contexts_from(3) == [1], "delivery on the new connection")
        assert b.transport.inbound_peers() == {3}
    finally:
        await old.close()
        if new is not None:
            await new.close()
        await b.transport.close()

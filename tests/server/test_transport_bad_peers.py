"""Bad peers on the listening port (issue 9 "Bad peers"): each misbehaviour closes that
connection with exactly one warning on "raftsched.transport", delivers nothing, and the
transport goes on delivering valid traffic from a real peer afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgpack
import pytest
import pytest_asyncio

from raftsched.server.peer_control import (
    FRAME_KIND_CONTROL,
    FRAME_KIND_RAFT,
    FRAME_PREFIX,
    Ping,
    Pong,
    encode_control,
)
from raftsched.server.transport import TransportLimits
from raftsched.wire.raft_codec import DecodeLimits

from .transport_support import (
    Node,
    RawPeer,
    close_all,
    connect_all,
    heartbeat,
    raft_frame,
    start_node,
    wait_until,
)

pytestmark = pytest.mark.asyncio

LIMITS = TransportLimits(
    decode_limits=DecodeLimits(max_message_bytes=1 << 20),
    handshake_timeout_s=0.5,
    connect_timeout_s=1.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.1,
    clock_ping_interval_s=0.05,
    peer_silence_timeout_s=3.0,
)


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    a = await start_node(1, limits=LIMITS)
    b = await start_node(2, limits=LIMITS)
    connect_all([a, b])
    await wait_until(lambda: 1 in b.transport.inbound_peers(), "a's link to b")
    yield a, b
    await close_all([a, b])


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "raftsched.transport" and r.levelno >= logging.WARNING
    ]


async def assert_rejected_once(
    pair: tuple[Node, Node],
    caplog: pytest.LogCaptureFixture,
    attack: Callable[[RawPeer], Awaitable[None]],
    reason: str,
    *,
    delivered_from_attacker: tuple[int, ...] = (),
) -> None:
    """Runs `attack` (as node 3) on a fresh raw connection to b, then checks the invariants:
    one warning naming `reason`, nothing delivered but `delivered_from_attacker` (contexts of
    valid messages sent before the bad one), valid traffic from a still flows."""
    a, b = pair
    caplog.set_level(logging.INFO, logger="raftsched.transport")
    rejected_before = b.transport.rejected_connections
    peer = await RawPeer.connect(b.transport.listen_port)
    try:
        await attack(peer)
        await peer.assert_closed()
    finally:
        await peer.close()
    await wait_until(lambda: b.transport.rejected_connections == rejected_before + 1, "reject")
    lines = warnings_of(caplog)
    assert len(lines) == 1, lines
    assert reason in lines[0], lines[0]
    assert "closed peer connection from 127.0.0.1:" in lines[0]
    # Nothing from the attacker was delivered; a real peer still gets through.
    assert all(m.src in (1, 3) for m in b.inbox)
    assert tuple(b.contexts_from(3)) == delivered_from_attacker
    a.transport.send([heartbeat(1, 2, 99)])
    await wait_until(lambda: 99 in b.contexts_from(1), "valid traffic after the attack")
    assert a.transport.peer_stats()[2].connected
    assert len(warnings_of(caplog)) == 1, "one line per bad connection, nothing later"


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds the limit"),
        (b"\x00\x00\x00\x00junk", "empty frame"),
        (b"\x00\x00\x00\x05hello", "frame kind 104 before the handshake"),
        (b"\x00\x00\x00\x03\x02\xc1\xc1", "malformed msgpack"),
        (b"\x00\x00\x00\x02\x02\x90", "expected an array [version, tag"),
    ],
)
async def test_garbage_bytes(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture, garbage: bytes, reason: str
) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.send(garbage)

    await assert_rejected_once(pair, caplog, attack, reason)


async def test_wrong_secret(pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.authenticate(3, 2, secret=b"not the cluster secret")

    await assert_rejected_once(pair, caplog, attack, "wrong cluster secret or a replayed")


async def test_replayed_handshake(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    """A recording of a successful handshake, replayed byte for byte, fails: the listener's
    fresh nonce makes the recorded Auth wrong."""
    _, b = pair
    caplog.set_level(logging.INFO, logger="raftsched.transport")
    recorder = await RawPeer.connect(b.transport.listen_port)
    await recorder.authenticate(3, 2)
    recorded = bytes(recorder.sent)
    await recorder.close()
    await wait_until(lambda: 3 not in b.transport.inbound_peers(), "recorded conn gone")
    caplog.clear()

    async def attack(peer: RawPeer) -> None:
        await peer.send(recorded)  # Hello and Auth at once, as an attacker replays them

    # The Auth arrives before (or with) the Hello's answer: either way, refused.
    await assert_rejected_once(pair, caplog, attack, "replayed handshake")


async def test_replayed_handshake_waiting_for_the_challenge(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    _, b = pair
    caplog.set_level(logging.INFO, logger="raftsched.transport")
    recorder = await RawPeer.connect(b.transport.listen_port)
    await recorder.authenticate(3, 2)
    hello_end = 4 + int.from_bytes(recorder.sent[:4], "big")
    hello, auth = bytes(recorder.sent[:hello_end]), bytes(recorder.sent[hello_end:])
    await recorder.close()
    await wait_until(lambda: 3 not in b.transport.inbound_peers(), "recorded conn gone")
    caplog.clear()

    async def attack(peer: RawPeer) -> None:
        await peer.send(hello)
        await peer.read_control()  # a Challenge with a fresh nonce
        await peer.send(auth)

    await assert_rejected_once(pair, caplog, attack, "replayed handshake")


async def test_oversize_frame_before_authentication(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.send((1 << 31).to_bytes(4, "big"))

    await assert_rejected_once(pair, caplog, attack, "exceeds the limit of 513 bytes")


async def test_oversize_frame_after_authentication(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    limit = LIMITS.max_frame_bytes

    async def attack(peer: RawPeer) -> None:
        await peer.authenticate(3, 2)
        await peer.send((limit + 1).to_bytes(4, "big") + b"\x01")

    await assert_rejected_once(pair, caplog, attack, f"exceeds the limit of {limit} bytes")


async def test_forged_src(pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.authenticate(3, 2)
        # A valid message from 3 first (delivered), then one claiming to be node 1.
        await peer.send(raft_frame(heartbeat(3, 2, 7)) + raft_frame(heartbeat(1, 2, 666)))

    await assert_rejected_once(
        pair,
        caplog,
        attack,
        "claims src 1 on the connection authenticated as node 3",
        delivered_from_attacker=(7,),
    )
    assert 666 not in pair[1].contexts_from(1)


async def test_wrong_dst(pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.authenticate(3, 2)
        await peer.send(raft_frame(heartbeat(3, 9, 1)))

    await assert_rejected_once(pair, caplog, attack, "addressed to node 9, this is 2")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (FRAME_PREFIX.pack(2, 9) + b"\x90", "unknown frame kind 9"),
        (
            FRAME_PREFIX.pack(4, FRAME_KIND_RAFT) + msgpack.packb([1, 77]),
            "unknown record tag",
        ),
        (
            FRAME_PREFIX.pack(4, FRAME_KIND_CONTROL) + msgpack.packb([1, 77]),
            "unknown tag 77",
        ),
        (encode_control(Pong(seq=1, wall_ms=1)), "unexpected Pong after handshake"),
    ],
)
async def test_unknown_type(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture, frame: bytes, reason: str
) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.authenticate(3, 2)
        await peer.send(frame)

    await assert_rejected_once(pair, caplog, attack, reason)


async def test_raft_frame_before_authentication(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    async def attack(peer: RawPeer) -> None:
        await peer.send(raft_frame(heartbeat(1, 2, 5)))

    await assert_rejected_once(pair, caplog, attack, "frame kind 1 before the handshake")


async def test_silent_connection_times_out(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    async def attack(peer: RawPeer) -> None:
        pass  # connect and say nothing

    await assert_rejected_once(pair, caplog, attack, "no handshake within 0.5s")


async def test_authenticated_raw_peer_gets_pongs(pair: tuple[Node, Node]) -> None:
    """The control path a real dialer uses, by hand: Ping -> Pong with the listener's clock."""
    _, b = pair
    peer = await RawPeer.connect(b.transport.listen_port)
    try:
        await peer.authenticate(3, 2)
        await peer.send(encode_control(Ping(seq=41)))
        pong = await peer.read_control()
        assert isinstance(pong, Pong) and pong.seq == 41 and pong.wall_ms > 0
        await peer.send(raft_frame(heartbeat(3, 2, 8)))
        await wait_until(lambda: b.contexts_from(3) == [8], "delivery")
    finally:
        await peer.close()


async def test_a_flood_of_unauthenticated_connections_cannot_lock_out_a_real_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the bound, the oldest unauthenticated connection is evicted, so a real peer that
    connects during a flood still authenticates and delivers."""
    limits = dataclasses.replace(LIMITS, max_pending_handshakes=2, handshake_timeout_s=5.0)
    a = await start_node(1, limits=limits)
    b = await start_node(2, limits=limits)
    flood = [await RawPeer.connect(b.transport.listen_port) for _ in range(3)]
    try:
        await flood[0].assert_closed()
        lines = warnings_of(caplog)
        assert len(lines) == 1 and "evicted: more than 2 unauthenticated" in lines[0]
        connect_all([a, b])
        a.transport.send([heartbeat(1, 2, 1)])
        await wait_until(lambda: b.contexts_from(1) == [1], "the real peer gets through")
        await flood[1].assert_closed()  # evicted by a's connection
    finally:
        await asyncio.gather(*(p.close() for p in flood))
        await close_all([a, b])

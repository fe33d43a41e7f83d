"""The listening end driven byte by byte without sockets: whatever arrives, in whatever chunks,
the connection either delivers well-formed messages from the authenticated peer or closes
with one warning. It never raises and never delivers a message with a foreign src or dst."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.raft.messages import Message
from raftsched.server.peer_conn import InboundConnection, InboundRegistry, OutboundConnection
from raftsched.server.peer_control import (
    CONTROL_MAX_BYTES,
    FRAME_KIND_CONTROL,
    FRAME_PREFIX,
    Challenge,
    Ping,
    Welcome,
    decode_control,
    encode_control,
)
from raftsched.server.peer_handshake import DialerHandshake
from raftsched.server.peer_settings import PeerSettings, TransportLimits
from raftsched.wire.framing import FrameDecoder
from raftsched.wire.raft_codec import DecodeLimits

from ..wire.strategies import messages
from .transport_support import raft_frame

SECRET = b"fuzz secret"
LIMITS = TransportLimits(decode_limits=DecodeLimits(max_message_bytes=1 << 16))


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class FakeTransport:
    """Just enough of asyncio.Transport for the protocol: it records writes and aborts."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.aborted, "no write after abort"
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high is None or high > 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@dataclasses.dataclass
class Harness:
    conn: InboundConnection
    transport: FakeTransport
    delivered: list[Message]
    handler: ListHandler
    registry: InboundRegistry

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.handler.records if r.levelno >= logging.WARNING]


def harness() -> Harness:
    log = logging.getLogger("raftsched.transport.fuzz")
    log.propagate = False
    log.handlers.clear()
    handler = ListHandler()
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    settings_ = PeerSettings(node_id=2, cluster_id=1, secret=SECRET, limits=LIMITS, log=log)
    registry = InboundRegistry(LIMITS.max_pending_handshakes, log)
    delivered: list[Message] = []
    conn = InboundConnection(settings_, registry, delivered.append)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return Harness(conn, transport, delivered, handler, registry)


def authenticate(h: Harness, dialer_id: int = 3) -> None:
    dialer = DialerHandshake(secret=SECRET, cluster_id=1, node_id=dialer_id, peer_id=2)
    h.conn.data_received(encode_control(dialer.hello()))
    decoder = FrameDecoder(CONTROL_MAX_BYTES + 1)
    (challenge_frame,) = decoder.feed(bytes(h.transport.written))
    challenge = decode_control(challenge_frame[1:])
    assert isinstance(challenge, Challenge)
    h.transport.written.clear()
    h.conn.data_received(encode_control(dialer.on_challenge(challenge)))
    (welcome_frame,) = decoder.feed(bytes(h.transport.written))
    assert welcome_frame[0] == FRAME_KIND_CONTROL
    assert isinstance(decode_control(welcome_frame[1:]), Welcome)
    assert h.conn.peer_id == dialer_id


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        yield data[start:cut]
        start = cut
    yield data[start:]


def run(coro: Any) -> None:
    asyncio.run(coro)


def check_invariants(h: Harness) -> None:
    assert len(h.warnings()) <= 1, h.warnings()
    assert (len(h.warnings()) == 1) == h.transport.aborted
    for msg in h.delivered:
        assert msg.src == 3 and msg.dst == 2
    h.conn.connection_lost(None)
    h.registry.abort_all()


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_garbage_before_authentication(data: bytes, cuts: list[int]) -> None:
    async def main() -> None:
        h = harness()
        for chunk in chunks(data, cuts):
            h.conn.data_received(chunk)
        assert h.delivered == []
        check_invariants(h)

    run(main())


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A valid message from 3 to 2, one with wrong ids, or a corrupted or random frame."""
    kind = draw(st.sampled_from(["valid", "valid", "foreign", "flipped", "random"]))
    msg = draw(messages())
    if kind in ("valid", "flipped"):
        msg = dataclasses.replace(msg, src=3, dst=2)
    frame = raft_frame(msg)
    if kind == "flipped":
        i = draw(st.integers(0, len(frame) - 1))
        frame = frame[:i] + bytes([frame[i] ^ draw(st.integers(1, 255))]) + frame[i + 1 :]
    if kind == "random":
        body = draw(st.binary(min_size=1, max_size=40))
        frame = FRAME_PREFIX.pack(len(body) + 1, draw(st.integers(0, 255))) + body
    return frame


@FUZZ
@given(st.lists(frames(), min_size=1, max_size=8), st.lists(st.integers(0, 4000), max_size=6))
def test_frames_after_authentication(stream: list[bytes], cuts: list[int]) -> None:
    async def main() -> None:
        h = harness()
        authenticate(h)
        delivered_at_close: int | None = None
        for chunk in chunks(b"".join(stream), cuts):
            h.conn.data_received(chunk)
            if h.transport.aborted and delivered_at_close is None:
                delivered_at_close = len(h.delivered)
        # Nothing is delivered once the connection is closed.
        assert delivered_at_close in (None, len(h.delivered))
        check_invariants(h)

    run(main())


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_the_dialing_end_survives_a_garbage_listener(data: bytes, cuts: list[int]) -> None:
    """Whatever a (hostile or misconfigured) listener answers, the dialer's connection never
    raises, never opens without a valid Challenge and Welcome, and never reports a pong."""

    async def main() -> None:
        log = logging.getLogger("raftsched.transport.fuzz.dialer")
        log.propagate = False
        settings_ = PeerSettings(node_id=1, cluster_id=1, secret=SECRET, limits=LIMITS, log=log)
        pongs: list[tuple[int, int]] = []
        conn = OutboundConnection(settings_, 2, lambda s, w: pongs.append((s, w)), lambda: None)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        assert transport.written, "the Hello goes out at once"
        for chunk in chunks(data, cuts):
            conn.data_received(chunk)
        assert not conn.is_open and pongs == []
        assert transport.aborted == (conn.failure is not None)
        conn.connection_lost(None)
        assert conn.lost.done() and conn.ready.done()

    run(main())


def test_no_write_reaches_a_closing_transport() -> None:
    """After this end failed the connection (or the peer hung up, before connection_lost
    runs), pings and queued frames are dropped, not written: uvloop raises on a closed
    handle. (FakeTransport.write asserts it is never called after abort.)"""

    async def main() -> None:
        log = logging.getLogger("raftsched.transport.fuzz.closing")
        log.propagate = False
        settings_ = PeerSettings(node_id=1, cluster_id=1, secret=SECRET, limits=LIMITS, log=log)
        conn = OutboundConnection(settings_, 2, lambda s, w: None, lambda: None)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        writable_before = conn.writable
        conn.fail("test")
        assert writable_before and not conn.writable
        conn.write(b"\x00\x00\x00\x02\x02\x90")  # must not reach the transport

        h = harness()
        authenticate(h)
        h.transport.abort()  # as if the peer reset: closing, connection_lost not yet run
        h.conn.data_received(encode_control(Ping(seq=1)))  # the Pong is dropped, no raise
        assert h.warnings() == []
        h.conn.connection_lost(None)

    run(main())

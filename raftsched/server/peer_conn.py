"""The two ends of a peer connection as asyncio Protocols (no tasks, no awaits on the hot path).

Theory of operation. Each pair of nodes uses two TCP connections, one per direction: node A
dials B to send its Raft messages (A's OutboundConnection, B's InboundConnection), and B dials
A for the other direction. Both ends run the handshake of peer_handshake.py first; only after
it do Raft frames flow, and only dialer -> listener. Back on the same socket the listener
answers the dialer's clock pings with pongs (clock_probe.py).

Protocols rather than streams: `data_received` feeds the FrameDecoder and decodes every
complete frame in one callback, with no task switch per read; writes go straight into the
asyncio transport, and the transport's pause_writing/resume_writing tells the link (peer_link.py)
when to stop flushing its bounded queue.

Rejecting a bad peer. Anything the peer should not have sent (undecodable frame, oversize
length, unknown kind or record, a handshake that fails, a Raft message whose src is not the
authenticated node or whose dst is not this node, a frame out of order) closes the
connection with exactly ONE warning line on the transport logger, and nothing from that frame
on is delivered. During the handshake the decoder accepts only control-sized frames, so an
unauthenticated peer cannot make this node buffer a large frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Final, cast

from ..raft.messages import Message
from ..wire.errors import WireDecodeError
from ..wire.framing import FrameDecoder
from ..wire.raft_codec import decode_message
from .peer_control import (
    CONTROL_MAX_BYTES,
    FRAME_KIND_CONTROL,
    FRAME_KIND_RAFT,
    Auth,
    Challenge,
    Hello,
    Ping,
    Pong,
    Welcome,
    decode_control,
    encode_control,
)
from .peer_handshake import DialerHandshake, HandshakeError, ListenerHandshake
from .peer_settings import PeerSettings
from .wall_clock import wall_ms

_HANDSHAKE_FRAME_MAX: Final = CONTROL_MAX_BYTES + 1  # kind byte + record

# Connection states (both ends).
_HELLO: Final = "hello"  # listener: waiting for Hello / dialer: waiting for Challenge
_AUTH: Final = "auth"  # listener: waiting for Auth / dialer: waiting for Welcome
_OPEN: Final = "open"
_CLOSED: Final = "closed"


class ProtocolViolation(Exception):
    """The peer sent something valid on its own but wrong here (order, direction, address)."""


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Small Raft messages (votes, heartbeats) must not wait for Nagle's algorithm."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # OSError: the socket is already closing; connection_lost follows.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _describe(transport: asyncio.BaseTransport | None) -> str:
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return "unknown address"


def wall_ms_int() -> int:
    return int(wall_ms())


class WarningBudget:
    """At most `burst` warnings per `window_s`, so a flood of bad connections cannot flood
    the log; the rest are counted and reported in one line when the window ends."""

    BURST: Final = 20
    WINDOW_S: Final = 10.0

    def __init__(
        self, log: logging.Logger, *, burst: int = BURST, window_s: float = WINDOW_S
    ) -> None:
        self._log = log
        self._burst = burst
        self._window_s = window_s
        self._window_start_s = -window_s
        self._emitted = 0
        self.suppressed = 0
        self._report: asyncio.TimerHandle | None = None

    def warning(self, now_s: float, msg: str, *args: object) -> None:
        if now_s - self._window_start_s >= self._window_s:
            self._window_start_s = now_s
            self._emitted = 0
        if self._emitted < self._burst:
            self._emitted += 1
            self._log.warning(msg, *args)
            return
        self.suppressed += 1
        if self._report is None:
            loop = asyncio.get_running_loop()
            delay_s = max(0.0, self._window_start_s + self._window_s - now_s)
            self._report = loop.call_later(delay_s, self.report)

    def report(self) -> None:
        self._report = None
        if self.suppressed:
            self._log.warning(
                "suppressed %d more warnings about bad peer connections", self.suppressed
            )
            self.suppressed = 0

    def cancel(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._report = None


class InboundRegistry:
    """The listener's accepted connections: bounded while unauthenticated, one per peer after."""

    def __init__(self, max_pending: int, log: logging.Logger) -> None:
        self._max_pending = max_pending
        # Insertion-ordered: the oldest unauthenticated connection is evicted first.
        self._pending: dict[InboundConnection, None] = {}
        self.by_peer: dict[int, InboundConnection] = {}
        self.rejected = 0
        self.warnings = WarningBudget(log)

    def admit(self, conn: InboundConnection) -> None:
        """Admits `conn`; at the bound, the OLDEST unauthenticated connection is closed. A real
        peer finishes its handshake in one round trip, so under a flood of connections that
        never authenticate it is the flood's connections that are oldest: evicting them
        (rather than refusing newcomers) keeps the cluster able to reconnect."""
        if len(self._pending) >= self._max_pending:
            oldest = next(iter(self._pending))
            oldest.reject(f"evicted: more than {self._max_pending} unauthenticated connections")
            self._pending.pop(oldest, None)
        self._pending[conn] = None

    def authenticated(self, peer_id: int, conn: InboundConnection) -> None:
        self._pending.pop(conn, None)
        old = self.by_peer.get(peer_id)
        self.by_peer[peer_id] = conn
        if old is not None and old is not conn:
            # The peer reconnected (its old connection may be half-open): newest wins.
            old.close_quietly()

    def discard(self, conn: InboundConnection) -> None:
        self._pending.pop(conn, None)
        if conn.peer_id is not None and self.by_peer.get(conn.peer_id) is conn:
            del self.by_peer[conn.peer_id]

    def abort_all(self) -> None:
        self.warnings.cancel()
        for conn in [*self._pending, *self.by_peer.values()]:
            conn.close_quietly()


class InboundConnection(asyncio.Protocol):
    """The listening end: authenticates the dialer, then delivers its Raft messages."""

    def __init__(
        self,
        settings: PeerSettings,
        registry: InboundRegistry,
        on_message: Callable[[Message], None],
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._on_message = on_message
        self._state = _HELLO
        self._decoder = FrameDecoder(_HANDSHAKE_FRAME_MAX)
        self._handshake = ListenerHandshake(
            secret=settings.secret, cluster_id=settings.cluster_id, node_id=settings.node_id
        )
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._last_rx_s = self._loop.time()
        self.peer_id: int | None = None

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        _set_nodelay(transport)
        self._registry.admit(self)
        self._timer = self._loop.call_later(
            self._settings.limits.handshake_timeout_s, self._on_handshake_timeout
        )

    def data_received(self, data: bytes) -> None:
        if self._state is _CLOSED:
            return
        self._last_rx_s = self._loop.time()
        try:
            frames = self._decoder.feed(data)
            if self._state is _OPEN:
                self._deliver(frames)
            else:
                self._handshake_frames(frames)
        except (WireDecodeError, HandshakeError, ProtocolViolation) as exc:
            self.reject(str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self._state is _OPEN
        self._state = _CLOSED
        self._cancel_timer()
        self._registry.discard(self)
        if was_open:
            self._settings.log.info(
                "inbound connection from peer %d closed%s",
                self.peer_id,
                f": {exc}" if exc else "",
            )

    # -- frames -------------------------------------------------------------------------------

    def _deliver(self, frames: list[bytes]) -> None:
        """The hot path: every frame of one read, decoded strictly and delivered in order."""
        peer_id = self.peer_id
        node_id = self._settings.node_id
        limits = self._settings.limits.decode_limits
        on_message = self._on_message
        for frame in frames:
            if self._state is not _OPEN:
                return  # on_message may have closed the transport
            kind = frame[0]
            if kind == FRAME_KIND_RAFT:
                # A view, not a copy: the decoder reads any buffer (its annotation says bytes).
                msg = decode_message(cast(bytes, memoryview(frame)[1:]), limits)
                if msg.src != peer_id:
                    raise ProtocolViolation(
                        f"{type(msg).__name__} claims src {msg.src} on the connection "
                        f"authenticated as node {peer_id}"
                    )
                if msg.dst != node_id:
                    raise ProtocolViolation(
                        f"{type(msg).__name__} addressed to node {msg.dst}, this is {node_id}"
                    )
                on_message(msg)
            elif kind == FRAME_KIND_CONTROL:
                record = decode_control(memoryview(frame)[1:])
                if type(record) is not Ping:
                    raise ProtocolViolation(f"unexpected {type(record).__name__} after handshake")
                self._write(encode_control(Pong(seq=record.seq, wall_ms=wall_ms_int())))
            else:
                raise ProtocolViolation(f"unknown frame kind {kind}")

    def _handshake_frames(self, frames: list[bytes]) -> None:
        for i, frame in enumerate(frames):
            if frame[0] != FRAME_KIND_CONTROL:
                raise ProtocolViolation(f"frame kind {frame[0]} before the handshake completed")
            record = decode_control(memoryview(frame)[1:])
            if self._state is _HELLO and type(record) is Hello:
                self._write(encode_control(self._handshake.on_hello(record)))
                self._state = _AUTH
            elif self._state is _AUTH and type(record) is Auth:
                peer_id = self._handshake.on_auth(record)
                # The dialer waits for Welcome before sending anything else.
                if i != len(frames) - 1 or self._decoder.buffered_bytes:
                    raise ProtocolViolation("frames sent before the handshake completed")
                self._open(peer_id)
            else:
                raise ProtocolViolation(
                    f"unexpected {type(record).__name__} in handshake state {self._state}"
                )

    def _open(self, peer_id: int) -> None:
        self._cancel_timer()
        self.peer_id = peer_id
        self._state = _OPEN
        self._decoder = FrameDecoder(self._settings.limits.max_frame_bytes)
        self._write(encode_control(Welcome()))
        self._registry.authenticated(peer_id, self)
        self._settings.log.info(
            "inbound connection from peer %d (%s) authenticated",
            peer_id,
            _describe(self._transport),
        )
        self._schedule_silence_check()

    # -- timers and closing -------------------------------------------------------------------

    def _on_handshake_timeout(self) -> None:
        self._timer = None
        self.reject(f"no handshake within {self._settings.limits.handshake_timeout_s}s")

    def _schedule_silence_check(self) -> None:
        self._timer = self._loop.call_later(
            self._settings.limits.peer_silence_timeout_s / 2, self._check_silence
        )

    def _check_silence(self) -> None:
        self._timer = None
        if self._state is not _OPEN:
            return
        silent_s = self._loop.time() - self._last_rx_s
        if silent_s > self._settings.limits.peer_silence_timeout_s:
            # Not the peer's fault (it may be paused): info, not a warning.
            self._settings.log.info(
                "closing inbound connection from peer %d: silent for %.1fs", self.peer_id, silent_s
            )
            self.close_quietly()
        else:
            self._schedule_silence_check()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        # Closing already (aborted, or the peer hung up and connection_lost is queued): uvloop
        # raises on a write to a closed handle; the frame is moot anyway.
        if not transport.is_closing():
            transport.write(data)

    def reject(self, reason: str) -> None:
        """Closes the connection for the peer's fault, with the one log line it gets."""
        if self._state is _CLOSED:
            return
        who = f"peer {self.peer_id}" if self.peer_id is not None else "unauthenticated peer"
        self._registry.warnings.warning(
            self._loop.time(),
            "closed peer connection from %s (%s): %s",
            _describe(self._transport),
            who,
            reason,
        )
        self._registry.rejected += 1
        self.close_quietly()

    def close_quietly(self) -> None:
        self._state = _CLOSED
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()


class OutboundConnection(asyncio.Protocol):
    """The dialing end: authenticates, then carries this node's Raft messages to one peer.

    The link (peer_link.py) awaits `ready` (handshake done) and `lost`; it writes with
    `write()` and stops flushing while `paused`."""

    def __init__(
        self,
        settings: PeerSettings,
        peer_id: int,
        on_pong: Callable[[int, int], None],
        on_writable: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._peer_id = peer_id
        self._on_pong = on_pong
        self._on_writable = on_writable
        self._state = _HELLO
        self._decoder = FrameDecoder(_HANDSHAKE_FRAME_MAX)
        self._handshake = DialerHandshake(
            secret=settings.secret,
            cluster_id=settings.cluster_id,
            node_id=settings.node_id,
            peer_id=peer_id,
        )
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.paused = False
        self.failure: str | None = None  # why this end closed the connection, for the log
        self.peer_fault = False  # the failure was the peer's (bad MAC, garbage): a warning
        self.last_rx_s = loop.time()

    @property
    def is_open(self) -> bool:
        return self._state is _OPEN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = tcp = cast(asyncio.Transport, transport)
        _set_nodelay(tcp)
        tcp.set_write_buffer_limits(high=self._settings.limits.write_buffer_high_bytes)
        tcp.write(encode_control(self._handshake.hello()))

    def data_received(self, data: bytes) -> None:
        if self._state is _CLOSED:
            return
        self.last_rx_s = self._loop.time()
        try:
            for frame in self._decoder.feed(data):
                if frame[0] != FRAME_KIND_CONTROL:
                    raise ProtocolViolation(f"frame kind {frame[0]} from the listening end")
                self._on_record(decode_control(memoryview(frame)[1:]))
                if self._state is _CLOSED:
                    return
        except (WireDecodeError, HandshakeError, ProtocolViolation) as exc:
            self.fail(str(exc), peer_fault=True)

    def _on_record(self, record: object) -> None:
        if self._state is _OPEN and type(record) is Pong:
            self._on_pong(record.seq, record.wall_ms)
        elif self._state is _HELLO and type(record) is Challenge:
            self.write(encode_control(self._handshake.on_challenge(record)))
            self._state = _AUTH
        elif self._state is _AUTH and type(record) is Welcome:
            self._state = _OPEN
            if not self.ready.done():
                self.ready.set_result(None)
        else:
            raise ProtocolViolation(
                f"unexpected {type(record).__name__} in state {self._state} from the listener"
            )

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        if self.failure is None:
            self.failure = f"connection lost: {exc}" if exc else "connection closed by the peer"
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.failure))
            self.ready.exception()  # retrieved here: nobody may be awaiting it any more
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def writable(self) -> bool:
        """False once this end or the peer closed, even before connection_lost runs."""
        transport = self._transport
        return self._state is not _CLOSED and transport is not None and not transport.is_closing()

    def write(self, data: bytes) -> None:
        """Writes whole frames; dropped if the connection is closing (see `writable`)."""
        if self.writable:
            assert self._transport is not None
            self._transport.write(data)

    def fail(self, reason: str, *, peer_fault: bool = False) -> None:
        """Closes the connection; the link logs `failure` once."""
        if self._state is _CLOSED:
            return
        self.failure = reason
        self.peer_fault = peer_fault
        self.close()

    def close(self) -> None:
        self._state = _CLOSED
        if self._transport is not None:
            self._transport.abort()

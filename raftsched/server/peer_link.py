"""One peer's outgoing link: a bounded queue of frames and the task that keeps a connection.

Theory of operation. `enqueue` is the hot path and never awaits: it appends the frame's two
pieces (prefix and body) to a list and, if none is pending, schedules ONE flush with
`call_soon`. Every message sent during the current loop iteration joins that flush, which
writes the whole queue with one `b"".join` and one `transport.write`: one syscall per batch,
not per message. While the connection is down, handshaking or paused by the transport's
write-buffer high-water mark, frames wait in the queue; past `max_queue_bytes_per_peer` new
frames are dropped and counted (Raft resends what still matters: §5.3 retries appends,
heartbeats and votes recur on their own).

When a connection attempt fails or an open connection is lost, the queue is discarded
(counted as dropped): those messages are stale by the time a new connection opens, and the
leader's next probe decides what to send. The task reconnects with capped exponential
backoff and jitter, reset after each successful handshake. While open it sends a clock ping
every `clock_ping_interval_s`; no frame from the peer for `peer_silence_timeout_s` means the
connection is dead (or the peer is paused) and it reconnects.

Logging: a failure is logged once per distinct reason until the next success, so a peer that
is down for an hour costs one line, not one per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time

from .clock_probe import ClockProbe
from .peer_conn import OutboundConnection
from .peer_control import Ping, encode_control
from .peer_settings import PeerSettings
from .wall_clock import wall_ms


class PeerLink:
    __slots__ = (
        "_flush_scheduled",
        "_handshakes",
        "_last_failure",
        "_loop",
        "_max_queue_bytes",
        "_pieces",
        "_rng",
        "_settings",
        "_ssl_client",
        "_stopping",
        "_task",
        "address",
        "conn",
        "dropped",
        "peer_id",
        "probe",
        "queue_bytes",
        "reconnects",
    )

    def __init__(
        self,
        *,
        settings: PeerSettings,
        peer_id: int,
        address: tuple[str, int],
        ssl_client: ssl.SSLContext | None,
        rng: random.Random,
    ) -> None:
        assert peer_id != settings.node_id, "no link to self"
        self._settings = settings
        self.peer_id = peer_id
        self.address = address
        self._ssl_client = ssl_client
        self._rng = rng
        self._max_queue_bytes = settings.limits.max_queue_bytes_per_peer
        self._pieces: list[bytes] = []
        self.queue_bytes = 0
        self.dropped = 0
        self.reconnects = 0
        self._handshakes = 0
        self._flush_scheduled = False
        self._last_failure: str | None = None
        self.conn: OutboundConnection | None = None  # set only while open
        self.probe = ClockProbe()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the hot path ---------------------------------------------------------------------------

    def enqueue(self, prefix: bytes, body: bytes) -> None:
        size = len(prefix) + len(body)
        if self.queue_bytes + size > self._max_queue_bytes:
            self.dropped += 1
            return
        self._pieces.append(prefix)
        self._pieces.append(body)
        self.queue_bytes += size
        if not self._flush_scheduled and self.conn is not None and not self.conn.paused:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        assert self._loop is not None
        self._flush_scheduled = True
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        conn = self.conn
        if conn is None or conn.paused or not self._pieces or not conn.writable:
            return  # a closing connection: the queue is discarded (and counted) when it ends
        data = b"".join(self._pieces)
        self._pieces.clear()
        self.queue_bytes = 0
        conn.write(data)

    def _on_writable(self) -> None:
        if not self._flush_scheduled and self._pieces and self.conn is not None:
            self._schedule_flush()

    def _discard_queue(self) -> None:
        self.dropped += len(self._pieces) // 2
        self._pieces.clear()
        self.queue_bytes = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        assert self._task is None, "started once"
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"raftsched-peer-link-{self.peer_id}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's wait_for can swallow a cancellation that races the future it
            # waits on (fixed in 3.12): the link then went on redialing and `await task`
            # never returned, keeping a stopped node's process alive. Cancel until it ends
            # (its loop also checks _stopping); never await the task itself.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            if not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self._discard_queue()

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def _backoff_s(self, failures: int) -> float:
        limits = self._settings.limits
        capped = min(limits.backoff_max_s, limits.backoff_initial_s * (1 << min(failures, 30)))
        return capped * (0.5 + 0.5 * self._rng.random())

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            opened = await self._connect_and_serve()
            failures = 0 if opened else failures + 1
            await asyncio.sleep(self._backoff_s(failures))

    async def _connect_and_serve(self) -> bool:
        """One connection's life. True if it authenticated (then the backoff resets)."""
        loop = asyncio.get_running_loop()
        limits = self._settings.limits
        host, port = self.address
        conn = OutboundConnection(self._settings, self.peer_id, self._on_pong, self._on_writable)
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl_client,
                    ssl_handshake_timeout=limits.handshake_timeout_s if self._ssl_client else None,
                ),
                limits.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            conn.close()
            # A refused TLS handshake (certificate, CA) is a misconfiguration worth a warning;
            # a refused or timed-out connect is just a peer that is down.
            level = logging.WARNING if isinstance(exc, ssl.SSLError) else logging.INFO
            reason = str(exc) or type(exc).__name__
            self._failed(f"cannot connect to {host}:{port}: {reason}", level)
            return False
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), limits.handshake_timeout_s)
        except TimeoutError:
            conn.fail(f"no handshake from {host}:{port} within {limits.handshake_timeout_s}s")
        except ConnectionError:
            pass  # conn.failure says why
        if not conn.is_open:
            conn.close()
            failure = conn.failure or "handshake failed"
            level = logging.WARNING if conn.peer_fault else logging.INFO
            self._failed(f"handshake with {host}:{port} failed: {failure}", level)
            return False
        self._opened(conn)
        try:
            await self._serve(conn)
        finally:
            self.conn = None
            conn.close()
            self._discard_queue()
        self._failed(f"connection to {host}:{port} ended: {conn.failure}")
        return True

    def _opened(self, conn: OutboundConnection) -> None:
        self.conn = conn
        self._handshakes += 1
        if self._handshakes > 1:
            self.reconnects += 1
        self._last_failure = None
        self._settings.log.info(
            "connected to peer %d at %s:%d", self.peer_id, self.address[0], self.address[1]
        )
        if self._pieces:
            self._schedule_flush()

    async def _serve(self, conn: OutboundConnection) -> None:
        """Pings while open; returns when the connection is lost or found silent."""
        loop = asyncio.get_running_loop()
        limits = self._settings.limits
        while True:
            seq = self.probe.next_ping(time.monotonic())
            conn.write(encode_control(Ping(seq=seq)))
            await asyncio.wait({conn.lost}, timeout=limits.clock_ping_interval_s)
            if conn.lost.done():
                return
            silent_s = loop.time() - conn.last_rx_s
            if silent_s > limits.peer_silence_timeout_s:
                conn.fail(f"no frame from the peer for {silent_s:.1f}s")
                return

    def _on_pong(self, seq: int, peer_wall_ms: int) -> None:
        # time.monotonic, not loop.time: uvloop's loop clock is cached per iteration, in ms.
        self.probe.on_pong(seq, peer_wall_ms, time.monotonic(), wall_ms())

    def _failed(self, reason: str, level: int = logging.INFO) -> None:
        self._discard_queue()
        if reason != self._last_failure:
            self._last_failure = reason
            self._settings.log.log(level, "peer %d: %s", self.peer_id, reason)

"""PeerTransport: Raft messages between nodes over authenticated TCP (SPEC §3 "Transport").

Theory of operation. Each node listens on its peer port and dials every other node: one
connection per peer direction. Outgoing messages go on the connection this node dialed
(peer_link.py: bounded queue, one write per loop iteration, reconnect with backoff); incoming
messages arrive on connections the peers dialed (peer_conn.py: strict decode, src must be the
authenticated peer, dst must be this node). Both ends authenticate each other with an HMAC
challenge-response over the cluster secret (peer_handshake.py) before any Raft frame flows.
Frames are the wire codec's records behind a length prefix and a kind byte
(peer_control.py); the dialer also pings about once a second, and the pongs give the clock
samples the leader's quorum-median timestamp needs (clock_probe.py).

The runtime calls `send()` from the event loop with the messages of a Ready; it never blocks
and never awaits. `on_message` is called on the event loop, once per valid message, in the
order each peer sent them. A misbehaving peer costs one log line and its connection; the node
carries on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..raft.messages import Message
from ..wire.raft_codec import encode_message
from .clock_probe import ClockSample
from .peer_conn import InboundConnection, InboundRegistry
from .peer_control import FRAME_KIND_RAFT, FRAME_PREFIX
from .peer_link import PeerLink
from .peer_settings import PeerSettings, TransportLimits

__all__ = ["ClockSample", "PeerStats", "PeerTransport", "TransportLimits"]

LOGGER_NAME: Final = "raftsched.transport"


@dataclass(frozen=True, slots=True)
class PeerStats:
    """One peer's outgoing link, for /metrics."""

    connected: bool  # the connection this node dialed is authenticated and open
    queue_bytes: int  # frames waiting to be written
    dropped: int  # messages dropped: queue full, or discarded with a failed connection
    reconnects: int  # authenticated connections after the first
    last_rtt_ms: float | None  # the latest clock ping's round trip


class PeerTransport:
    def __init__(
        self,
        *,
        node_id: int,
        cluster_secret: bytes,
        listen_host: str,
        listen_port: int,
        peers: Mapping[int, tuple[str, int]],
        on_message: Callable[[Message], None],
        limits: TransportLimits | None = None,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        log: logging.Logger | None = None,
        cluster_id: int = 0,
    ) -> None:
        if node_id <= 0:
            raise ValueError(f"node_id must be positive, got {node_id}")
        if not isinstance(cluster_secret, bytes) or not cluster_secret:
            raise ValueError("cluster_secret must be non-empty bytes")
        if (ssl_server is None) != (ssl_client is None):
            raise ValueError("peer TLS needs both ssl_server and ssl_client, or neither")
        self._settings = PeerSettings(
            node_id=node_id,
            cluster_id=cluster_id,
            secret=cluster_secret,
            limits=limits if limits is not None else TransportLimits(),
            log=log if log is not None else logging.getLogger(LOGGER_NAME),
        )
        self.node_id = node_id
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._on_message = on_message
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._rng = random.Random()  # backoff jitter only; not a protocol decision
        self._links: dict[int, PeerLink] = {}
        self._inbound = InboundRegistry(
            self._settings.limits.max_pending_handshakes, self._settings.log
        )
        self._server: asyncio.Server | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False
        # Largest Raft message body the peers accept (they run the same limits).
        self._max_body_bytes = self._settings.limits.decode_limits.max_message_bytes
        self.unroutable = 0  # messages to a node that is not a peer (dropped)
        self.oversize = 0  # messages larger than a peer accepts (dropped, logged)
        self.set_peers(peers)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Binds the peer port and starts dialing every peer."""
        assert not self._started and not self._closed, "start once"
        loop = asyncio.get_running_loop()
        limits = self._settings.limits
        try:
            self._server = await loop.create_server(
                self._new_inbound,
                self._listen_host,
                self._listen_port,
                ssl=self._ssl_server,
                ssl_handshake_timeout=limits.handshake_timeout_s if self._ssl_server else None,
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen for peers on {self._listen_host}:{self._listen_port}: "
                f"{exc.strerror or exc}",
            ) from exc
        self._started = True
        for link in self._links.values():
            link.start()

    @property
    def listen_port(self) -> int:
        """The bound peer port (the configured one, or the one the OS chose for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._listen_port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stops listening, closes every connection and cancels every task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._inbound.abort_all()
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.stop() for link in links), *self._stopping)
        if self._server is not None:
            await self._server.wait_closed()
        # One loop iteration so the aborted transports run connection_lost and free sockets.
        await asyncio.sleep(0)

    def _new_inbound(self) -> InboundConnection:
        return InboundConnection(self._settings, self._inbound, self._on_message)

    # -- membership -------------------------------------------------------------------------------

    def set_peers(self, peers: Mapping[int, tuple[str, int]]) -> None:
        """The nodes to send to (this node's own id, if present, is ignored). A new peer gets
        a link, a removed one loses it (its queue is discarded), a moved one is redialed."""
        if self._closed:
            return
        wanted = {pid: (str(host), int(port)) for pid, (host, port) in peers.items()}
        wanted.pop(self.node_id, None)
        for peer_id in list(self._links):
            link = self._links[peer_id]
            if wanted.get(peer_id) != link.address:
                del self._links[peer_id]
                self._stop_later(link)
        for peer_id, address in wanted.items():
            if peer_id in self._links:
                continue
            if peer_id <= 0:
                raise ValueError(f"peer ids must be positive, got {peer_id}")
            link = PeerLink(
                settings=self._settings,
                peer_id=peer_id,
                address=address,
                ssl_client=self._ssl_client,
                rng=self._rng,
            )
            self._links[peer_id] = link
            if self._started:
                link.start()

    def _stop_later(self, link: PeerLink) -> None:
        if not self._started:
            return
        task = asyncio.get_running_loop().create_task(link.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    # -- the hot path -----------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        """Queues each message for its dst. Never blocks, never awaits; drops are counted."""
        links = self._links
        prefix = FRAME_PREFIX.pack
        max_body = self._max_body_bytes
        for msg in messages:
            link = links.get(msg.dst)
            if link is None:
                self.unroutable += 1
                continue
            body = encode_message(msg)
            if len(body) > max_body:
                self.oversize += 1
                link.dropped += 1
                self._settings.log.error(
                    "dropped a %s of %d bytes to peer %d: larger than the %d bytes peers accept",
                    type(msg).__name__,
                    len(body),
                    msg.dst,
                    max_body,
                )
                continue
            link.enqueue(prefix(len(body) + 1, FRAME_KIND_RAFT), body)

    # -- observation ------------------------------------------------------------------------------

    @property
    def rejected_connections(self) -> int:
        """Incoming connections closed for the peer's fault (one warning line each)."""
        return self._inbound.rejected

    def peer_stats(self) -> dict[int, PeerStats]:
        return {
            peer_id: PeerStats(
                connected=link.connected,
                queue_bytes=link.queue_bytes,
                dropped=link.dropped,
                reconnects=link.reconnects,
                last_rtt_ms=link.probe.last_rtt_ms,
            )
            for peer_id, link in self._links.items()
        }

    def clock_samples(self) -> dict[int, ClockSample]:
        """The latest clock sample of each peer that has answered a ping (see clock_probe)."""
        now_s = time.monotonic()  # the probes' clock; callable from any thread
        out: dict[int, ClockSample] = {}
        for peer_id, link in self._links.items():
            sample = link.probe.sample(now_s)
            if sample is not None:
                out[peer_id] = sample
        return out

    def inbound_peers(self) -> frozenset[int]:
        """Peers whose connection to this node is authenticated and open."""
        return frozenset(self._inbound.by_peer)

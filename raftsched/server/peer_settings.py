"""The bounds and identity every peer connection of one node shares (TransportLimits is a
named config value per bound, STYLE: "put a limit on everything")."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..wire.framing import MAX_FRAME_PAYLOAD_BYTES
from ..wire.raft_codec import DEFAULT_LIMITS, DecodeLimits


@dataclass(frozen=True, slots=True)
class TransportLimits:
    # Bytes of encoded frames waiting for one peer's connection; past it a message is dropped
    # and counted (Raft resends what still matters), so send() never blocks or grows memory.
    max_queue_bytes_per_peer: int = 8 << 20
    # What a received Raft message may be; a frame announcing more closes the connection.
    decode_limits: DecodeLimits = DEFAULT_LIMITS
    handshake_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    # Reconnect delay: initial * 2**failures, capped, times a jitter factor in [0.5, 1).
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    clock_ping_interval_s: float = 1.0
    # No frame from the peer for this long: the connection is dead (or the peer paused);
    # close it and reconnect rather than queue into a half-open socket.
    peer_silence_timeout_s: float = 5.0
    # Accepted connections that have not authenticated yet; a new one evicts the oldest.
    max_pending_handshakes: int = 64
    # The asyncio transport's write buffer above which we stop flushing our queue into it.
    write_buffer_high_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in (
            "max_queue_bytes_per_peer",
            "handshake_timeout_s",
            "connect_timeout_s",
            "backoff_initial_s",
            "backoff_max_s",
            "clock_ping_interval_s",
            "peer_silence_timeout_s",
            "max_pending_handshakes",
            "write_buffer_high_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransportLimits.{name} must be positive")
        if self.max_frame_bytes > MAX_FRAME_PAYLOAD_BYTES:
            raise ValueError(
                "TransportLimits.decode_limits.max_message_bytes must leave room for the kind "
                f"byte within a 4-byte frame length (at most {MAX_FRAME_PAYLOAD_BYTES - 1})"
            )
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("TransportLimits.backoff_max_s must be >= backoff_initial_s")
        if self.peer_silence_timeout_s <= self.clock_ping_interval_s:
            raise ValueError(
                "TransportLimits.peer_silence_timeout_s must exceed clock_ping_interval_s "
                "(pings are what keeps a healthy connection from looking silent)"
            )

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame payload accepted once authenticated: a message plus its kind."""
        return self.decode_limits.max_message_bytes + 1


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """Who this node is and the bounds, handed to every connection."""

    node_id: int
    cluster_id: int
    secret: bytes = field(repr=False)
    limits: TransportLimits
    log: logging.Logger

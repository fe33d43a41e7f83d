"""Helpers for the PeerTransport tests: nodes on free ports, bounded waits, a raw peer that
speaks the handshake by hand (to misbehave on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from raftsched.raft.messages import Heartbeat, Message
from raftsched.server.peer_control import (
    CONTROL_MAX_BYTES,
    FRAME_KIND_CONTROL,
    FRAME_KIND_RAFT,
    FRAME_PREFIX,
    Auth,
    Challenge,
    ControlRecord,
    Hello,
    Welcome,
    decode_control,
    encode_control,
)
from raftsched.server.peer_handshake import handshake_mac, new_nonce
from raftsched.server.transport import PeerTransport, TransportLimits
from raftsched.wire.framing import FrameDecoder
from raftsched.wire.raft_codec import encode_message

SECRET = b"test cluster secret, 32 bytes!!!"
CLUSTER_ID = 7
WAIT_S = 10.0  # generous: the machine is shared; every wait returns as soon as it can

FAST_LIMITS = TransportLimits(
    handshake_timeout_s=2.0,
    connect_timeout_s=1.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.1,
    clock_ping_interval_s=0.05,
    peer_silence_timeout_s=3.0,
)


async def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Polls `cond` until true; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


def heartbeat(src: int, dst: int, context: int) -> Heartbeat:
    return Heartbeat(term=1, src=src, dst=dst, commit=0, context=context)


@dataclass
class Node:
    """A PeerTransport and the messages it delivered."""

    node_id: int
    transport: PeerTransport
    inbox: list[Message] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.transport.listen_port)

    def contexts_from(self, src: int) -> list[int]:
        return [m.context for m in self.inbox if isinstance(m, Heartbeat) and m.src == src]


async def start_node(
    node_id: int,
    *,
    port: int = 0,
    peers: Mapping[int, tuple[str, int]] | None = None,
    secret: bytes = SECRET,
    limits: TransportLimits = FAST_LIMITS,
    ssl_server: ssl.SSLContext | None = None,
    ssl_client: ssl.SSLContext | None = None,
) -> Node:
    inbox: list[Message] = []
    transport = PeerTransport(
        node_id=node_id,
        cluster_secret=secret,
        listen_host="127.0.0.1",
        listen_port=port,
        peers=peers or {},
        on_message=inbox.append,
        limits=limits,
        cluster_id=CLUSTER_ID,
        ssl_server=ssl_server,
        ssl_client=ssl_client,
    )
    await transport.start()
    return Node(node_id=node_id, transport=transport, inbox=inbox)


def connect_all(nodes: list[Node]) -> None:
    addresses = {n.node_id: n.address for n in nodes}
    for n in nodes:
        n.transport.set_peers(addresses)


async def close_all(nodes: list[Node]) -> None:
    for n in nodes:
        await n.transport.close()


def assert_nodelay(node: Node) -> None:
    """The link's socket has Nagle off (small votes and heartbeats must not wait)."""
    for link in node.transport._links.values():
        assert link.conn is not None and link.conn._transport is not None
        sock = link.conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def raft_frame(msg: Message) -> bytes:
    body = encode_message(msg)
    return FRAME_PREFIX.pack(len(body) + 1, FRAME_KIND_RAFT) + body


class RawPeer:
    """A hand-driven dialer: connect, optionally authenticate, then send arbitrary bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(CONTROL_MAX_BYTES + 1)
        self.sent = bytearray()  # everything written, for replay tests

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.sent += data
        self.writer.write(data)
        await self.writer.drain()

    async def read_control(self) -> ControlRecord:
        async with asyncio.timeout(WAIT_S):
            while True:
                frames = self.decoder.feed(await self.reader.read(4096))
                if frames:
                    assert len(frames) == 1
                    assert frames[0][0] == FRAME_KIND_CONTROL
                    return decode_control(frames[0][1:])

    async def authenticate(self, node_id: int, peer_id: int, *, secret: bytes = SECRET) -> None:
        """The dialer's side of the handshake, by hand. With the cluster secret it returns
        after Welcome; with another secret it returns after sending the (wrong) Auth."""
        nonce = new_nonce()
        await self.send(
            encode_control(
                Hello(
                    cluster_id=CLUSTER_ID,
                    dialer_id=node_id,
                    listener_id=peer_id,
                    dialer_nonce=nonce,
                )
            )
        )
        challenge = await self.read_control()
        assert isinstance(challenge, Challenge)
        assert challenge.dialer_id == node_id and challenge.listener_id == peer_id
        mac = handshake_mac(
            secret,
            b"dialer",
            cluster_id=CLUSTER_ID,
            dialer_id=node_id,
            listener_id=peer_id,
            dialer_nonce=nonce,
            listener_nonce=challenge.listener_nonce,
        )
        await self.send(encode_control(Auth(mac=mac)))
        if secret == SECRET:
            assert isinstance(await self.read_control(), Welcome)

    async def assert_closed(self) -> None:
        """The listener closed the connection (EOF or reset) within the deadline."""
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    return
                if not data:
                    return

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


OPENSSL = shutil.which("openssl")


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A P-256 key and a self-signed CA:TRUE certificate for 127.0.0.1 (it is its own CA)."""
    if OPENSSL is None:
        pytest.skip("TLS test needs the openssl CLI (the cryptography package is not installed)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=raftsched-test-peer",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key

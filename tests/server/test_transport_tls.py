"""Peer TLS: a round trip over mutual TLS with a self-signed certificate made for the test, and
a plaintext dialer refused by a TLS listener without harm."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from raftsched.server.tls import tls_contexts

from .transport_support import (
    RawPeer,
    close_all,
    connect_all,
    heartbeat,
    self_signed,
    start_node,
    wait_until,
)


@pytest.mark.asyncio
async def test_tls_round_trip(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx, client_ctx = tls_contexts(cert, key, cert)
    nodes = [await start_node(i, ssl_server=server_ctx, ssl_client=client_ctx) for i in (1, 2)]
    try:
        connect_all(nodes)
        a, b = nodes
        a.transport.send(heartbeat(1, 2, i) for i in range(20))
        b.transport.send([heartbeat(2, 1, 7)])
        await wait_until(lambda: b.contexts_from(1) == list(range(20)), "delivery a -> b")
        await wait_until(lambda: a.contexts_from(2) == [7], "delivery b -> a")
        await wait_until(lambda: 2 in a.transport.clock_samples(), "clock over TLS")
        conn = b.transport._inbound.by_peer[1]
        assert conn._transport is not None
        assert conn._transport.get_extra_info("ssl_object") is not None, "really TLS"
    finally:
        await close_all(nodes)


@pytest.mark.asyncio
async def test_plaintext_dialer_is_refused_by_a_tls_listener(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx, client_ctx = tls_contexts(cert, key, cert)
    b = await start_node(2, ssl_server=server_ctx, ssl_client=client_ctx)
    try:
        peer = await RawPeer.connect(b.transport.listen_port)
        try:
            await peer.send(b"\x00\x00\x00\x05hello, not a TLS ClientHello")
            await peer.assert_closed()
        finally:
            await peer.close()
        assert b.inbox == []
    finally:
        await b.transport.close()


def test_tls_contexts_name_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="TLS certificate file not found"):
        tls_contexts(tmp_path / "nope.pem", tmp_path / "k.pem", tmp_path / "ca.pem")


def test_tls_contexts_verify_peers(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx, client_ctx = tls_contexts(cert, key, cert)
    assert server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert not client_ctx.check_hostname


@pytest.mark.asyncio
async def test_a_peer_with_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    cert, key = self_signed(ours)
    other_cert, other_key = self_signed(theirs)
    b = await start_node(2, ssl_server=tls_contexts(cert, key, cert)[0],
                         ssl_client=tls_contexts(cert, key, cert)[1])  # fmt: skip
    a = await start_node(1, peers={2: b.address},
                         ssl_server=tls_contexts(other_cert, other_key, other_cert)[0],
                         ssl_client=tls_contexts(other_cert, other_key, other_cert)[1])  # fmt: skip
    try:
        a.transport.send([heartbeat(1, 2, 1)])

        def refusals() -> list[str]:
            return [r.getMessage() for r in caplog.records if "CERTIFICATE_VERIFY_FAILED" in
                    r.getMessage() and r.levelno == logging.WARNING]  # fmt: skip

        await wait_until(lambda: len(refusals()) == 1, "a refuses b's certificate")
        assert not a.transport.peer_stats()[2].connected
        assert b.inbox == []
    finally:
        await close_all([a, b])

"""The transport runs unchanged on uvloop (the runtime uses it when importable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftsched.server.tls import tls_contexts

from .transport_support import (
    Node,
    assert_nodelay,
    close_all,
    connect_all,
    heartbeat,
    self_signed,
    start_node,
    wait_until,
)


def test_exchange_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        nodes: list[Node] = [await start_node(i) for i in (1, 2)]
        try:
            connect_all(nodes)
            nodes[0].transport.send(heartbeat(1, 2, i) for i in range(50))
            await wait_until(lambda: nodes[1].contexts_from(1) == list(range(50)), "delivery")
            await wait_until(lambda: 2 in nodes[0].transport.clock_samples(), "clock")
            assert_nodelay(nodes[0])
        finally:
            await close_all(nodes)

    uvloop.run(main())


def test_tls_exchange_under_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")
    cert, key = self_signed(tmp_path)
    server_ctx, client_ctx = tls_contexts(cert, key, cert)

    async def main() -> None:
        nodes = [await start_node(i, ssl_server=server_ctx, ssl_client=client_ctx) for i in (1, 2)]
        try:
            connect_all(nodes)
            nodes[0].transport.send(heartbeat(1, 2, i) for i in range(50))
            await wait_until(lambda: nodes[1].contexts_from(1) == list(range(50)), "delivery")
            await wait_until(lambda: 2 in nodes[0].transport.clock_samples(), "clock")
        finally:
            await close_all(nodes)

    uvloop.run(main())

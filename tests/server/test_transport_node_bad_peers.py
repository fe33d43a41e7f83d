"""Bad peers against a real 3-node cluster (issue 9 "Bad peers"): garbage bytes, a wrong
secret, a replayed handshake, an oversize frame and a forged src on the LEADER's peer port,
and garbage on its HTTP port. Each bad connection is closed with one log line; the leader
keeps its leadership (nothing forged reached Raft) and the cluster keeps serving writes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsched.raft.messages import RequestVote
from raftsched.server.peer_control import (
    CONTROL_MAX_BYTES,
    Auth,
    Challenge,
    ControlRecord,
    Hello,
    Welcome,
    decode_control,
    encode_control,
)
from raftsched.server.peer_handshake import handshake_mac, new_nonce
from raftsched.wire.framing import FrameDecoder

from .procs import LocalCluster
from .transport_support import raft_frame

CLUSTER_ID = 1  # LocalCluster's nodes run with the default cluster id
IO_TIMEOUT_S = 10.0
BAD_PEER_LINE = "closed peer connection from 127.0.0.1:"
ATTACKER_ID = 99  # authenticated attackers (they hold the secret) use an id nobody has


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("bad-peers"), nodes=3, fsync="never") as c:
        c.wait_for_leader(timeout_s=30)
        yield c


def secret(cluster: LocalCluster) -> bytes:
    return Path(cluster.files.secret_file).read_bytes().strip()


class Conn:
    """A blocking socket to one node's peer port, speaking frames by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        self.decoder = FrameDecoder(CONTROL_MAX_BYTES + 1)
        self.sent = bytearray()

    def send(self, data: bytes) -> None:
        self.sent += data
        self.sock.sendall(data)

    def read_control(self) -> ControlRecord:
        while True:
            data = self.sock.recv(4096)
            assert data, "the node closed the connection"
            frames = self.decoder.feed(data)
            if frames:
                return decode_control(frames[0][1:])

    def authenticate(self, key: bytes, target: int, *, expect_welcome: bool = True) -> None:
        nonce = new_nonce()
        self.send(
            encode_control(
                Hello(
                    cluster_id=CLUSTER_ID,
                    dialer_id=ATTACKER_ID,
                    listener_id=target,
                    dialer_nonce=nonce,
                )
            )
        )
        challenge = self.read_control()
        assert isinstance(challenge, Challenge)
        mac = handshake_mac(
            key,
            b"dialer",
            cluster_id=CLUSTER_ID,
            dialer_id=ATTACKER_ID,
            listener_id=target,
            dialer_nonce=nonce,
            listener_nonce=challenge.listener_nonce,
        )
        self.send(encode_control(Auth(mac=mac)))
        if expect_welcome:
            assert isinstance(self.read_control(), Welcome)

    def assert_closed_by_node(self) -> None:
        deadline = time.monotonic() + IO_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return
            except ConnectionResetError:
                return
        raise AssertionError("the node did not close the connection")

    def close(self) -> None:
        self.sock.close()


def bad_peer_lines(cluster: LocalCluster, node_id: int) -> int:
    text = cluster.log_path(node_id).read_text(errors="replace")
    return sum(BAD_PEER_LINE in line for line in text.splitlines())


def term_of(cluster: LocalCluster, node_id: int) -> int:
    st = cluster.status(node_id)
    assert st is not None
    return int(st["term"])


def attack_garbage(conn: Conn, key: bytes, target: int) -> None:
    conn.send(b"GET / HTTP/1.1\r\nHost: raftsched\r\n\r\n")


def attack_wrong_secret(conn: Conn, key: bytes, target: int) -> None:
    conn.authenticate(b"not the cluster secret", target, expect_welcome=False)


def attack_replayed_handshake(conn: Conn, key: bytes, target: int) -> None:
    recorder = Conn(conn.sock.getpeername()[1])
    try:
        recorder.authenticate(key, target)
    finally:
        recorder.close()
    hello_end = 4 + int.from_bytes(recorder.sent[:4], "big")
    conn.send(bytes(recorder.sent[:hello_end]))
    assert isinstance(conn.read_control(), Challenge)  # with a fresh nonce
    conn.send(bytes(recorder.sent[hello_end:]))  # the recorded Auth


def attack_oversize_frame(conn: Conn, key: bytes, target: int) -> None:
    conn.authenticate(key, target)
    conn.send((1 << 31).to_bytes(4, "big") + b"\x01" * 64)


def attack_forged_src(conn: Conn, key: bytes, target: int) -> None:
    """Authenticated as node 99, it claims to be another member asking for votes in a far
    future term: delivered, it would depose the leader."""
    conn.authenticate(key, target)
    other = 1 if target != 1 else 2
    vote = RequestVote(term=1_000_000, src=other, dst=target, last_index=1 << 40, last_term=999)
    conn.send(raft_frame(vote))


ATTACKS = {
    "garbage": (attack_garbage, "exceeds the limit"),
    "wrong secret": (attack_wrong_secret, "wrong cluster secret or a replayed handshake"),
    "replayed handshake": (attack_replayed_handshake, "replayed handshake"),
    "oversize frame": (attack_oversize_frame, "exceeds the limit"),
    "forged src": (attack_forged_src, f"on the connection authenticated as node {ATTACKER_ID}"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_bad_peer_on_the_leaders_peer_port(cluster: LocalCluster, name: str) -> None:
    attack, reason = ATTACKS[name]
    leader = cluster.wait_for_leader(timeout_s=30)
    term = term_of(cluster, leader)
    before = bad_peer_lines(cluster, leader)
    conn = Conn(cluster.nodes[leader].spec.peer_port)
    try:
        attack(conn, secret(cluster), leader)
        conn.assert_closed_by_node()
    finally:
        conn.close()
    cluster.wait_until(
        "one bad-peer log line", lambda: bad_peer_lines(cluster, leader) > before or None
    )
    text = cluster.log_path(leader).read_text(errors="replace")
    new_lines = [line for line in text.splitlines() if BAD_PEER_LINE in line][before:]
    assert len(new_lines) == 1, new_lines
    assert reason in new_lines[0], new_lines[0]
    # Nothing reached Raft: same leader, same term, and it still commits writes.
    assert cluster.alive(leader)
    assert cluster.wait_for_leader(timeout_s=30) == leader
    assert term_of(cluster, leader) == term
    job_id = f"after-{name.replace(' ', '-')}"
    headers = {"Authorization": f"Bearer {cluster.files.admin_token}"}
    r = cluster.post(leader, "/v1/jobs", {"id": job_id, "queue": "q", "payload": {}},
                     headers=headers)  # fmt: skip
    assert r.status == 201, (r.status, r.body)


def test_garbage_on_the_http_port(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader(timeout_s=30)
    port = cluster.nodes[leader].spec.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4)
        try:
            while sock.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
    assert cluster.alive(leader)
    r = cluster.get(leader, "/healthz")
    assert r.status == 200, (r.status, r.body)

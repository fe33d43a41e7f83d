"""Mutual authentication of a peer connection with the cluster secret, sans-I/O.

Theory of operation. The node that dials (and will send Raft messages) is the dialer; the node
that accepts (and will receive them) is the listener. Each side proves it knows the cluster
secret by an HMAC-SHA256 over a transcript that binds everything the connection depends on:

    dialer   -> listener  Hello(cluster_id, dialer_id, listener_id, dialer_nonce)
    listener -> dialer    Challenge(cluster_id, listener_id, dialer_id, listener_nonce,
                                    mac("listener", transcript))
    dialer   -> listener  Auth(mac("dialer", transcript))
    listener -> dialer    Welcome()        (peer_conn.py sends it; the link is then open)

    transcript = (cluster_id, dialer_id, listener_id, dialer_nonce, listener_nonce)

Why each part:
- Both nonces are fresh random 32 bytes per connection, so a recorded handshake replayed on a
  new connection fails: the other side's nonce differs, and so does the MAC it expects.
- The role label differs per direction, so a listener's MAC (which it computes for anyone
  who says Hello, before the dialer proved anything) is never a valid dialer MAC: a listener
  cannot be used as an oracle to authenticate as a dialer.
- The node ids are inside the MAC, so the dialer's id is bound to the connection: every Raft
  message arriving later must carry it as `src` (peer_conn.py checks).
- The cluster id is inside the MAC, so two clusters sharing a secret by mistake do not talk.

This authenticates the connection's endpoints. It does not protect the frames that follow
from an on-path attacker who can rewrite TCP segments; peer TLS (tls.py) does.
Every verification failure raises HandshakeError: the peer's fault, the connection closes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import msgpack

from .peer_control import MAC_BYTES, NONCE_BYTES, Auth, Challenge, Hello

_LABEL = b"raftsched peer handshake v1"
_ROLE_DIALER = b"dialer"
_ROLE_LISTENER = b"listener"


class HandshakeError(Exception):
    """The peer failed the handshake (wrong secret, replay, wrong cluster or node id)."""


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def handshake_mac(
    secret: bytes,
    role: bytes,
    *,
    cluster_id: int,
    dialer_id: int,
    listener_id: int,
    dialer_nonce: bytes,
    listener_nonce: bytes,
) -> bytes:
    """HMAC-SHA256 of the handshake transcript; msgpack makes the encoding unambiguous."""
    assert role in (_ROLE_DIALER, _ROLE_LISTENER)
    assert len(dialer_nonce) == NONCE_BYTES and len(listener_nonce) == NONCE_BYTES
    transcript = msgpack.packb(
        [_LABEL, role, cluster_id, dialer_id, listener_id, dialer_nonce, listener_nonce],
        use_bin_type=True,
    )
    mac = hmac.new(secret, transcript, hashlib.sha256).digest()
    assert len(mac) == MAC_BYTES
    return mac


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the cluster secret must be non-empty bytes")


class DialerHandshake:
    """The dialing side: hello() first, then on_challenge() answers with the Auth to send."""

    __slots__ = ("_cluster_id", "_node_id", "_nonce", "_peer_id", "_secret")

    def __init__(
        self,
        *,
        secret: bytes,
        cluster_id: int,
        node_id: int,
        peer_id: int,
        nonce: bytes | None = None,
    ) -> None:
        _check_secret(secret)
        assert node_id != peer_id, "a node never dials itself"
        self._secret = secret
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._peer_id = peer_id
        self._nonce = nonce if nonce is not None else new_nonce()

    def hello(self) -> Hello:
        return Hello(
            cluster_id=self._cluster_id,
            dialer_id=self._node_id,
            listener_id=self._peer_id,
            dialer_nonce=self._nonce,
        )

    def on_challenge(self, challenge: Challenge) -> Auth:
        if challenge.cluster_id != self._cluster_id:
            raise HandshakeError(
                f"peer is in cluster {challenge.cluster_id}, this node in {self._cluster_id}"
            )
        if challenge.listener_id != self._peer_id or challenge.dialer_id != self._node_id:
            raise HandshakeError(
                f"peer answered as node {challenge.listener_id} to node {challenge.dialer_id}; "
                f"expected node {self._peer_id} to node {self._node_id}"
            )
        listener_nonce = challenge.listener_nonce
        expected = self._mac(_ROLE_LISTENER, listener_nonce)
        if not hmac.compare_digest(expected, challenge.mac):
            raise HandshakeError("bad handshake MAC from the listener: wrong cluster secret?")
        return Auth(mac=self._mac(_ROLE_DIALER, listener_nonce))

    def _mac(self, role: bytes, listener_nonce: bytes) -> bytes:
        return handshake_mac(
            self._secret,
            role,
            cluster_id=self._cluster_id,
            dialer_id=self._node_id,
            listener_id=self._peer_id,
            dialer_nonce=self._nonce,
            listener_nonce=listener_nonce,
        )


class ListenerHandshake:
    """The accepting side: on_hello() returns the Challenge to send, on_auth() the
    authenticated dialer id."""

    __slots__ = ("_cluster_id", "_hello", "_node_id", "_nonce", "_secret")

    def __init__(
        self, *, secret: bytes, cluster_id: int, node_id: int, nonce: bytes | None = None
    ) -> None:
        _check_secret(secret)
        self._secret = secret
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._nonce = nonce if nonce is not None else new_nonce()
        self._hello: Hello | None = None

    def on_hello(self, hello: Hello) -> Challenge:
        assert self._hello is None, "one Hello per connection (the caller's state machine)"
        if hello.cluster_id != self._cluster_id:
            raise HandshakeError(
                f"peer is in cluster {hello.cluster_id}, this node in {self._cluster_id}"
            )
        if hello.listener_id != self._node_id:
            raise HandshakeError(f"peer dialed node {hello.listener_id}, this is {self._node_id}")
        if hello.dialer_id == self._node_id:
            raise HandshakeError(f"peer claims this node's own id {self._node_id}")
        self._hello = hello
        return Challenge(
            cluster_id=self._cluster_id,
            listener_id=self._node_id,
            dialer_id=hello.dialer_id,
            listener_nonce=self._nonce,
            mac=self._mac(_ROLE_LISTENER, hello),
        )

    def on_auth(self, auth: Auth) -> int:
        hello = self._hello
        assert hello is not None, "Auth is only read after Hello"
        if not hmac.compare_digest(self._mac(_ROLE_DIALER, hello), auth.mac):
            raise HandshakeError(
                "bad handshake MAC from the dialer: wrong cluster secret or a replayed handshake"
            )
        return hello.dialer_id

    def _mac(self, role: bytes, hello: Hello) -> bytes:
        return handshake_mac(
            self._secret,
            role,
            cluster_id=self._cluster_id,
            dialer_id=hello.dialer_id,
            listener_id=self._node_id,
            dialer_nonce=hello.dialer_nonce,
            listener_nonce=self._nonce,
        )

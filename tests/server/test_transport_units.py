"""The transport's sans-I/O parts without sockets: control codec, handshake, clock probe,
limits, backoff."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.server.clock_probe import ClockProbe
from raftsched.server.peer_conn import WarningBudget
from raftsched.server.peer_control import (
    CONTROL_MAX_BYTES,
    FRAME_KIND_CONTROL,
    Auth,
    Challenge,
    ControlRecord,
    Hello,
    Ping,
    Pong,
    Welcome,
    decode_control,
    encode_control,
)
from raftsched.server.peer_handshake import (
    DialerHandshake,
    HandshakeError,
    ListenerHandshake,
)
from raftsched.server.peer_link import PeerLink
from raftsched.server.peer_settings import PeerSettings, TransportLimits
from raftsched.wire.errors import WireDecodeError
from raftsched.wire.framing import FrameDecoder
from raftsched.wire.raft_codec import DecodeLimits

N32 = bytes(range(32))
RECORDS: list[ControlRecord] = [
    Hello(cluster_id=0, dialer_id=1, listener_id=2, dialer_nonce=N32),
    Challenge(cluster_id=2**64 - 1, listener_id=2, dialer_id=1, listener_nonce=N32, mac=N32),
    Auth(mac=N32),
    Welcome(),
    Ping(seq=0),
    Pong(seq=5, wall_ms=1_700_000_000_000),
]


def body_of(frame: bytes) -> bytes:
    (payload,) = FrameDecoder(CONTROL_MAX_BYTES + 1).feed(frame)
    assert payload[0] == FRAME_KIND_CONTROL
    return payload[1:]


@pytest.mark.parametrize("record", RECORDS)
def test_control_records_round_trip(record: ControlRecord) -> None:
    assert decode_control(body_of(encode_control(record))) == record


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, 5], "expected 1 fields"),
        ([1, 5, 1, 2], "expected 1 fields"),
        ([1, 5, -1], "Ping.seq"),
        ([1, 5, True], "Ping.seq"),
        ([1, 5, 1.0], "Ping.seq"),
        ([2, 5, 1], "unsupported version"),
        ([1, 99, 1], "unknown tag"),
        ([1, True, 1], "unknown tag"),
        ([1, 3, b"short"], "Auth.mac"),
        ([1, 3, "x" * 32], "Auth.mac"),
        ([1, 1, 0, 0, 2, N32], "Hello.dialer_id"),
        ({"a": 1}, "expected an array"),
        ([1], "expected an array"),
    ],
)
def test_control_decoding_is_strict(value: object, problem: str) -> None:
    with pytest.raises(WireDecodeError, match=problem.replace(".", r"\.")):
        decode_control(msgpack.packb(value, use_bin_type=True))


def test_control_decoding_refuses_big_and_trailing_input() -> None:
    with pytest.raises(WireDecodeError, match="exceeds"):
        decode_control(b"\x90" * (CONTROL_MAX_BYTES + 1))
    with pytest.raises(WireDecodeError, match="trailing"):
        decode_control(msgpack.packb([1, 5, 1]) + b"\x00")
    with pytest.raises(WireDecodeError, match="empty"):
        decode_control(b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=CONTROL_MAX_BYTES + 8))
def test_control_decoding_raises_only_wire_decode_error(data: bytes) -> None:
    with contextlib.suppress(WireDecodeError):
        decode_control(data)


def test_encoding_refuses_what_no_decoder_accepts() -> None:
    with pytest.raises(ValueError, match=r"Auth\.mac"):
        encode_control(Auth(mac=b"x"))
    with pytest.raises(ValueError, match=r"Hello\.dialer_id"):
        encode_control(Hello(cluster_id=0, dialer_id=0, listener_id=1, dialer_nonce=N32))


SECRET = b"s3cret"


def run_handshake(
    dialer: DialerHandshake, listener: ListenerHandshake
) -> tuple[int, Challenge, Auth]:
    challenge = listener.on_hello(dialer.hello())
    auth = dialer.on_challenge(challenge)
    return listener.on_auth(auth), challenge, auth


def test_handshake_authenticates_both_ends_and_binds_the_dialer_id() -> None:
    dialer = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2)
    listener = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    peer_id, _, _ = run_handshake(dialer, listener)
    assert peer_id == 1


def test_handshake_wrong_secret_fails_at_both_ends() -> None:
    dialer = DialerHandshake(secret=b"wrong", cluster_id=4, node_id=1, peer_id=2)
    listener = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    challenge = listener.on_hello(dialer.hello())
    with pytest.raises(HandshakeError, match="bad handshake MAC from the listener"):
        dialer.on_challenge(challenge)
    good = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2)
    listener2 = ListenerHandshake(secret=b"wrong", cluster_id=4, node_id=2)
    with pytest.raises(HandshakeError):
        good.on_challenge(listener2.on_hello(good.hello()))


def test_recorded_handshakes_do_not_replay() -> None:
    dialer = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2)
    _, challenge, auth = run_handshake(
        dialer, ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    )
    # The dialer's recording against a new listener (fresh listener nonce).
    fresh_listener = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    fresh_listener.on_hello(dialer.hello())
    with pytest.raises(HandshakeError, match="replayed"):
        fresh_listener.on_auth(auth)
    # The listener's recording against a new dialer (fresh dialer nonce).
    fresh_dialer = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2)
    with pytest.raises(HandshakeError, match="listener"):
        fresh_dialer.on_challenge(challenge)


def test_a_listener_mac_is_never_a_dialer_mac() -> None:
    """Reflection: the listener answers anyone's Hello with a MAC; it must not be usable as
    the Auth for the same transcript."""
    dialer = DialerHandshake(secret=b"unknown", cluster_id=4, node_id=1, peer_id=2)
    listener = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    challenge = listener.on_hello(dialer.hello())
    with pytest.raises(HandshakeError):
        listener.on_auth(Auth(mac=challenge.mac))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cluster_id": 5}, "cluster"),
        ({"listener_id": 3}, "dialed node 3"),
        ({"dialer_id": 2}, "own id"),
    ],
)
def test_listener_refuses_a_hello_for_another_cluster_or_node(
    change: dict[str, int], problem: str
) -> None:
    hello = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2).hello()
    listener = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2)
    with pytest.raises(HandshakeError, match=problem):
        listener.on_hello(Hello(**{**dataclasses.asdict(hello), **change}))


def test_dialer_refuses_a_challenge_from_another_node() -> None:
    dialer = DialerHandshake(secret=SECRET, cluster_id=4, node_id=1, peer_id=2)
    challenge = ListenerHandshake(secret=SECRET, cluster_id=4, node_id=2).on_hello(dialer.hello())
    with pytest.raises(HandshakeError, match="answered as node 3"):
        dialer.on_challenge(dataclasses.replace(challenge, listener_id=3))


def test_clock_probe_offset_uses_half_the_round_trip() -> None:
    probe = ClockProbe()
    assert probe.sample(0.0) is None
    seq = probe.next_ping(now_mono_s=100.0)
    # The peer is 5 s ahead; the round trip takes 20 ms; it answered at the midpoint.
    local_wall_at_send_ms = 1_000_000.0
    peer_wall_ms = int(local_wall_at_send_ms + 10 + 5000)
    assert probe.on_pong(seq, peer_wall_ms, now_mono_s=100.020, now_wall_ms=1_000_020.0)
    sample = probe.sample(now_mono_s=101.0)
    assert sample is not None
    assert sample.rtt_ms == pytest.approx(20.0)
    assert sample.offset_ms == pytest.approx(5000.0)
    assert sample.age_s == pytest.approx(0.98)
    assert probe.last_rtt_ms == pytest.approx(20.0)


def test_clock_probe_ignores_stale_and_duplicate_pongs() -> None:
    probe = ClockProbe()
    old = probe.next_ping(1.0)
    new = probe.next_ping(2.0)
    assert not probe.on_pong(old, 0, 2.5, 0.0)
    assert probe.on_pong(new, 0, 2.5, 0.0)
    assert not probe.on_pong(new, 0, 2.6, 0.0), "a pong counts once"
    assert probe.last_rtt_ms == pytest.approx(500.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_queue_bytes_per_peer": 0},
        {"handshake_timeout_s": 0.0},
        {"backoff_initial_s": 2.0, "backoff_max_s": 1.0},
        {"clock_ping_interval_s": 5.0, "peer_silence_timeout_s": 5.0},
        {"decode_limits": DecodeLimits(max_message_bytes=(1 << 32) - 1)},
    ],
)
def test_limits_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="TransportLimits"):
        TransportLimits(**bad)  # type: ignore[arg-type]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    limits = TransportLimits(backoff_initial_s=0.1, backoff_max_s=1.0)
    settings_ = PeerSettings(
        node_id=1, cluster_id=0, secret=b"x", limits=limits, log=logging.getLogger("t")
    )
    link = PeerLink(
        settings=settings_,
        peer_id=2,
        address=("127.0.0.1", 1),
        ssl_client=None,
        rng=random.Random(3),
    )
    delays = [link._backoff_s(n) for n in range(8)]
    for n, delay in enumerate(delays):
        cap = min(1.0, 0.1 * 2**n)
        assert cap / 2 <= delay < cap
    assert len({round(d, 6) for d in delays[5:]}) > 1, "jitter spreads the capped delays"


@pytest.mark.asyncio
async def test_warning_budget_caps_a_flood_and_reports_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("raftsched.transport.test")
    budget = WarningBudget(log, burst=3, window_s=10.0)
    for i in range(10):
        budget.warning(100.0 + i * 0.1, "bad %d", i)
    assert [r.getMessage() for r in caplog.records] == ["bad 0", "bad 1", "bad 2"]
    assert budget.suppressed == 7
    budget.report()  # what the timer does when the window ends
    assert caplog.records[-1].getMessage() == (
        "suppressed 7 more warnings about bad peer connections"
    )
    budget.warning(111.0, "bad %d", 10)  # a new window
    assert caplog.records[-1].getMessage() == "bad 10"
    budget.cancel()

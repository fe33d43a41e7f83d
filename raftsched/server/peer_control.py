"""Frames between peers: Raft messages and the transport's own control records, sans-I/O.

Theory of operation. Every frame on a peer connection is wire/framing.py's length prefix
(4 bytes, big-endian) followed by a payload whose FIRST BYTE is the frame kind:

    [length: u32][kind: u8][body]      length counts kind + body

    kind 1  RAFT     body = one Raft message of wire/raft_codec.py (decoded strictly there)
    kind 2  CONTROL  body = one control record: msgpack [CONTROL_VERSION, tag, fields...]

The kind byte keeps the two families apart without peeking into msgpack and without
reserving tags in the Raft codec's table. Control records are the handshake (peer_handshake.py)
and the clock ping/pong (clock_probe.py):

    tag  record      fields after [version, tag]
      1  Hello       cluster_id dialer_id listener_id dialer_nonce        dialer -> listener
      2  Challenge   cluster_id listener_id dialer_id listener_nonce mac  listener -> dialer
      3  Auth        mac                                                  dialer -> listener
      4  Welcome     (none)                                               listener -> dialer
      5  Ping        seq                                                  dialer -> listener
      6  Pong        seq wall_ms                                          listener -> dialer

Control records are tiny, so their decoder refuses any body over CONTROL_MAX_BYTES before
unpacking (msgpack cannot be asked to allocate much from a few hundred bytes), then checks
the exact field count and the type of every field. Any violation raises WireDecodeError; the
connection that sent it is closed (SPEC §3). Never renumber a kind or a tag.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ..wire.errors import WireDecodeError
from ..wire.strict import unpack_strict

FRAME_KIND_RAFT: Final = 1
FRAME_KIND_CONTROL: Final = 2
CONTROL_VERSION: Final = 1
CONTROL_MAX_BYTES: Final = 512  # the largest record (Challenge) is ~100 bytes
NONCE_BYTES: Final = 32
MAC_BYTES: Final = 32  # HMAC-SHA256
# Length prefix plus kind byte, packed in one call on the hot path.
FRAME_PREFIX: Final = struct.Struct(">IB")


@dataclass(frozen=True, slots=True)
class Hello:
    cluster_id: int
    dialer_id: int
    listener_id: int
    dialer_nonce: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    cluster_id: int
    listener_id: int
    dialer_id: int
    listener_nonce: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Auth:
    mac: bytes


@dataclass(frozen=True, slots=True)
class Welcome:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int
    wall_ms: int


ControlRecord = Hello | Challenge | Auth | Welcome | Ping | Pong

# Field kinds for the strict decoder.
_UINT: Final = "uint"
_NODE: Final = "node"
_NONCE: Final = "nonce"
_MAC: Final = "mac"

_TAG_BY_TYPE: Final[dict[type[Any], int]] = {
    Hello: 1,
    Challenge: 2,
    Auth: 3,
    Welcome: 4,
    Ping: 5,
    Pong: 6,
}
_TYPE_BY_TAG: Final = {tag: cls for cls, tag in _TAG_BY_TYPE.items()}
_FIELDS: Final[dict[type[Any], tuple[tuple[str, str], ...]]] = {
    Hello: (
        ("cluster_id", _UINT),
        ("dialer_id", _NODE),
        ("listener_id", _NODE),
        ("dialer_nonce", _NONCE),
    ),
    Challenge: (
        ("cluster_id", _UINT),
        ("listener_id", _NODE),
        ("dialer_id", _NODE),
        ("listener_nonce", _NONCE),
        ("mac", _MAC),
    ),
    Auth: (("mac", _MAC),),
    Welcome: (),
    Ping: (("seq", _UINT),),
    Pong: (("seq", _UINT), ("wall_ms", _UINT)),
}
assert set(_FIELDS) == set(_TAG_BY_TYPE), "every control record has a field layout"
_UINT_MAX: Final = (1 << 64) - 1


def _check(kind: str, value: object, where: str) -> None:
    if kind in (_UINT, _NODE):
        low = 1 if kind == _NODE else 0
        if type(value) is not int or not low <= value <= _UINT_MAX:
            raise WireDecodeError(f"{where}: expected an int in {low}..2**64-1")
        return
    size = NONCE_BYTES if kind == _NONCE else MAC_BYTES
    if type(value) is not bytes or len(value) != size:
        raise WireDecodeError(f"{where}: expected {size} bytes")


def encode_control(record: ControlRecord) -> bytes:
    """The whole frame (prefix, kind, body) carrying one control record."""
    cls = type(record)
    fields: list[Any] = [CONTROL_VERSION, _TAG_BY_TYPE[cls]]
    for name, kind in _FIELDS[cls]:
        value = getattr(record, name)
        try:
            _check(kind, value, f"{cls.__name__}.{name}")
        except WireDecodeError as exc:
            raise ValueError(f"cannot encode {exc}") from None
        fields.append(value)
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    assert len(body) <= CONTROL_MAX_BYTES, "control records stay tiny"
    return FRAME_PREFIX.pack(len(body) + 1, FRAME_KIND_CONTROL) + body


def decode_control(body: bytes | memoryview) -> ControlRecord:
    """The control record in `body` (the frame payload after the kind byte). Raises
    WireDecodeError (only) on anything but one well-formed record."""
    if len(body) > CONTROL_MAX_BYTES:
        raise WireDecodeError(f"control record of {len(body)} bytes exceeds {CONTROL_MAX_BYTES}")
    if len(body) == 0:
        raise WireDecodeError("empty control record")
    value = unpack_strict(body, "control record")
    if type(value) is not list or len(value) < 2:
        raise WireDecodeError("control record: expected an array [version, tag, ...]")
    version, tag = value[0], value[1]
    if type(version) is not int or version != CONTROL_VERSION:
        raise WireDecodeError(f"control record: unsupported version {version!r:.20}")
    cls = _TYPE_BY_TAG.get(tag) if type(tag) is int else None
    if cls is None:
        raise WireDecodeError(f"control record: unknown tag {tag!r:.20}")
    fields = _FIELDS[cls]
    if len(value) != 2 + len(fields):
        raise WireDecodeError(
            f"{cls.__name__}: expected {len(fields)} fields, got {len(value) - 2}"
        )
    for (name, kind), field_value in zip(fields, value[2:], strict=True):
        _check(kind, field_value, f"{cls.__name__}.{name}")
    record: ControlRecord = cls(*value[2:])
    return record

"""The entry envelope: what a committed NORMAL log entry of the scheduler carries.

Theory of operation. SPEC §4: the state machine never reads a clock; the leader stamps each
entry it proposes with its wall time in ms, and the state machine's clock is the largest stamp
applied so far. The stamp therefore travels with the command, in the log, and every replica
applies the same (stamp, command) pair. An envelope is ONE msgpack array:

    [ENVELOPE_VERSION, stamp_ms, command_bytes, proposer_id]

`command_bytes` is an encoded scheduler command (raftsched/wire/sched_codec.py), kept opaque
here so the two layers version independently; `proposer_id` is the node id of the leader
that stamped the entry (0: unknown), kept for diagnostics only: applying never depends on it.

Decoding is strict, as the bytes come from a log on disk or a peer: anything malformed,
truncated, of an unknown version, with a field of the wrong type (a bool is not an int) or out
of range, or with trailing bytes raises `WireDecodeError`, and never another exception.
Encoding checks its arguments with assertions: a bad stamp is a programmer error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from .errors import WireDecodeError
from .strict import unpack_strict

ENVELOPE_VERSION: Final = 1
MAX_ENVELOPE_BYTES: Final = 64 * 1024 * 1024 + 64  # a maximal command plus the header
STAMP_MS_MAX: Final = 2**63 - 1  # int64, as every other time on the wire
PROPOSER_ID_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class SchedEntry:
    """A decoded envelope: the leader's stamp and the still-encoded command."""

    stamp_ms: int
    command: bytes
    proposer_id: int = 0


def encode_entry(stamp_ms: int, command_bytes: bytes, proposer_id: int = 0) -> bytes:
    assert type(stamp_ms) is int and 0 <= stamp_ms <= STAMP_MS_MAX, stamp_ms
    assert type(proposer_id) is int and 0 <= proposer_id <= PROPOSER_ID_MAX, proposer_id
    assert isinstance(command_bytes, bytes) and command_bytes, "an envelope needs a command"
    packed: bytes = msgpack.packb(
        [ENVELOPE_VERSION, stamp_ms, command_bytes, proposer_id], use_bin_type=True
    )
    assert len(packed) <= MAX_ENVELOPE_BYTES
    return packed


def decode_entry(data: Any) -> SchedEntry:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireDecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise WireDecodeError("empty input: no entry envelope")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise WireDecodeError(f"envelope of {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    obj: Any = unpack_strict(bytes(data), "entry envelope")
    if type(obj) is not list or len(obj) != 4:
        raise WireDecodeError(
            "an entry envelope is an array [version, stamp_ms, command, proposer_id]"
        )
    version, stamp_ms, command, proposer_id = obj
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise WireDecodeError(f"unsupported entry envelope version {version!r}")
    if type(stamp_ms) is not int or not 0 <= stamp_ms <= STAMP_MS_MAX:
        raise WireDecodeError(f"stamp_ms must be an int in [0, 2**63), got {stamp_ms!r}")
    if type(command) is not bytes or not command:
        raise WireDecodeError("the command of an entry envelope must be non-empty bytes")
    if type(proposer_id) is not int or not 0 <= proposer_id <= PROPOSER_ID_MAX:
        raise WireDecodeError(f"proposer_id must be an int in [0, 2**63), got {proposer_id!r}")
    return SchedEntry(stamp_ms, command, proposer_id)


__all__ = ["ENVELOPE_VERSION", "SchedEntry", "decode_entry", "encode_entry"]

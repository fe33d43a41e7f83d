"""msgpack encoding of scheduler commands (raftsched/sched/commands.py).

Theory of operation. A command is ONE msgpack array:

    [FORMAT_VERSION, kind, fields]

`kind` is the command's stable kind name (`commands.KIND_BY_TYPE`, e.g. "submit_jobs") and
`fields` the map `commands.to_plain(cmd)` gives: the API's own field names (SPEC §5). Decoding
unpacks, checks the envelope, then runs the very parse function the HTTP API uses
(`parse.parse_command`), so a command that decodes is exactly as valid as one the API accepted:
unknown or missing fields, wrong types (a bool is not an int), bad ids, bad cron expressions
all fail the same way. The runtime wraps these bytes with the leader's stamp in its entry
envelope; this module knows nothing of stamps or indexes.

Decoding is strict because the bytes come from a log on disk or a peer: anything malformed,
truncated, oversized, of an unknown version or kind, or with trailing bytes raises
`WireDecodeError`, and never another exception. Size limits at decode are the generous
`WIRE_LIMITS`, not a node's configured API limits: every replica must decode every committed
command the same way whatever its own configuration, and the API limits were already enforced
by the node that accepted the request.

Encoding trusts the command's types (they were parsed) and raises `WireError` for a value msgpack
cannot represent. A change of layout bumps FORMAT_VERSION; never rename a kind.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from ..sched.commands import Command, command_kind, to_plain
from ..sched.errors import SchedError
from ..sched.limits import Limits
from ..sched.parse import PARSERS, parse_command
from .errors import WireDecodeError, WireError
from .strict import unpack_strict

FORMAT_VERSION: Final = 1
MAX_COMMAND_BYTES: Final = 64 * 1024 * 1024

# Far above any sane API configuration: decoding must never refuse a committed command.
WIRE_LIMITS: Final = Limits.permissive()


def encode_command(cmd: Command) -> bytes:
    try:
        packed: bytes = msgpack.packb(
            [FORMAT_VERSION, command_kind(cmd), to_plain(cmd)], use_bin_type=True
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode {type(cmd).__name__}: {exc}") from exc
    return packed


def _type_name(value: object) -> str:
    return type(value).__name__


def unpack_command(data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
    """The (kind, fields) of an encoded command, with the envelope checked strictly; the
    fields are not validated yet (decode_command and sched_trusted.decode_committed do)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireDecodeError(f"expected bytes, got {_type_name(data)}")
    if len(data) > MAX_COMMAND_BYTES:
        raise WireDecodeError(f"command of {len(data)} bytes exceeds {MAX_COMMAND_BYTES}")
    if len(data) == 0:
        raise WireDecodeError("empty input: no command")
    obj: Any = unpack_strict(data, "command")
    if type(obj) is not list or len(obj) != 3:
        raise WireDecodeError("a command is an array [version, kind, fields]")
    version, kind, fields = obj
    if type(version) is not int or version != FORMAT_VERSION:
        raise WireDecodeError(f"unsupported command format version {version!r}")
    if type(kind) is not str or kind not in PARSERS:
        raise WireDecodeError(f"unknown command kind {kind!r}")
    if type(fields) is not dict:
        raise WireDecodeError(f"fields of a {kind} command must be a map, got {_type_name(fields)}")
    return kind, fields


def decode_command(data: bytes, limits: Limits = WIRE_LIMITS) -> Command:
    kind, fields = unpack_command(data)
    try:
        return parse_command(kind, fields, limits)
    except SchedError as exc:
        raise WireDecodeError(f"invalid {kind} command: {exc.message}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise WireDecodeError(f"invalid {kind} command: {type(exc).__name__}: {exc}") from exc

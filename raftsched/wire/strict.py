"""Strict one-shot msgpack decoding for small records (entry envelopes, scheduler commands).

msgpack reports bad input through half a dozen exception types, some of them plain
ValueError or TypeError; callers of the wire package must see only WireDecodeError, with a
message that says what was wrong. (The Raft message codec reads long arrays header-first
instead, to bound allocation; see raft_codec.py.)
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import WireDecodeError


def unpack_strict(data: bytes | bytearray | memoryview, noun: str) -> Any:
    """Decode one msgpack value filling all of `data`: no ext types, string map keys only.
    `noun` names the record in error messages ("command", "entry envelope")."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, max_ext_len=0)
    except msgpack.ExtraData as exc:
        raise WireDecodeError(f"trailing bytes after the {noun}") from exc
    except (msgpack.OutOfData, EOFError) as exc:
        raise WireDecodeError(f"truncated {noun}") from exc
    except (msgpack.UnpackException, ValueError, TypeError, OverflowError, RecursionError) as exc:
        if "incomplete input" in str(exc):
            raise WireDecodeError(f"truncated {noun}") from exc
        raise WireDecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc

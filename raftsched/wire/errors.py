"""Errors of the wire layer (message codecs and framing).

Who is at fault: a `WireDecodeError` always means the bytes came from outside (a peer, a file,
a client) and are malformed, truncated, too large or of an unknown version. The receiver drops
them (closing the connection when they came over TCP, SPEC §3); it never crashes on them.
Encoding a value the codec cannot represent is a programmer error and raises `WireError`.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error the wire layer raises on purpose."""


class WireDecodeError(WireError):
    """The input bytes are not a valid encoding. The message names what was wrong."""


class FrameTooLargeError(WireDecodeError):
    """A frame header announces a payload longer than the receiver accepts."""

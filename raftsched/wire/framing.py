"""Length-prefixed frames for a byte stream (TCP between Raft peers), sans-I/O.

Theory of operation. A frame is a 4-byte big-endian unsigned payload length followed by the
payload. TCP already checksums and orders the bytes, so the frame carries no checksum of its
own; the payload (a msgpack record, see raft_codec.py) is decoded strictly on its own.

`FrameDecoder` turns arbitrary chunks of the stream into whole payloads: bytes in, frames out,
no sockets (the h11 school). It keeps one bytearray buffer and a read offset: each `feed`
appends once, cuts every complete frame out, then drops the consumed prefix once. While a
large frame is still arriving `feed` only appends and compares the buffered length with the
length it already knows it needs, so a frame split into n chunks costs O(frame size) in
total, never O(n * frame size).

A header announcing more than `max_frame_bytes`, or an empty frame (no record is empty),
is the peer's fault: `feed` raises FrameTooLargeError / WireDecodeError and the decoder stays
failed, because after a bad header the stream has no trustworthy frame boundary left; the
caller closes the connection (SPEC §3).
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import FrameTooLargeError, WireDecodeError, WireError

FRAME_HEADER_BYTES: Final = 4
MAX_FRAME_PAYLOAD_BYTES: Final = (1 << 32) - 1  # what a 4-byte length can say
_HEADER: Final = struct.Struct(">I")


def encode_frame(payload: bytes) -> bytes:
    """The frame carrying `payload`: its length (4 bytes, big-endian) then the payload."""
    size = len(payload)
    if size == 0:
        raise WireError("cannot frame an empty payload")
    if size > MAX_FRAME_PAYLOAD_BYTES:
        raise WireError(f"cannot frame {size} bytes: more than a 4-byte length can say")
    return _HEADER.pack(size) + payload


class FrameDecoder:
    """Reassembles frames from stream chunks. One decoder per connection."""

    __slots__ = ("_buffer", "_failure", "_max_frame_bytes", "_needed_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if not 0 < max_frame_bytes <= MAX_FRAME_PAYLOAD_BYTES:
            raise ValueError(
                f"max_frame_bytes must be in 1..{MAX_FRAME_PAYLOAD_BYTES}, got {max_frame_bytes}"
            )
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        # Buffered bytes needed before the next frame can be cut: the header, or the header
        # plus the payload once the header is known.
        self._needed_bytes = FRAME_HEADER_BYTES
        self._failure: WireDecodeError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Buffers `data` and returns every frame payload it completes, in stream order."""
        if self._failure is not None:
            raise WireDecodeError(f"stream already failed: {self._failure}")
        buffer = self._buffer
        buffer += data
        if len(buffer) < self._needed_bytes:
            return []  # the common case while a large frame arrives: O(1) beyond the append
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        while True:
            if end - offset < FRAME_HEADER_BYTES:
                self._needed_bytes = FRAME_HEADER_BYTES
                break
            (size,) = _HEADER.unpack_from(buffer, offset)
            self._check_header(size)
            frame_end = offset + FRAME_HEADER_BYTES + size
            if frame_end > end:
                self._needed_bytes = frame_end - offset
                break
            frames.append(bytes(buffer[offset + FRAME_HEADER_BYTES : frame_end]))
            offset = frame_end
        if offset:
            del buffer[:offset]  # once per feed, not per frame
        assert len(buffer) < self._needed_bytes, "every complete frame was cut"
        return frames

    def _check_header(self, size: int) -> None:
        if size > self._max_frame_bytes:
            self._failure = FrameTooLargeError(
                f"frame of {size} bytes exceeds the limit of {self._max_frame_bytes} bytes"
            )
            raise self._failure
        if size == 0:
            self._failure = WireDecodeError("invalid frame header: empty frame")
            raise self._failure

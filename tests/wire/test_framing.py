"""framing: length-prefixed frames survive any chunking; bad headers fail the stream."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.wire.errors import FrameTooLargeError, WireDecodeError, WireError
from raftsched.wire.framing import FRAME_HEADER_BYTES, FrameDecoder, encode_frame

payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=12)


# Timing is not what these tests check; a loaded CI machine must not fail them.
NO_DEADLINE = settings(deadline=None)


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(payloads, st.lists(st.integers(0, 10_000), max_size=30))
def test_any_chunking_yields_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in frames)
    decoder = FrameDecoder(max_frame_bytes=300)
    received: list[bytes] = []
    for chunk in chunked(stream, cuts):
        received.extend(decoder.feed(chunk))
    assert received == frames
    assert decoder.buffered_bytes == 0


@NO_DEADLINE
@given(payloads, st.binary(min_size=1, max_size=40))
def test_an_incomplete_tail_stays_buffered(frames: list[bytes], partial: bytes) -> None:
    tail = encode_frame(partial)[:-1]
    decoder = FrameDecoder(max_frame_bytes=300)
    assert decoder.feed(b"".join(encode_frame(p) for p in frames) + tail) == frames
    assert decoder.buffered_bytes == len(tail)
    assert decoder.feed(partial[-1:]) == [partial]


def test_frame_layout_is_big_endian_length_then_payload() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"x" * 258)[:FRAME_HEADER_BYTES] == b"\x00\x00\x01\x02"


def test_byte_by_byte_feeding_of_a_large_frame() -> None:
    payload = bytes(range(256)) * 256  # 64 KiB
    decoder = FrameDecoder(max_frame_bytes=len(payload))
    stream = encode_frame(payload) + encode_frame(b"next")
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == [payload, b"next"]


def test_oversize_header_fails_the_stream_at_once() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    # Only the header of the oversize frame has arrived: refuse before buffering its body.
    with pytest.raises(FrameTooLargeError, match="frame of 11 bytes exceeds the limit of 10"):
        decoder.feed(b"\x00\x00\x00\x0b")
    with pytest.raises(WireDecodeError, match="stream already failed"):
        decoder.feed(encode_frame(b"ok"))


def test_frames_before_a_bad_header_in_the_same_chunk_are_lost_with_the_stream() -> None:
    # The connection is closed on any error, so partial results are never half-delivered.
    decoder = FrameDecoder(max_frame_bytes=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(encode_frame(b"ok") + b"\xff\xff\xff\xff")


def test_empty_frame_is_invalid() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    with pytest.raises(WireDecodeError, match="empty frame") as info:
        decoder.feed(b"\x00\x00\x00\x00")
    assert not isinstance(info.value, FrameTooLargeError)
    with pytest.raises(WireError, match="empty payload"):
        encode_frame(b"")


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        FrameDecoder(max_frame_bytes=0)


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    stream = encode_frame(b"hello")
    assert decoder.feed(bytearray(stream[:3])) == []
    assert decoder.feed(memoryview(stream)[3:]) == [b"hello"]

"""A bounded tail of a child's output: only the last `limit` bytes are kept."""

from __future__ import annotations


class Tail:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]
            self.truncated = True

    def clear(self) -> None:
        self.buf.clear()
        self.truncated = False

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")

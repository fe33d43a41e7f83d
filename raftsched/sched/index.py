"""A sorted set of keys with eager deletion: the scheduler's timed and priority indexes.

Why not heapq with lazy deletion: a stale heap entry (a cancelled pending job, a lease that
already ended, a replaced schedule) stays until it reaches the top, so one entry could pop
hundreds of thousands of them (issue 7 defect 2), and a replica restored from a snapshot, which
has none, would do a different amount of work per entry than one that applied the log; that
makes a per-entry budget on due work impossible to keep deterministic. Here every key is live:
removing one costs O(log n), and popping the first key never meets garbage.

Layout (the "sorted list of sorted chunks" of the sortedcontainers package, reduced to what the
state machine needs): `_chunks` is a list of sorted lists of at most 2 * `CHUNK_LOAD` keys,
`_maxes[i]` the last key of `_chunks[i]`. Finding a key is two C-level bisections; inserting
or removing moves at most one chunk's pointers (memmove), so every operation is O(log n +
CHUNK_LOAD) in C with a few Python steps, and iteration from any key costs O(page).

Keys are tuples of ints and strings, unique (each ends with the job's `seq` or a name). The
order of the keys, not the layout, decides every answer, so two replicas agree whatever the
history of their chunks.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

CHUNK_LOAD = 512
"""Half the largest chunk: 512 keys is a 4 KiB memmove on insert, cheap next to a bisection."""

K = TypeVar("K", bound=tuple[Any, ...])


class SortedIndex(Generic[K]):
    __slots__ = ("_chunks", "_len", "_maxes")

    def __init__(self) -> None:
        self._chunks: list[list[K]] = []
        self._maxes: list[K] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def add(self, key: K) -> None:
        maxes, chunks = self._maxes, self._chunks
        self._len += 1
        if not maxes:
            chunks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):  # past the end: the common case of increasing keys
            i -= 1
            chunk = chunks[i]
            chunk.append(key)
            maxes[i] = key
        else:
            chunk = chunks[i]
            insort(chunk, key)
        if len(chunk) > 2 * CHUNK_LOAD:
            half = chunk[CHUNK_LOAD:]
            del chunk[CHUNK_LOAD:]
            chunks.insert(i + 1, half)
            maxes[i] = chunk[-1]
            maxes.insert(i + 1, half[-1])

    def remove(self, key: K) -> None:
        """Remove a key that is present (a missing key is a broken invariant)."""
        maxes, chunks = self._maxes, self._chunks
        i = bisect_left(maxes, key)
        assert i < len(maxes), ("key not in index", key)
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        assert j < len(chunk) and chunk[j] == key, ("key not in index", key)
        del chunk[j]
        self._len -= 1
        if not chunk:
            del chunks[i]
            del maxes[i]
        elif j == len(chunk):
            maxes[i] = chunk[-1]

    def __contains__(self, key: object) -> bool:
        maxes = self._maxes
        i = bisect_left(maxes, key)  # type: ignore[call-overload]
        if i == len(maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        return j < len(chunk) and chunk[j] == key

    def first(self) -> K | None:
        return self._chunks[0][0] if self._chunks else None

    def pop_first(self) -> K:
        chunks = self._chunks
        chunk = chunks[0]
        key = chunk.pop(0)
        self._len -= 1
        if not chunk:
            del chunks[0]
            del self._maxes[0]
        return key

    def after(self, key: K | None) -> Iterator[K]:
        """Keys greater than `key` (all keys if None), ascending. Do not mutate while
        iterating."""
        chunks = self._chunks
        if key is None:
            i, j = 0, 0
        else:
            i = bisect_right(self._maxes, key)
            j = bisect_right(chunks[i], key) if i < len(chunks) else 0
        while i < len(chunks):
            chunk = chunks[i]
            yield from chunk[j:] if j else chunk
            i, j = i + 1, 0

    def __iter__(self) -> Iterator[K]:
        return self.after(None)

    @classmethod
    def from_sorted(cls, keys: list[K]) -> SortedIndex[K]:
        """Build from keys already sorted and unique (snapshot restore)."""
        index = cls()
        for start in range(0, len(keys), CHUNK_LOAD):
            chunk = keys[start : start + CHUNK_LOAD]
            index._chunks.append(chunk)
            index._maxes.append(chunk[-1])
        index._len = len(keys)
        return index

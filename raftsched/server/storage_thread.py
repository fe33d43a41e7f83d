"""The storage thread: every write and fsync of a node, in order, off the event loop.

Theory of operation (ready.py, "overlapping Readys"). The event loop hands each Ready's
writes to this one thread and keeps stepping the core; the thread persists Readys in the
order they were submitted. When it wakes it takes EVERYTHING queued, writes it all, and then
fsyncs once if any of them must be synced: while one fsync runs, the next Readys pile up and
share the next fsync (group commit). Each job's completion is posted back to the loop, in
submission order, with the fsync's duration.

Reads. The disk storage is not thread-safe, and only this thread touches it once the node
runs: the core reads a `MemoryStorage` mirror that the loop updates with the same writes as it
hands them over (mirror.py), so the loop never waits for a lock held across an fsync.

Failure. A storage error (StorageFatalError: ENOSPC, EIO on write or fsync) is never retried:
the thread reports it through `on_fatal` on the loop and stops taking work; the node exits
non-zero (PostgreSQL's "fsyncgate": after a failed fsync the page cache cannot be trusted).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from raftsched.raft.ready import Ready
from raftsched.raft.storage import WritableStorage, persist_ready

MAX_BATCH_JOBS = 4096  # jobs written before one fsync, so a flood cannot starve completions


class SyncableStorage(WritableStorage, Protocol):
    """The writable storage plus durability (raftsched/storage DiskStorage)."""

    def sync(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Job:
    ready: Ready | None  # a Ready to persist, or None for a call
    call: Callable[[], Any] | None
    must_sync: bool
    done: Callable[[Any, float], None]  # (result, fsync seconds) on the loop


_STOP = object()


class StorageThread:
    def __init__(
        self,
        storage: SyncableStorage,
        *,
        loop: asyncio.AbstractEventLoop,
        on_fatal: Callable[[BaseException], None],
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self._loop = loop
        self._on_fatal = on_fatal
        self._log = log
        self._jobs: queue.SimpleQueue[_Job | list[_Job] | object] = queue.SimpleQueue()
        self._failed = False
        self.fsyncs = 0
        self.fsync_seconds_total = 0.0
        self.observe_fsync: Callable[[float], None] | None = None  # metrics hook (any thread)
        self._thread = threading.Thread(target=self._run, name="raftsched-storage", daemon=True)
        self._thread.start()

    def submit_readys(self, readys: list[tuple[Ready, Callable[[Any, float], None]]]) -> None:
        """Persist each Ready (and fsync if one must) after everything submitted before;
        one queue operation for all the Readys of a loop iteration."""
        assert readys
        self._jobs.put([_Job(rd, None, rd.must_sync, done) for rd, done in readys])

    def submit_call(
        self,
        call: Callable[[], Any],
        done: Callable[[Any, float], None],
        *,
        sync_before: bool = False,
    ) -> None:
        """Run `call(storage)` on this thread after everything submitted before it;
        `sync_before` first makes all earlier writes durable (a backup must not include
        an unsynced tail)."""
        self._jobs.put(_Job(None, call, sync_before, done))

    def sync_now(self) -> None:
        """Blocking: make everything written so far durable (shutdown, after the thread)."""
        self.storage.sync()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the queued jobs, then end the thread."""
        self._jobs.put(_STOP)
        self._thread.join(timeout_s)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch: list[_Job] = []
            _extend(batch, first)
            stop = False
            while len(batch) < MAX_BATCH_JOBS:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                _extend(batch, nxt)
            if not self._failed:
                self._process(batch)
            if stop:
                return

    def _process(self, batch: list[_Job]) -> None:
        results: list[Any] = []
        try:
            dirty = False  # written since the last fsync and needing one
            fsync_s = 0.0
            for job in batch:
                if job.ready is not None:
                    persist_ready(self.storage, job.ready)
                    dirty = dirty or job.must_sync
                    results.append(None)
                else:
                    assert job.call is not None
                    if job.must_sync and dirty:
                        fsync_s += self._fsync()
                        dirty = False
                    results.append(job.call())
            if dirty:
                fsync_s += self._fsync()
        except BaseException as exc:  # storage errors are fatal: never retry an fsync
            self._failed = True
            self._log.critical("storage failure, the node stops: %s: %s", type(exc).__name__, exc)
            self._loop.call_soon_threadsafe(self._on_fatal, exc)
            return
        self._loop.call_soon_threadsafe(self._complete, batch, results, fsync_s)

    def _fsync(self) -> float:
        started = time.perf_counter()
        self.storage.sync()
        elapsed = time.perf_counter() - started
        self.fsyncs += 1
        self.fsync_seconds_total += elapsed
        if self.observe_fsync is not None:
            self.observe_fsync(elapsed)
        return elapsed

    @staticmethod
    def _complete(batch: list[_Job], results: list[Any], fsync_s: float) -> None:
        for job, result in zip(batch, results, strict=True):
            job.done(result, fsync_s)


def _extend(batch: list[_Job], item: object) -> None:
    if isinstance(item, list):
        batch.extend(item)
    else:
        assert isinstance(item, _Job)
        batch.append(item)

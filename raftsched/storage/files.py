"""Every system call that changes the data directory, with the disk layer's two failpoints.

`DiskIO` is the only place that writes, fsyncs, renames or deletes. Any OSError from a write
or an fsync poisons it: the error becomes `StorageFatalError`, and every later call raises
the same, because after a failed fsync the kernel may have dropped the dirty pages and a
retry could report success for data that is gone (fsyncgate).

Failpoints (test-only, off unless named by the environment or the constructor):
- power loss (`RAFTSCHED_FAILPOINT_POWER_LOSS=1`): data writes are held in this process's
  memory until the fsync of their file, so a SIGKILL loses exactly what was never synced,
  like a power cut. Metadata operations (create, rename, unlink) happen at once and are made
  durable by the directory fsyncs the storage does anyway.
- disk full (`RAFTSCHED_FAILPOINT_ENOSPC_AFTER_BYTES=N`): after N bytes written in total,
  a write stores the part that fits and fails with ENOSPC, as a full file system does.
- slow disk (`RAFTSCHED_FAILPOINT_FSYNC_DELAY_MS=N`): each fsync first sleeps N ms (on the
  storage thread), as a slow or contended disk would; it widens the windows the jepsen
  harness probes (an `[unsafe] ack_before_fsync` follower acks entries it has not synced).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Final

from .errors import StorageFatalError

POWER_LOSS_ENV: Final = "RAFTSCHED_FAILPOINT_POWER_LOSS"
ENOSPC_ENV: Final = "RAFTSCHED_FAILPOINT_ENOSPC_AFTER_BYTES"
FSYNC_DELAY_ENV: Final = "RAFTSCHED_FAILPOINT_FSYNC_DELAY_MS"


class DiskIO:
    """Writes, fsyncs and renames for one data directory; poisoned by the first failure."""

    def __init__(
        self,
        *,
        fsync: bool,
        log: logging.Logger,
        power_loss: bool = False,
        enospc_after_bytes: int | None = None,
        fsync_delay_s: float = 0.0,
    ) -> None:
        self.fsync_enabled = fsync
        self.fsync_delay_s = fsync_delay_s
        self.power_loss = power_loss
        self._log = log
        self._budget = enospc_after_bytes
        self._held: dict[int, list[bytes]] = {}
        self.failure: str | None = None
        self.fsync_count = 0
        self.bytes_written = 0

    @classmethod
    def from_env(cls, *, fsync: bool, log: logging.Logger) -> DiskIO:
        budget = os.environ.get(ENOSPC_ENV)
        delay_ms = os.environ.get(FSYNC_DELAY_ENV)
        return cls(
            fsync=fsync,
            log=log,
            power_loss=os.environ.get(POWER_LOSS_ENV, "") not in ("", "0"),
            enospc_after_bytes=int(budget) if budget else None,
            fsync_delay_s=int(delay_ms) / 1000 if delay_ms else 0.0,
        )

    def check(self) -> None:
        """Raise if an earlier write or fsync failed: this storage accepts nothing more."""
        if self.failure is not None:
            raise StorageFatalError(
                f"storage failed earlier and accepts nothing more: {self.failure}"
            )

    def _fail(self, what: str, exc: OSError) -> StorageFatalError:
        self.failure = f"{what}: {exc}"
        self._log.critical("storage: fatal disk error, stopping all writes: %s", self.failure)
        return StorageFatalError(self.failure)

    # -- files ---------------------------------------------------------------------------

    def open_append(self, path: Path, *, create: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        try:
            return os.open(path, flags, 0o644)
        except OSError as exc:
            raise self._fail(f"open {path}", exc) from exc

    def close(self, fd: int) -> None:
        self._held.pop(fd, None)
        os.close(fd)

    def write(self, fd: int, data: bytes, what: str) -> None:
        """Append `data` (held in memory under the power-loss failpoint until `fsync`)."""
        self.check()
        if self.power_loss:
            self._held.setdefault(fd, []).append(data)
            return
        self._write_now(fd, data, what)

    def _write_now(self, fd: int, data: bytes, what: str) -> None:
        view = memoryview(data)
        try:
            if self._budget is not None:
                room = max(0, self._budget - self.bytes_written)
                if len(view) > room:
                    self._write_all(fd, view[:room])
                    raise OSError(errno.ENOSPC, "No space left on device (failpoint)")
            self._write_all(fd, view)
        except OSError as exc:
            raise self._fail(f"write {what}", exc) from exc

    def _write_all(self, fd: int, view: memoryview) -> None:
        while view:
            done = os.write(fd, view)
            self.bytes_written += done
            view = view[done:]

    def fsync(self, fd: int, what: str) -> None:
        """Make every earlier write to `fd` durable (a no-op under the unsafe policy)."""
        self.check()
        if self.fsync_delay_s:
            time.sleep(self.fsync_delay_s)  # failpoint: before the held data is written
        held = self._held.pop(fd, None)
        if held:
            self._write_now(fd, b"".join(held), what)
        if not self.fsync_enabled:
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise self._fail(f"fsync {what}", exc) from exc
        self.fsync_count += 1

    def fsync_dir(self, path: Path) -> None:
        """Make creations, renames and deletions in directory `path` durable."""
        self.check()
        if not self.fsync_enabled:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._fail(f"fsync directory {path}", exc) from exc
        self.fsync_count += 1

    def truncate(self, path: Path, size: int) -> None:
        """Cut a file to `size` bytes and make that durable (recovery of a torn tail)."""
        self.check()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, size)
                if self.fsync_enabled:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._fail(f"truncate {path}", exc) from exc

    def unlink(self, path: Path) -> None:
        self.check()
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._fail(f"delete {path}", exc) from exc

    def write_file_atomically(self, path: Path, data: bytes) -> None:
        """Temp file, write, fsync, rename over `path`, fsync the directory: after this
        returns the new content is durable, and a crash at any point leaves either the old
        file or the new one (plus maybe a stray *.tmp that opening removes)."""
        tmp = path.with_name(path.name + ".tmp")
        self.unlink(tmp)
        fd = self.open_append(tmp, create=True)
        try:
            self.write(fd, data, str(tmp))
            self.fsync(fd, str(tmp))
        finally:
            self.close(fd)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise self._fail(f"rename {tmp} to {path}", exc) from exc
        self.fsync_dir(path.parent)

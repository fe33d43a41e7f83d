"""A throwaway Redis server for the RQ baseline: installed with apt when missing, started on a
free loopback port with its files in a temp dir, stopped by pid.

Durability is stated, not implied: `appendfsync` "always" fsyncs the append-only file before
each write is answered (what raftsched's `--fsync always` does for each commit), "everysec"
fsyncs once a second (Redis's default when AOF is on; up to a second of acknowledged writes
can be lost), "no" leaves it to the OS. RDB snapshots are off (`save ""`), so no fork of the
server disturbs the figures.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from bench.jobs_e2e import free_ports

APPENDFSYNC = ("always", "everysec", "no")
APT_TIMEOUT_S = 600.0
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 20.0
POLL_S = 0.05


class RedisUnavailable(RuntimeError):
    """No redis-server on PATH and it could not be installed (not root, no apt, apt failed)."""


def redis_server_path(*, install: bool) -> str:
    """The redis-server binary; with `install`, `apt-get install redis-server` when missing
    (the bench runs as root on this machine class: see docs/benchmarks.md)."""
    found = shutil.which("redis-server")
    if found or not install:
        if found is None:
            raise RedisUnavailable("redis-server is not on PATH")
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RedisUnavailable("redis-server is missing and apt-get as root is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("==> redis-server missing: apt-get install -y redis-server", flush=True)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
    ):
        done = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
        )
        if done.returncode != 0:
            raise RedisUnavailable(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if found is None:
        raise RedisUnavailable("apt-get installed redis-server but it is not on PATH")
    return found


class RedisServer:
    """`with RedisServer(tmp, appendfsync="always") as srv: srv.url` -- one server process."""

    def __init__(self, base: Path, *, appendfsync: str, binary: str) -> None:
        assert appendfsync in APPENDFSYNC, appendfsync
        self.base = base
        self.appendfsync = appendfsync
        self.binary = binary
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def version(self) -> str:
        out = subprocess.run(
            [self.binary, "--version"], check=False, capture_output=True, text=True
        )
        return out.stdout.strip()

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.base),
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--daemonize", "no", "--logfile", str(self.base / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE_S
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.base / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server not answering after {START_DEADLINE_S}s")
                time.sleep(POLL_S)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM by pid (Redis shuts down cleanly), SIGKILL after a deadline."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

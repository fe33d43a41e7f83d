"""`raftsched node --config node.toml` (or flags): run one cluster node in this process.

Theory of operation. Parse and validate the configuration (config.py; a bad key exits 2 with
one line naming it), open the data dir (refusing one of another cluster or node, or a corrupt
log, with the file and offset), then on one event loop (uvloop when importable): the peer
transport, the runtime (runtime.py) and the HTTP API (api.py `build_app`). The process lives
until SIGTERM/SIGINT or a fatal storage error.

Shutdown on SIGTERM/SIGINT, in this order: stop accepting HTTP connections; the runtime hands
leadership to the most caught-up voter, lets in-flight requests finish (bounded by
`limits.shutdown_grace_s`) and fails the rest with 503; the storage thread drains and the log
is fsynced; open HTTP connections are closed; the transport closes. Exit 0. A storage failure
exits 1 (never retry an fsync); SIGKILL at any point loses nothing acknowledged, because
nothing is acknowledged before it is fsynced on a majority.

Exit codes: 0 clean stop, 1 runtime failure (storage, port in use, identity), 2 bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import tomllib
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .config import ConfigError, NodeConfig, load_config
from .gc_policy import GcPolicy
from .logging_setup import setup_logging

if TYPE_CHECKING:
    from .runtime import Runtime
    from .storage_thread import SyncableStorage
    from .transport import TransportLimits

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
CLOSE_PEERS_S: Final = 2.0  # closing the peer transport at exit: aborts, then a loop turn

# Signals received before the event loop's handlers exist (imports, config, opening the
# data dir): the node still starts, then stops cleanly at once (exit 0, not killed).
_early_signals: list[int] = []


def _note_early_signal(signum: int, _frame: object) -> None:
    _early_signals.append(signum)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftsched node",
        description="Run one raftsched cluster node. Flags override the --config file.",
    )
    p.add_argument("--config", type=Path, help="TOML file (see docs/operations.md)")
    p.add_argument("--node-id", type=int)
    p.add_argument("--cluster-id", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--peer-addr", help="host:port this node listens on for peers")
    p.add_argument("--http-addr", help="host:port of the HTTP API")
    p.add_argument("--http-url", help="URL others use to reach this node's API")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="ID=HOST:PORT,URL",
        help="another initial member: id, peer address and HTTP URL (repeat)",
    )
    p.add_argument("--secret-file", help="file holding the cluster secret (>= 16 bytes)")
    p.add_argument("--tokens-file", help="TOML: sha256 hex of a token = role")
    p.add_argument(
        "--fsync",
        choices=["always", "never"],
        help="'never' is UNSAFE (acknowledged writes can be lost): tests only",
    )
    p.add_argument(
        "--join",
        action="store_true",
        default=None,
        help="a new node an existing cluster adds (starts with no membership)",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--auth", dest="auth", action="store_true", default=None)
    auth.add_argument("--no-auth", dest="auth", action="store_false")
    p.add_argument("--tls-cert", help="PEM certificate (peers: mutual TLS; see --tls-http)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-ca", help="PEM CA that signs every node's certificate")
    p.add_argument(
        "--tls-http",
        action="store_true",
        default=None,
        help="also serve the HTTP API over TLS (https)",
    )
    p.add_argument("--tick-ms", type=int)
    p.add_argument("--election-ticks", type=int)
    p.add_argument("--snapshot-entries", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, TOML value: --set raft.snapshot_entries=1000",
    )
    p.add_argument("--log-level")
    p.add_argument("--log-file")
    return p


def _peer_flags(values: Sequence[str]) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    for value in values:
        ident, sep, rest = value.partition("=")
        addr, comma, url = rest.partition(",")
        if not sep or not comma:
            raise ConfigError("--peer", f"expected ID=HOST:PORT,URL, got {value!r}")
        peers[ident] = {"peer_addr": addr, "http_url": url}
    return peers


def _set_flags(values: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare string
        table = out
        *parents, leaf = key.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value
    return out


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    raft = {
        k: v
        for k, v in (
            ("tick_ms", args.tick_ms),
            ("election_ticks", args.election_ticks),
            ("snapshot_entries", args.snapshot_entries),
        )
        if v is not None
    }
    sets = _set_flags(args.set)
    for key, value in sets.items():  # tables merge with the named flags
        if key == "raft" and isinstance(value, dict):
            raft.update(value)
    sets.pop("raft", None)
    named = {
        "node_id": args.node_id,
        "cluster_id": args.cluster_id,
        "data_dir": args.data_dir,
        "peer_addr": args.peer_addr,
        "http_addr": args.http_addr,
        "http_url": args.http_url,
        "peers": _peer_flags(args.peer) or None,
        "secret_file": args.secret_file,
        "tokens_file": args.tokens_file,
        "fsync": args.fsync,
        "join": args.join,
        "auth": args.auth,
        "raft": raft or None,
        "log_level": args.log_level,
        "log_file": args.log_file,
    }
    tls = {
        k: v
        for k, v in (
            ("cert_file", args.tls_cert),
            ("key_file", args.tls_key),
            ("ca_file", args.tls_ca),
            ("http", args.tls_http),
        )
        if v is not None
    }
    if tls:
        named["tls"] = tls
    for key, value in sets.items():
        if named.get(key) is None:
            named[key] = value
    return named


def open_storage(config: NodeConfig, log: logging.Logger) -> SyncableStorage:
    """The node's DiskStorage; raises StorageIdentityError / CorruptStorageError."""
    from raftsched.storage import DiskStorage  # noqa: PLC0415 - keeps `--help` light

    config.data_dir.mkdir(parents=True, exist_ok=True)
    storage: SyncableStorage = DiskStorage.open(
        config.data_dir, fsync=config.fsync, identity=(config.cluster_id, config.node_id), log=log
    )
    return storage


def main(argv: list[str]) -> int:
    for sig in STOP_SIGNALS:  # first: the heavy imports happen in serve()
        signal.signal(sig, _note_early_signal)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, overrides_from(args))
    except ConfigError as exc:
        print(f"raftsched node: bad configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(
        node_label=f"node{config.node_id}", level=config.log_level, log_file=config.log_file
    )
    # The collector policy of a node (gc_policy.py): short pauses with millions of jobs.
    gc_policy = GcPolicy()
    gc_policy.install()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        return int(uvloop.run(serve(config, gc_policy)))
    except ImportError:
        return asyncio.run(serve(config, gc_policy))


async def serve(config: NodeConfig, gc_policy: GcPolicy | None = None) -> int:
    """Run the node until SIGTERM/SIGINT (0) or a fatal error (1)."""
    from aiohttp import web  # noqa: PLC0415 - imported after the early signal handlers

    from raftsched.storage import CorruptStorageError, StorageError  # noqa: PLC0415

    from .api import build_app  # noqa: PLC0415
    from .runtime import Runtime  # noqa: PLC0415
    from .tls import tls_contexts  # noqa: PLC0415
    from .transport import PeerTransport  # noqa: PLC0415

    log = logging.getLogger(f"raftsched.node{config.node_id}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # before anything starts: never die mid-way
        loop.add_signal_handler(sig, stop.set)
    if _early_signals:
        log.info("signal %d received while starting: stopping once started", _early_signals[0])
        stop.set()
    if config.unsafe.any:
        log.warning(
            "UNSAFE test modes on (%s): this node breaks raftsched's guarantees on "
            "purpose; for the jepsen harness only",
            config.unsafe,
        )
    if config.fsync == "never":
        log.warning(
            "fsync = never: UNSAFE, acknowledged writes can be lost on power failure "
            "(tests and benchmarks only)"
        )
    try:
        storage = open_storage(config, log)
    except CorruptStorageError as exc:
        log.critical("refusing to start: corrupt log: %s", exc)
        return EXIT_FAILURE
    except StorageError as exc:
        log.critical("refusing to start: %s", exc)
        return EXIT_FAILURE
    except OSError as exc:
        log.critical("refusing to start: data dir %s: %s", config.data_dir, exc)
        return EXIT_FAILURE
    ssl_server = ssl_client = http_ssl = None
    if config.tls is not None:
        try:
            ssl_server, ssl_client = tls_contexts(
                config.tls.cert_file, config.tls.key_file, config.tls.ca_file
            )
            if config.tls.http:
                http_ssl, _ = tls_contexts(
                    config.tls.cert_file,
                    config.tls.key_file,
                    config.tls.ca_file,
                    require_client_cert=False,
                )
        except (OSError, ssl.SSLError) as exc:
            log.critical("refusing to start: TLS: %s", exc)
            storage.close()
            return EXIT_FAILURE
    runtime = Runtime(config, storage, log=log, gc_policy=gc_policy)
    if gc_policy is not None:
        gc_policy.on_skip = lambda predicted_s: log.info(
            "gc: skipped a thaw predicted to pause %.0f ms (budget %.0f ms); cycles frozen "
            "while alive stay until the next snapshot load",
            predicted_s * 1000,
            gc_policy.thaw_budget_s * 1000,
        )
    transport = PeerTransport(
        node_id=config.node_id,
        cluster_secret=config.cluster_secret,
        listen_host=config.peer_addr[0],
        listen_port=config.peer_addr[1],
        peers={pid: p.peer_addr for pid, p in config.peers.items()},
        on_message=runtime.deliver,
        limits=transport_limits(config),
        ssl_server=ssl_server,
        ssl_client=ssl_client,
        log=logging.getLogger("raftsched.transport"),
        cluster_id=config.cluster_id,
    )
    runtime.attach_transport(transport)
    runner: web.AppRunner | None = None
    try:
        await transport.start()
        await runtime.start()
        runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner,
            config.http_addr[0],
            config.http_addr[1],
            shutdown_timeout=config.limits.shutdown_grace_s,
            ssl_context=http_ssl,
        )
        try:
            await site.start()
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen for HTTP on {config.http_addr[0]}:"
                f"{config.http_addr[1]}: {exc.strerror or exc}",
            ) from exc
        log.info(
            "serving: http %s (listening on %s:%d), peers on %s:%d, data dir %s",
            config.http_url,
            *config.http_addr,
            *config.peer_addr,
            config.data_dir,
        )
        code = await _until_stopped(runtime, stop, log)
        await site.stop()  # stop accepting; requests in progress continue
        await runtime.shutdown()
    except OSError as exc:
        log.critical("refusing to start: %s", exc)
        code = EXIT_FAILURE
        with contextlib.suppress(Exception):
            await runtime.shutdown()
    finally:
        # Bounded: the state is already synced and closed, so a connection that will not
        # close (a peer's socket half-open behind a dead route) must not keep the process up.
        if runner is not None:
            await _bounded(runner.cleanup(), "HTTP connections", config.limits.shutdown_grace_s)
        await _bounded(transport.close(), "peer connections", CLOSE_PEERS_S)
    return code


async def _bounded(closing: Coroutine[Any, Any, None], what: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s + 1.0):
            await closing
    except TimeoutError:
        logging.getLogger("raftsched.node").warning(
            "shutdown: %s did not close within %.1f s; exiting without them", what, timeout_s
        )


def transport_limits(config: NodeConfig) -> TransportLimits:
    """The transport's bounds from the node config (a frame carries a message and a kind
    byte, so the message bound is one byte below the frame bound)."""
    from raftsched.wire.raft_codec import DecodeLimits  # noqa: PLC0415

    from .transport import TransportLimits  # noqa: PLC0415

    return TransportLimits(
        max_queue_bytes_per_peer=config.limits.peer_queue_bytes,
        decode_limits=DecodeLimits(max_message_bytes=config.limits.max_frame_bytes - 1),
    )


async def _until_stopped(runtime: Runtime, stop: asyncio.Event, log: logging.Logger) -> int:
    fatal = runtime.fatal
    assert fatal is not None
    fatal.add_done_callback(lambda _f: stop.set())
    await stop.wait()
    if fatal.done():
        log.critical("stopping after a fatal error: %s", fatal.result())
        return EXIT_FAILURE
    log.info("signal received: stopping (leadership transfer, in-flight requests, fsync)")
    return EXIT_OK

"""`NodeConfig`: one node's configuration, from a TOML file and/or command-line flags.

Theory of operation. `load_config(path, overrides)` reads the TOML file (if any), lays the
flag values over it (a flag given wins), then validates every key in one place and returns a
frozen `NodeConfig`. Every mistake raises `ConfigError` naming the key (`peers.2.peer_addr`,
`limits.max_inflight_proposals`), so an operator never has to read a traceback. Unknown keys
are refused too: a typo must not silently fall back to a default.

The file's shape (docs/operations.md has the full table):

    node_id = 1
    cluster_id = 7                     # the same on every node; the data dir records it
    data_dir = "/var/lib/raftsched/1"
    peer_addr = "10.0.0.1:9101"        # where this node listens for its peers
    http_addr = "10.0.0.1:8101"        # where it serves the HTTP API
    http_url = "http://10.0.0.1:8101"  # how others reach that API (default from http_addr)
    secret_file = "/etc/raftsched/cluster.secret"
    fsync = "always"                   # "never" is UNSAFE: tests and benchmarks only
    join = false                       # true: a new node that an existing cluster adds
    auth = true                        # default: on unless http_addr is loopback
    tokens_file = "/etc/raftsched/tokens.toml"   # sha256 hex of a token = "role"
    [peers.2]
    peer_addr = "10.0.0.2:9102"
    http_url = "http://10.0.0.2:8102"
    [raft]   tick_ms, election_ticks, heartbeat_ticks, snapshot_entries, ...
    [limits] max_inflight_proposals, max_pending_reads, propose_timeout_s, ...

The initial voters of a new cluster are this node plus `peers`; a `join` node starts with no
membership and learns it from the leader that adds it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from raftsched.sched import Limits
from raftsched.server.auth import ROLES, hash_token

FsyncPolicy = Literal["always", "never"]
_S = TypeVar("_S", "RaftSettings", "RuntimeLimits")
MAX_NODE_ID: Final = 2**63 - 1
MIN_SECRET_BYTES: Final = 16
MAX_FRAME_BYTES: Final = (1 << 32) - 1  # what the 4-byte frame length can say
FRAME_HEADROOM_BYTES: Final = 1 << 20  # envelopes and message headers around the payload


class ConfigError(ValueError):
    """A configuration value is missing or wrong; `key` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_addr: tuple[str, int]
    http_url: str

    @property
    def peer_addr_text(self) -> str:
        return f"{self.peer_addr[0]}:{self.peer_addr[1]}"


@dataclass(frozen=True, slots=True)
class RaftSettings:
    tick_ms: int = 30
    election_ticks: int = 10  # election timeout in [10, 20) ticks = 0.3 .. 0.6 s
    heartbeat_ticks: int = 1
    max_entries_per_append: int = 4096
    max_bytes_per_append: int = 1 << 20
    max_inflight_appends: int = 64
    snapshot_chunk_bytes: int = 1 << 20
    max_promote_lag_entries: int = 1000
    # Take a snapshot once this many entries were applied since the last one.
    snapshot_entries: int = 20_000
    # Keep this many entries below a snapshot so slightly slow followers need no snapshot.
    snapshot_keep_entries: int = 5_000
    # States with at least this many jobs are serialized in a forked child (copy-on-write),
    # so a big snapshot never stalls heartbeats; smaller ones inline (a fork costs ~ms).
    snapshot_fork_min_jobs: int = 20_000


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    """Every bound of the runtime and the API, named (STYLE: a limit on everything)."""

    max_inflight_proposals: int = 20_000  # proposals waiting for commit + apply
    max_pending_reads: int = 10_000  # read barriers waiting for confirmation
    propose_timeout_s: float = 10.0  # then OutcomeUnknown (retry with the same key)
    read_timeout_s: float = 5.0  # a read barrier not confirmed by then: NoLeader
    max_body_bytes: int = 8 << 20  # the API's request body bound (413 past it)
    lease_wait_ms_max: int = 30_000  # the lease long-poll cap
    peer_queue_bytes: int = 64 << 20  # outgoing bytes queued per peer before dropping
    max_frame_bytes: int = 128 << 20  # the largest peer frame accepted (and sent)
    clock_sample_max_age_s: float = 10.0  # older peer clock samples do not vote on stamps
    shutdown_grace_s: float = 5.0  # SIGTERM: how long in-flight requests may still finish
    max_long_polls: int = 10_000  # lease requests waiting at once on a node (429 past it)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Optional TLS: mutual TLS between peers (cluster CA), and HTTPS for the API if `http`."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    http: bool = False


@dataclass(frozen=True, slots=True)
class UnsafeModes:
    """Deliberately broken modes for the jepsen harness to prove its checkers catch them.
    Never for real use: each is logged as UNSAFE at start."""

    stale_reads: bool = False  # read_barrier returns at once: reads skip ReadIndex
    ack_before_fsync: bool = False  # a Ready's messages leave before its writes are synced

    @property
    def any(self) -> bool:
        return self.stale_reads or self.ack_before_fsync


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    data_dir: Path
    peer_addr: tuple[str, int]
    http_addr: tuple[str, int]
    http_url: str
    cluster_secret: bytes
    cluster_id: int = 1
    peers: Mapping[int, PeerInfo] = field(default_factory=dict)
    fsync: FsyncPolicy = "always"
    join: bool = False
    auth: bool = False
    tokens: Mapping[str, str] = field(default_factory=dict)  # sha256 hex -> role
    raft: RaftSettings = field(default_factory=RaftSettings)
    limits: RuntimeLimits = field(default_factory=RuntimeLimits)
    log_level: str = "INFO"
    log_file: Path | None = None
    tls: TlsSettings | None = None
    # The scheduler's replicated settings a new cluster starts with (sched.Limits fields):
    # the first leader proposes them in the Bootstrap entry; later only UpdateSettings
    # changes them, so this table matters on the nodes of a new cluster only.
    sched: Limits = field(default_factory=Limits)
    unsafe: UnsafeModes = field(default_factory=UnsafeModes)

    @property
    def initial_voters(self) -> frozenset[int]:
        return frozenset({self.node_id, *self.peers})

    def http_url_of(self, node_id: int) -> str | None:
        if node_id == self.node_id:
            return self.http_url
        peer = self.peers.get(node_id)
        return peer.http_url if peer is not None else None


# -- parsing -----------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(
    {
        "node_id",
        "cluster_id",
        "data_dir",
        "peer_addr",
        "http_addr",
        "http_url",
        "secret_file",
        "secret",
        "fsync",
        "join",
        "auth",
        "tokens",
        "tokens_file",
        "peers",
        "raft",
        "limits",
        "log_level",
        "log_file",
        "tls",
        "sched",
        "unsafe",
    }
)
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_addr(key: str, value: object) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(key, f"must be 'host:port', got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(key, f"has no host in {value!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(key, f"port must be 1..65535, got {port_text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _int(key: str, value: object, lo: int = 1, hi: int = MAX_NODE_ID) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ConfigError(key, f"must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _positive_number(key: str, value: object) -> float:
    if (type(value) is not int and type(value) is not float) or isinstance(value, bool):
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    return number


def _bool(key: str, value: object) -> bool:
    if type(value) is not bool:
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _str(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    return value


def _url(key: str, value: object) -> str:
    text = _str(key, value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(key, f"must start with http:// or https://, got {text!r}")
    return text.rstrip("/")


def _table(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {value!r}")
    return value


def _settings(key: str, cls: type[_S], raw: object) -> _S:
    """A frozen dataclass of numbers from a TOML table, each value type-checked."""
    table = _table(key, raw)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(f"{key}.{name}", "unknown key")
        default = known[name].default
        if isinstance(default, float):
            values[name] = _positive_number(f"{key}.{name}", value)
        else:
            values[name] = _int(f"{key}.{name}", value, lo=0 if "keep" in name else 1)
    return cls(**values)


def _peers(raw: object, node_id: int) -> dict[int, PeerInfo]:
    peers: dict[int, PeerInfo] = {}
    for id_text, info in _table("peers", raw).items():
        key = f"peers.{id_text}"
        if not str(id_text).isdigit():
            raise ConfigError(key, "a peer's table name is its node id (a positive integer)")
        peer_id = _int(key, int(id_text))
        table = _table(key, info)
        unknown = sorted(set(table) - {"peer_addr", "http_url"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", "unknown key")
        if "peer_addr" not in table:
            raise ConfigError(f"{key}.peer_addr", "is required")
        if "http_url" not in table:
            raise ConfigError(f"{key}.http_url", "is required")
        if peer_id == node_id:
            continue  # a shared peers table may list this node too
        peers[peer_id] = PeerInfo(
            parse_addr(f"{key}.peer_addr", table["peer_addr"]),
            _url(f"{key}.http_url", table["http_url"]),
        )
    return peers


def _read_secret(raw: Mapping[str, Any]) -> bytes:
    if "secret_file" in raw:
        path = Path(_str("secret_file", raw["secret_file"]))
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError("secret_file", f"cannot read {path}: {exc.strerror}") from None
        key = "secret_file"
    elif "secret" in raw:
        secret, key = _str("secret", raw["secret"]).encode(), "secret"
    else:
        raise ConfigError(
            "secret_file",
            "is required (the cluster secret peers authenticate with; the same file on every node)",
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(key, f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def internal_read_token(cluster_secret: bytes) -> str:
    """A read-only bearer token every node derives from the cluster secret, so nodes can read
    each other's GET /v1/cluster (member address discovery) with auth on. It is as secret as
    the cluster secret itself and never leaves the cluster."""
    return hmac.new(cluster_secret, b"raftsched internal read token v1", hashlib.sha256).hexdigest()


def _tokens(raw: Mapping[str, Any]) -> dict[str, str]:
    table: dict[str, Any] = dict(_table("tokens", raw.get("tokens", {})))
    if "tokens_file" in raw:
        path = Path(_str("tokens_file", raw["tokens_file"]))
        try:
            table.update(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("tokens_file", f"cannot read {path}: {exc}") from None
    tokens: dict[str, str] = {}
    for digest, role in table.items():
        key = f"tokens.{digest}"
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(key, "a token is stored as the lowercase sha256 hex of the token")
        if role not in ROLES:
            raise ConfigError(key, f"role must be one of {', '.join(ROLES)}, got {role!r}")
        tokens[digest] = role
    return tokens


def _tls(raw: object) -> TlsSettings | None:
    if raw is None:
        return None
    table = _table("tls", raw)
    unknown = sorted(set(table) - {"cert_file", "key_file", "ca_file", "http"})
    if unknown:
        raise ConfigError(f"tls.{unknown[0]}", "unknown key")
    files = []
    for name in ("cert_file", "key_file", "ca_file"):
        if name not in table:
            raise ConfigError(f"tls.{name}", "is required when [tls] is given")
        path = Path(_str(f"tls.{name}", table[name]))
        if not path.is_file():
            raise ConfigError(f"tls.{name}", f"no such file: {path}")
        files.append(path)
    return TlsSettings(files[0], files[1], files[2], _bool("tls.http", table.get("http", False)))


def _sched_limits(raw: object) -> Limits:
    table = _table("sched", raw)
    known = {f.name for f in fields(Limits)}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(f"sched.{name}", "unknown key (see raftsched/sched/limits.py)")
        _int(f"sched.{name}", value)
    try:
        return Limits(**table)
    except (AssertionError, TypeError) as exc:
        raise ConfigError("sched", f"invalid settings: {exc}") from None


def _unsafe(raw: object) -> UnsafeModes:
    table = _table("unsafe", raw)
    known = {f.name for f in fields(UnsafeModes)}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(f"unsafe.{name}", f"unknown key (known: {', '.join(sorted(known))})")
        _bool(f"unsafe.{name}", value)
    return UnsafeModes(**table)


def build_config(raw: Mapping[str, Any]) -> NodeConfig:
    """Validate a merged file + flags mapping into a NodeConfig."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    for required in ("node_id", "data_dir", "peer_addr", "http_addr"):
        if required not in raw:
            raise ConfigError(required, "is required")
    node_id = _int("node_id", raw["node_id"])
    peer_addr = parse_addr("peer_addr", raw["peer_addr"])
    http_addr = parse_addr("http_addr", raw["http_addr"])
    fsync = raw.get("fsync", "always")
    if fsync not in ("always", "never"):
        raise ConfigError("fsync", f"must be 'always' or 'never' (UNSAFE), got {fsync!r}")
    auth_default = not is_loopback(http_addr[0])
    tokens = _tokens(raw)
    auth = _bool("auth", raw.get("auth", auth_default))
    secret = _read_secret(raw)
    if auth and not tokens:
        raise ConfigError(
            "tokens",
            "auth is on (a non-loopback http_addr) but no token is "
            "configured; add tokens or set auth = false",
        )
    tls = _tls(raw.get("tls"))
    scheme = "https" if tls is not None and tls.http else "http"
    level = str(raw.get("log_level", "INFO")).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
    config = NodeConfig(
        node_id=node_id,
        cluster_id=_int("cluster_id", raw.get("cluster_id", 1)),
        data_dir=Path(_str("data_dir", raw["data_dir"])),
        peer_addr=peer_addr,
        http_addr=http_addr,
        http_url=_url("http_url", raw.get("http_url", f"{scheme}://{http_addr[0]}:{http_addr[1]}")),
        cluster_secret=secret,
        peers=_peers(raw.get("peers", {}), node_id),
        fsync=fsync,
        join=_bool("join", raw.get("join", False)),
        auth=auth,
        tokens={**tokens, hash_token(internal_read_token(secret)): "read"},
        raft=_settings("raft", RaftSettings, raw.get("raft", {})),
        limits=_settings("limits", RuntimeLimits, raw.get("limits", {})),
        log_level=level,
        log_file=Path(_str("log_file", raw["log_file"])) if "log_file" in raw else None,
        tls=tls,
        sched=_sched_limits(raw.get("sched", {})),
        unsafe=_unsafe(raw.get("unsafe", {})),
    )
    if config.raft.election_ticks <= config.raft.heartbeat_ticks:
        raise ConfigError("raft.election_ticks", "must exceed raft.heartbeat_ticks")
    _check_frame_bound(config)
    return config


def _check_frame_bound(config: NodeConfig) -> None:
    """A peer frame must hold the largest message the node sends: an append of
    max_bytes_per_append, a snapshot chunk, or one entry as big as an accepted request."""
    biggest = max(
        config.raft.max_bytes_per_append,
        config.raft.snapshot_chunk_bytes,
        config.limits.max_body_bytes,
    )
    needed = biggest + FRAME_HEADROOM_BYTES
    if not needed <= config.limits.max_frame_bytes <= MAX_FRAME_BYTES:
        raise ConfigError(
            "limits.max_frame_bytes",
            f"must be in [{needed}, {MAX_FRAME_BYTES}] (room for the largest append, snapshot "
            f"chunk or request body plus {FRAME_HEADROOM_BYTES} bytes), "
            f"got {config.limits.max_frame_bytes}",
        )


def load_config(path: Path | None, overrides: Mapping[str, Any]) -> NodeConfig:
    """The file at `path` (if any) with `overrides` (flags) laid over it, validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return build_config(raw)


def with_peers(config: NodeConfig, peers: Mapping[int, PeerInfo]) -> NodeConfig:
    return replace(config, peers=dict(peers))

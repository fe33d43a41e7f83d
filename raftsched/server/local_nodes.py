"""Node processes on this machine: argv, secrets, tokens and a tiny JSON poller.

Shared by `raftsched dev` (dev_cmd.py), the test harness (tests/server/procs.py) and the
cluster benchmark (bench/cluster.py), so all three start nodes exactly the same way: one
`python -m raftsched.cli node ...` child per node on 127.0.0.1, node i serving HTTP on
`http_ports[i]` and peers on `peer_ports[i]`, data in `<base>/node<i>`.
"""

from __future__ import annotations

import json
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auth import hash_token

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: int
    http_port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def peer_addr(self) -> str:
        return f"{HOST}:{self.peer_port}"


@dataclass(frozen=True, slots=True)
class ClusterFiles:
    base: Path
    secret_file: Path
    tokens_file: Path
    admin_token: str
    extra_tokens: Mapping[str, str] = field(default_factory=dict)  # token -> role

    def data_dir(self, node_id: int) -> Path:
        return self.base / f"node{node_id}"

    def log_file(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"


def prepare_files(base: Path) -> ClusterFiles:
    """The cluster secret and an admin token (kept if `base` already has them)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "logs").mkdir(exist_ok=True)
    secret_file = base / "cluster.secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32) + "\n")
        secret_file.chmod(0o600)
    token_file = base / "admin.token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24) + "\n")
        token_file.chmod(0o600)
    admin_token = token_file.read_text().strip()
    tokens_file = base / "tokens.toml"
    tokens_file.write_text(f'"{hash_token(admin_token)}" = "admin"\n')
    return ClusterFiles(base, secret_file, tokens_file, admin_token)


def node_argv(
    spec: NodeSpec,
    members: Sequence[NodeSpec],
    files: ClusterFiles,
    *,
    fsync: str = "always",
    join: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "raftsched.cli",
        "node",
        "--node-id",
        str(spec.node_id),
        "--data-dir",
        str(files.data_dir(spec.node_id)),
        "--peer-addr",
        spec.peer_addr,
        "--http-addr",
        f"{HOST}:{spec.http_port}",
        "--secret-file",
        str(files.secret_file),
        "--tokens-file",
        str(files.tokens_file),
        "--fsync",
        fsync,
    ]
    for other in members:
        if other.node_id != spec.node_id:
            argv += ["--peer", f"{other.node_id}={other.peer_addr},{other.url}"]
    if join:
        argv.append("--join")
    argv += list(extra)
    return argv


def get_json(url: str, *, timeout_s: float = 1.0, token: str | None = None) -> Any:
    """GET a JSON document; None when the node does not answer (down, starting, 5xx)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None

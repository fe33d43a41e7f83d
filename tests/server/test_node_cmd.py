"""`raftsched node` refuses to start with one clear line: a bad config names the key, a data dir
of another node or cluster says so, a port in use names the address. Also the config loader
itself (flags over file, defaults, auth rules)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raftsched.server.config import ConfigError, load_config
from tests.server.procs import LocalCluster, free_ports
from tests.server.transport_support import self_signed

SECRET = "0123456789abcdef0123456789abcdef"


def _run(args: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftsched.cli", "node", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _flags(tmp: Path, node_id: int = 1, *, data: str = "data") -> list[str]:
    secret = tmp / "secret"
    secret.write_text(SECRET)
    http, peer = free_ports(2)
    return [
        "--node-id",
        str(node_id),
        "--data-dir",
        str(tmp / data),
        "--peer-addr",
        f"127.0.0.1:{peer}",
        "--http-addr",
        f"127.0.0.1:{http}",
        "--secret-file",
        str(secret),
    ]


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'node_id = 1\ndata_dir = "d"\npeer_addr = "127.0.0.1:1"\n'
        'http_addr = "127.0.0.1:2"\nsecret = "' + SECRET + '"\n'
        "[limits]\nmax_inflight_proposals = -3\n"
    )
    res = _run(["--config", str(cfg)])
    assert res.returncode == 2
    assert "limits.max_inflight_proposals" in res.stderr
    cfg.write_text('node_id = 1\ndata_dir = "d"\npeer_addr = "nope"\nhttp_addr = "h:2"\n')
    res = _run(["--config", str(cfg)])
    assert res.returncode == 2 and "'peer_addr'" in res.stderr


def test_port_in_use_is_named(tmp_path: Path) -> None:
    flags = _flags(tmp_path)
    http_addr = flags[flags.index("--http-addr") + 1]
    host, port = http_addr.rsplit(":", 1)
    with socket.socket() as busy:
        busy.bind((host, int(port)))
        busy.listen()
        res = _run(flags)
    assert res.returncode == 1
    assert f"cannot listen for HTTP on {http_addr}" in res.stderr


def test_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    first = _flags(tmp_path, node_id=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftsched.cli", "node", *first],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "serving:" in line:
                break
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    res = _run(_flags(tmp_path, node_id=2))
    assert res.returncode == 1
    assert "refusing to start" in res.stderr and "node" in res.stderr


def test_flags_override_file_and_auth_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'node_id = 1\ndata_dir = "d"\npeer_addr = "127.0.0.1:9101"\n'
        'http_addr = "127.0.0.1:8101"\nsecret = "' + SECRET + '"\n'
        '[peers.2]\npeer_addr = "127.0.0.1:9102"\nhttp_url = "http://127.0.0.1:8102"\n'
        "[raft]\ntick_ms = 20\n"
    )
    config = load_config(cfg, {"fsync": "never", "raft": {"election_ticks": 30}})
    assert config.fsync == "never" and config.raft.tick_ms == 20
    assert config.raft.election_ticks == 30
    assert config.initial_voters == {1, 2}
    assert not config.auth  # loopback
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {"http_addr": "0.0.0.0:8101"})
    assert info.value.key == "tokens"  # auth on by default off loopback, and no token
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {"typo_key": 1})
    assert info.value.key == "typo_key"


def test_peers_over_mutual_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)  # its own CA: every node presents the same cert
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(cert)]
    with LocalCluster(tmp_path / "tls", nodes=3, extra_args=tls) as cluster:
        leader = cluster.wait_for_leader(timeout_s=30)
        follower = cluster.followers(leader)[0]
        res = cluster.post(follower, "/v1/jobs", {"id": "over-tls", "queue": "q"})
        assert res.status == 201, res.body
        assert cluster.get(leader, "/v1/jobs/over-tls").status == 200
    bad = _run(
        [
            *_flags(tmp_path, data="bad-tls"),
            "--tls-cert",
            str(tmp_path / "missing.pem"),
            "--tls-key",
            str(key),
            "--tls-ca",
            str(cert),
        ]
    )
    assert bad.returncode == 2 and "tls.cert_file" in bad.stderr


def test_joined_then_removed_node_stops_cleanly_and_silent_learners_stay_learners(
    tmp_path: Path,
) -> None:
    with LocalCluster(tmp_path / "join", nodes=3) as cluster:
        leader = cluster.wait_for_leader(timeout_s=30)
        # A learner that never answers (nothing listens there) is not promoted, although a
        # short log is within the promotion lag bound at once.
        dead_peer, dead_http = free_ports(2)
        res = cluster.post(
            leader,
            "/v1/cluster/members",
            {
                "node_id": 5,
                "peer_addr": f"127.0.0.1:{dead_peer}",
                "http_url": f"http://127.0.0.1:{dead_http}",
            },
        )
        assert res.status == 202, res.body
        spec = cluster.add_node(4)
        res = cluster.post(
            leader,
            "/v1/cluster/members",
            {"node_id": 4, "peer_addr": spec.peer_addr, "http_url": spec.url},
        )
        assert res.status == 202, res.body

        def members() -> dict[int, bool]:
            st = cluster.status(cluster.wait_for_leader())
            return {m["node_id"]: m["voter"] for m in st["members"]} if st else {}

        cluster.wait_until("node 4 to be a voter", lambda: members().get(4) is True, 30)
        assert members()[5] is False
        for gone in (4, 5):
            res = cluster.request(
                cluster.wait_for_leader(), "DELETE", f"/v1/cluster/members/{gone}"
            )
            assert res.status == 200, res.body
        assert cluster.terminate(4) == 0, cluster.logs()
        del cluster.nodes[4]

"""A real cluster with auth on: the worker runs jobs with a `worker` token, the CLI submits with
a `submit` token and reads with a `read` one, and refusals are exit status 1 (401/403)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from raftsched.cli import main as cli_main
from raftsched.client import Client, Unauthorized
from raftsched.server.auth import hash_token
from raftsched.server.local_nodes import get_json
from tests.server.procs import LocalCluster
from tests.worker.helpers import start_worker, stop

ROLES = ("submit", "worker", "read")


class AuthCluster(LocalCluster):
    """LocalCluster whose leader polls carry the admin token."""

    def status(self, node_id: int) -> dict[str, Any] | None:
        if not self.alive(node_id) or self.nodes[node_id].paused:
            return None
        doc = get_json(
            f"{self.url(node_id)}/v1/cluster", timeout_s=1.0, token=self.files.admin_token
        )
        return doc if isinstance(doc, dict) else None


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    cluster = AuthCluster(tmp_path_factory.mktemp("e2e-auth"), nodes=3, extra_args=["--auth"])
    tokens = {role: secrets.token_urlsafe(16) for role in ROLES}
    with cluster.files.tokens_file.open("a") as f:
        for role, token in tokens.items():
            f.write(f'"{hash_token(token)}" = "{role}"\n')
    try:
        cluster.start()
        cluster.wait_for_leader(timeout_s=30)
        yield ",".join(cluster.urls), tokens
    finally:
        cluster.stop()


def cli_json(capsys: pytest.CaptureFixture[str], command: str, *argv: str) -> tuple[int, Any]:
    rc = cli_main([command, "--json", *argv])
    return rc, json.loads(capsys.readouterr().out)


def test_roles_for_the_worker_and_the_cli(
    secured: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    urls, tokens = secured
    worker = start_worker(urls, ["auth-q"], extra=["--token", tokens["worker"]])
    try:
        rc, job = cli_json(
            capsys, "submit", "auth-q", "--cluster", urls, "--token", tokens["submit"],
            "--wait", "30", "--", "echo", "authorised",
        )  # fmt: skip
        assert rc == 0 and job["state"] == "succeeded", job
        assert job["result"]["stdout"] == "authorised\n"
        rc, shown = cli_json(capsys, "jobs", "show", job["id"], "--cluster", urls,
                             "--token", tokens["read"])  # fmt: skip
        assert rc == 0 and shown["id"] == job["id"]
        rc, refused = cli_json(capsys, "submit", "auth-q", "--cluster", urls,
                               "--token", tokens["read"], "--payload", "1")  # fmt: skip
        assert rc == 1 and refused["error"]["status"] == 403
        rc, refused = cli_json(capsys, "queues", "--cluster", urls, "--token", "nope")
        assert rc == 1 and refused["error"]["status"] == 401
        with Client(urls, token=tokens["worker"]) as c, pytest.raises(Unauthorized):
            c.submit("auth-q", None)  # the worker role may not submit
    finally:
        stop(worker)

"""The operator CLI against the fake API: --json shapes, human output, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftsched.cli import main, relative, table
from tests.client.fake_api import FakeApi, free_port


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApi]:
    with FakeApi() as fake:
        yield fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_json(capsys: pytest.CaptureFixture[str], api: FakeApi, *argv: str) -> tuple[int, Any]:
    rc, out, _ = run(capsys, argv[0], "--cluster", api.url, "--json", *argv[1:])
    return rc, json.loads(out)


JOB_KEYS = {
    "id",
    "queue",
    "state",
    "payload",
    "attempts",
    "max_attempts",
    "token",
    "events",
    "result",
    "error",
    "created_at",
}


def test_submit_show_list_cancel_json(capsys: pytest.CaptureFixture[str], api: FakeApi) -> None:
    rc, job = run_json(capsys, api, "submit", "cq", "--id", "c1", "--payload", '{"x": 1}')
    assert rc == 0 and set(job) >= JOB_KEYS and job["id"] == "c1" and job["state"] == "pending"
    rc, job = run_json(capsys, api, "submit", "cq", "--id", "c2", "--", "echo", "hi there")
    assert rc == 0 and job["payload"] == {"cmd": ["echo", "hi there"]}
    rc, job = run_json(capsys, api, "submit", "cq", "--id", "c3", "--call", "m:f", "--args", "[1]")
    assert job["payload"] == {"call": "m:f", "args": [1], "kwargs": {}}
    rc, shown = run_json(capsys, api, "jobs", "show", "c1")
    assert rc == 0 and shown["id"] == "c1" and shown["events"]
    rc, page = run_json(capsys, api, "jobs", "--queue", "cq", "--limit", "2")
    assert set(page) == {"jobs", "next_after"} and [j["id"] for j in page["jobs"]] == ["c1", "c2"]
    rc, cancelled = run_json(capsys, api, "cancel", "c3")
    assert rc == 0 and cancelled["state"] == "cancelled"


def test_human_output(capsys: pytest.CaptureFixture[str], api: FakeApi) -> None:
    run(capsys, "submit", "hq", "--id", "h1", "--payload", "1", "--cluster", api.url)
    rc, out, _ = run(capsys, "submit", "hq", "--id", "h2", "--payload", "2", "--cluster", api.url)
    assert rc == 0 and out.startswith("submitted h2 to hq: pending")
    rc, out, _ = run(capsys, "jobs", "--queue", "hq", "--cluster", api.url)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "QUEUE", "STATE", "ATTEMPTS"]
    assert lines[1].split()[:3] == ["h1", "hq", "pending"] and "\x1b[" not in out
    rc, out, _ = run(capsys, "jobs", "show", "h1", "--cluster", api.url)
    assert "state" in out and "events:" in out
    rc, out, _ = run(capsys, "queues", "--cluster", api.url)
    assert out.splitlines()[0].split()[:3] == ["QUEUE", "STATUS", "PENDING"]
    assert any(line.split()[:3] == ["hq", "active", "2"] for line in out.splitlines())
    rc, out, _ = run(capsys, "cluster", "--cluster", api.url)
    assert "role leader" in out and "MEMBER" in out


def test_queues_workers_schedules_json(capsys: pytest.CaptureFixture[str], api: FakeApi) -> None:
    rc, doc = run_json(capsys, api, "queues", "pause", "pq")
    assert rc == 0
    rc, doc = run_json(capsys, api, "queues")
    assert next(q for q in doc["queues"] if q["name"] == "pq")["config"]["paused"] is True
    rc, doc = run_json(capsys, api, "workers")
    assert rc == 0 and set(doc) == {"workers"}
    rc, doc = run_json(
        capsys,
        api,
        "schedules",
        "put",
        "s1",
        "--cron",
        "*/5 * * * *",
        "--template",
        '{"queue": "sq"}',
    )
    assert rc == 0
    rc, doc = run_json(capsys, api, "schedules")
    assert [s["name"] for s in doc["schedules"]] == ["s1"]
    rc, doc = run_json(
        capsys,
        api,
        "schedules",
        "backfill",
        "s1",
        "--from",
        "2026-01-01T00:00",
        "--to",
        "2026-01-01T00:12",
    )
    assert rc == 0 and len(doc["created"]) >= 2 and doc["created"][0].startswith("s1@")
    rc, doc = run_json(capsys, api, "schedules", "delete", "s1")
    assert rc == 0


def test_exit_codes(capsys: pytest.CaptureFixture[str], api: FakeApi) -> None:
    rc, doc = run_json(capsys, api, "jobs", "show", "missing")
    assert rc == 1 and doc["error"]["code"] == "not_found" and doc["error"]["status"] == 404
    rc, doc = run_json(capsys, api, "submit", "eq", "--max-attempts", "0")
    assert rc == 1 and doc["error"]["details"]["field"] == "max_attempts"
    rc, _, err = run(capsys, "submit", "eq", "--payload", "{bad", "--cluster", api.url)
    assert rc == 2 and "not valid JSON" in err
    rc, _, err = run(capsys, "jobs", "--bogus-flag", "--cluster", api.url)
    assert rc == 2 and "usage" in err
    rc, _, err = run(
        capsys, "workers", "--cluster", f"http://127.0.0.1:{free_port()}", "--timeout", "0.3"
    )
    assert rc == 3 and "unavailable" in err
    rc, _out, err = run(capsys, "workers", "--cluster", "")
    assert rc == 2


def test_env_cluster_and_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeApi(token="tok") as api:
        monkeypatch.setenv("RAFTSCHED_CLUSTER", api.url)
        monkeypatch.setenv("RAFTSCHED_TOKEN", "tok")
        rc, out, _ = run(capsys, "workers", "--json")
        assert rc == 0 and json.loads(out) == {"workers": []}
        monkeypatch.setenv("RAFTSCHED_TOKEN", "nope")
        rc, out, _ = run(capsys, "workers", "--json")
        assert rc == 1 and json.loads(out)["error"]["status"] == 401


def test_backup_is_written_and_verified(
    capsys: pytest.CaptureFixture[str], api: FakeApi, tmp_path: Path
) -> None:
    target = tmp_path / "b.snap"
    rc, doc = run_json(capsys, api, "backup", str(target))
    assert rc == 0 and doc["bytes"] == target.stat().st_size > 0 and len(doc["sha256"]) == 64


def test_helpers() -> None:
    assert relative(1000, now_ms=61_000) == "1m ago"
    assert relative(10_000, now_ms=5_000) == "in 5s"
    assert relative(None) == "-"
    assert table(["a", "bb"], [["xyz", None]]) == "A    BB\nxyz  -"


def test_delegated_command_missing_module_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftsched import cli

    monkeypatch.setitem(cli.DELEGATED, "node", ("raftsched.server.no_such_module", "x"))
    rc, _, err = run(capsys, "node")
    assert rc == 2 and "not available" in err


def test_queue_show_config_partial_and_schedule_show(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    rc, _ = run_json(capsys, api, "queues", "config", "xq", "--max-in-flight", "4")
    assert rc == 0
    rc, _ = run_json(capsys, api, "queues", "pause", "xq")
    rc, doc = run_json(capsys, api, "queues", "show", "xq")
    assert rc == 0 and doc["config"]["max_in_flight"] == 4 and doc["config"]["paused"] is True
    rc, _ = run_json(capsys, api, "queues", "config", "xq", "--reset", "max_in_flight")
    rc, doc = run_json(capsys, api, "queues", "show", "xq")
    assert doc["config"]["max_in_flight"] is None and doc["config"]["paused"] is True
    rc, out, _ = run(capsys, "queues", "show", "xq", "--cluster", api.url)
    assert rc == 0 and out.splitlines()[1].split()[:2] == ["xq", "paused"]
    rc, doc = run_json(capsys, api, "queues", "show", "nope")
    assert rc == 1 and doc["error"]["status"] == 404
    run_json(
        capsys, api, "schedules", "put", "sx", "--cron", "0 * * * *", "--template", '{"queue": "q"}'
    )
    rc, doc = run_json(capsys, api, "schedules", "show", "sx")
    assert rc == 0 and doc["name"] == "sx" and doc["cron"] == "0 * * * *"

"""End to end: ONE real 3-node cluster (tests/server/procs.py LocalCluster, fsync always) for the
whole module, real `raftsched worker` processes, the client, the decorator API and the CLI.

Every process is started and stopped by pid; every wait has a deadline (no fixed sleeps). Tests
use their own queues, so their order does not matter, except the cron test, which kills the
leader with -9 and restarts it (it runs last, and leaves three nodes running).
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import raftsched
from raftsched.cli import main as cli_main
from raftsched.client import Client, Job, StaleToken
from tests.server.procs import LocalCluster, free_ports
from tests.worker import tasks
from tests.worker.helpers import pid_alive, start_worker, stop, wait_for

SHARED_QUEUES = ["e2e-shell", "e2e-py", "e2e-slow", "deco"]
NO_BACKOFF = {"initial_ms": 0, "max_ms": 0}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("e2e-cluster"), nodes=3)
    try:
        c.start()
        c.wait_for_leader(timeout_s=30)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def urls(cluster: LocalCluster) -> str:
    return ",".join(cluster.urls)


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-worker") / "worker.log"


@pytest.fixture(scope="module")
def worker(urls: str, worker_log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(
        urls, SHARED_QUEUES, extra=["--import", "tests.worker.tasks"], log=worker_log
    )
    try:
        yield proc
    finally:
        stop(proc)


@pytest.fixture
def client(urls: str) -> Iterator[Client]:
    with Client(urls, timeout_s=15.0) as c:
        yield c


def leased_tokens(job: Job) -> list[int]:
    return [e["token"] for e in job.raw["events"] if e["state"] == "leased"]


def read_if_any(path: Path) -> str | None:
    text = path.read_text().strip() if path.exists() else ""
    return text or None


def log_line(path: Path, prefix: str) -> str:
    """The first log line starting with `prefix` (after the timestamp), once it is written."""

    def find() -> str | None:
        for line in path.read_text(errors="replace").splitlines():
            if prefix in line:
                return line
        return None

    return wait_for(f"{prefix!r} in {path}", find, timeout=20)


# -- jobs run by a real worker ------------------------------------------------------------------


def test_shell_and_python_jobs_complete_with_results(
    client: Client, worker: subprocess.Popen[bytes], worker_log: Path
) -> None:
    client.submit("e2e-shell", {"cmd": ["sh", "-c", "echo hi $RAFTSCHED_JOB_ID"]}, id="sh1")
    client.submit("e2e-py", {"call": "tests.worker.tasks:add", "args": [20, 22]}, id="py1")
    client.submit("e2e-py", {"call": "tests.worker.tasks:whoami"}, id="py2")
    shell = client.wait("sh1", timeout_s=20)
    assert shell.state == "succeeded", shell.raw
    assert shell.result["exit_code"] == 0 and shell.result["stdout"] == "hi sh1\n"
    assert client.wait("py1", timeout_s=20).result == 42
    who = client.wait("py2", timeout_s=20)
    assert who.result == {"job_id": "py2", "attempt": 1, "token": who.token, "queue": "e2e-py"}
    assert who.token == leased_tokens(who)[-1] > 0
    end = log_line(worker_log, "job end id=sh1 ")
    assert "attempt=1" in end and f"token={shell.token}" in end and "outcome=succeeded" in end


def test_fails_once_then_succeeds_with_a_larger_token(
    client: Client, worker: subprocess.Popen[bytes]
) -> None:
    client.submit(
        "e2e-py",
        {"call": "tests.worker.tasks:fail_first"},
        id="ff1",
        max_attempts=3,
        backoff=NO_BACKOFF,
    )
    job = client.wait("ff1", timeout_s=20)
    assert job.state == "succeeded" and job.attempts == 2, job.raw
    first, second = leased_tokens(job)
    assert second > first and job.result == {"attempt": 2, "token": second}


def test_timeout_kills_the_child_and_its_child_then_retries(
    client: Client, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = (
        f'if [ "$RAFTSCHED_ATTEMPT" = 1 ]; then sleep 60 & echo $! > {pids}; wait; fi; echo second'
    )
    client.submit(
        "e2e-slow",
        {"cmd": ["sh", "-c", script]},
        id="to1",
        timeout_ms=1000,
        max_attempts=2,
        backoff=NO_BACKOFF,
    )
    grandchild = int(wait_for("the first attempt's sleep", lambda: read_if_any(pids)))
    job = client.wait("to1", timeout_s=20)
    assert job.state == "succeeded" and job.attempts == 2, job.raw
    assert job.result["stdout"] == "second\n"
    wait_for("the timed-out sleep to be gone", lambda: not pid_alive(grandchild), timeout=5)
    first, second = leased_tokens(job)
    assert second > first


def test_a_crashing_python_job_takes_only_its_child_down(
    client: Client, worker: subprocess.Popen[bytes]
) -> None:
    client.submit(
        "e2e-py", {"call": "tests.worker.tasks:crash", "args": [7]}, id="cr1", max_attempts=1
    )
    job = client.wait("cr1", timeout_s=20)
    assert job.state == "dead" and job.error["kind"] == "crash" and job.error["exit_code"] == 7
    assert worker.poll() is None  # the worker lives on and runs the next job
    client.submit("e2e-py", {"call": "tests.worker.tasks:add", "args": [1, 1]}, id="cr2")
    assert client.wait("cr2", timeout_s=20).result == 2


def test_decorator_round_trip(urls: str, worker: subprocess.Popen[bytes]) -> None:
    with Client(urls, timeout_s=15.0) as c:
        h = tasks.multiply.submit(6, 7, client=c)
        assert h.result(timeout=20) == 42 and h.status() == "succeeded"
        later = tasks.multiply.submit(2, 5, after=[h], client=c)
        assert later.result(timeout=20) == 10
        assert c.get_job(later.id).raw["depends_on"] == [h.id]
        boom = tasks.explode.submit("kaboom", client=c)
        with pytest.raises(raftsched.TaskFailed) as info:
            boom.result(timeout=20)
        assert "ValueError: kaboom" in str(info.value) and info.value.job.state == "dead"
        assert info.value.job.error["type"] == "ValueError"


# -- worker failures ----------------------------------------------------------------------------


def test_sigkilled_worker_job_is_re_leased_after_registration_expiry_and_completed_once(
    client: Client, urls: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f"echo $RAFTSCHED_FENCING_TOKEN >> {runs}; sleep 1"
    first = start_worker(urls, ["e2e-kill"], concurrency=1)
    second = None
    try:
        # A long lease: only the worker's registration expiring (ttl 2 s) can free it.
        client.submit("e2e-kill", {"cmd": ["sh", "-c", script]}, id="k1", lease_ms=60_000)
        wait_for("the first run", lambda: read_if_any(runs))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(urls, ["e2e-kill"], concurrency=1, log=tmp_path / "second.log")
        job = client.wait("k1", timeout_s=30)
        assert job.state == "succeeded", job.raw
        tokens = [int(t) for t in runs.read_text().split()]
        assert len(tokens) == 2 and tokens[1] > tokens[0]
        assert leased_tokens(job) == tokens and job.token == tokens[1]
        assert [e["state"] for e in job.raw["events"]].count("succeeded") == 1
        end = log_line(tmp_path / "second.log", "job end id=k1 ")
        assert f"token={tokens[1]}" in end and "outcome=succeeded" in end
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_stale_worker_completion_is_refused_and_the_task_saw_its_token(
    client: Client, urls: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f"echo $RAFTSCHED_FENCING_TOKEN >> {runs}; sleep 2; echo done"
    frozen = start_worker(urls, ["e2e-stale"], concurrency=1, log=tmp_path / "frozen.log")
    other = None
    try:
        client.submit("e2e-stale", {"cmd": ["sh", "-c", script]}, id="st1", lease_ms=1000)
        wait_for("the first run", lambda: read_if_any(runs))
        frozen.send_signal(signal.SIGSTOP)  # its lease and registration expire meanwhile
        other = start_worker(urls, ["e2e-stale"], concurrency=1)
        job = client.wait("st1", timeout_s=30)
        assert job.state == "succeeded", job.raw
        frozen.send_signal(signal.SIGCONT)
        tokens = [int(t) for t in runs.read_text().split()]
        assert tokens == leased_tokens(job) and len(tokens) >= 2
        assert job.token == tokens[-1] > tokens[0]
        end = log_line(tmp_path / "frozen.log", "job end id=st1 ")
        assert f"token={tokens[0]}" in end
        assert "lease_lost" in end or "refused" in end, end
        with pytest.raises(StaleToken):  # the old token's completion, sent by hand
            client.complete("st1", tokens[0], {"late": True})
        after = client.get_job("st1")
        assert after.token == job.token and after.result == job.result
    finally:
        if frozen.poll() is None:
            frozen.send_signal(signal.SIGCONT)
        stop(frozen)
        if other is not None:
            stop(other)


def test_sigterm_drain_loses_nothing(client: Client, urls: str, tmp_path: Path) -> None:
    proc = start_worker(urls, ["e2e-drain"], concurrency=2, log=tmp_path / "drain.log")
    try:
        for i in range(2):
            client.submit(
                "e2e-drain", {"call": "tests.worker.tasks:sleep", "args": [1.5]}, id=f"dr{i}"
            )
        wait_for(
            "both leased",
            lambda: all(client.get_job(f"dr{i}").state == "leased" for i in range(2)),
        )
        proc.send_signal(signal.SIGTERM)
        client.submit("e2e-drain", {"cmd": ["true"]}, id="dr-later")
        assert proc.wait(20) == 0
        assert [client.get_job(f"dr{i}").state for i in range(2)] == ["succeeded"] * 2
        later = client.get_job("dr-later")
        assert later.state == "pending" and later.attempts == 0, later.raw  # never leased
        assert later.result is None
    finally:
        stop(proc)


def test_a_job_outliving_the_drain_grace_is_handed_to_another_worker(
    client: Client, urls: str, tmp_path: Path
) -> None:
    script = 'if [ "$RAFTSCHED_ATTEMPT" = 1 ]; then sleep 30; fi; echo attempt $RAFTSCHED_ATTEMPT'
    first = start_worker(urls, ["e2e-grace"], concurrency=1, extra=["--drain-grace", "0.5"])
    second = None
    try:
        client.submit("e2e-grace", {"cmd": ["sh", "-c", script]}, id="gr1", backoff=NO_BACKOFF)
        wait_for("the first attempt", lambda: client.get_job("gr1").state == "leased")
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
        stopped = client.get_job("gr1")
        assert stopped.state in ("pending", "scheduled") and stopped.attempts == 1, stopped.raw
        assert stopped.error == {"kind": "worker_stopped"}
        second = start_worker(urls, ["e2e-grace"], concurrency=1)
        job = client.wait("gr1", timeout_s=20)
        assert job.state == "succeeded" and job.result["stdout"] == "attempt 2\n", job.raw
    finally:
        stop(first)
        if second is not None:
            stop(second)


# -- the CLI ------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def cli_json(capsys: pytest.CaptureFixture[str], urls: str, *argv: str) -> tuple[int, Any]:
    rc, out, err = cli(capsys, argv[0], "--cluster", urls, "--json", *argv[1:])
    assert out, err
    return rc, json.loads(out)


def test_cli_against_the_live_cluster(
    capsys: pytest.CaptureFixture[str],
    urls: str,
    cluster: LocalCluster,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    rc, job = cli_json(
        capsys,
        urls,
        "submit",
        "e2e-shell",
        "--id",
        "cli1",
        "--wait",
        "20",
        "--",
        "echo",
        "from cli",
    )
    assert rc == 0 and job["id"] == "cli1" and job["state"] == "succeeded", job
    assert job["result"]["stdout"] == "from cli\n" and job["events"]
    rc, shown = cli_json(capsys, urls, "jobs", "show", "cli1")
    assert rc == 0 and shown["id"] == "cli1" and shown["token"] == job["token"]
    rc, page = cli_json(capsys, urls, "jobs", "--queue", "e2e-shell", "--state", "succeeded")
    assert rc == 0 and set(page) == {"jobs", "next_after"}
    assert "cli1" in [j["id"] for j in page["jobs"]]
    rc, queues = cli_json(capsys, urls, "queues")
    assert rc == 0 and set(queues) == {"queues"}
    shell_q = next(q for q in queues["queues"] if q["name"] == "e2e-shell")
    assert set(shell_q) >= {"name", "config", "counts"} and shell_q["counts"]["succeeded"] >= 1
    rc, workers = cli_json(capsys, urls, "workers")
    assert rc == 0 and any("e2e-shell" in w["queues"] for w in workers["workers"])
    rc, view = cli_json(capsys, urls, "cluster")
    assert rc == 0 and view["role"] == "leader"  # the CLI shows the leader's view
    assert len(view["members"]) == 3 and view["leader_id"] == cluster.wait_for_leader()
    rc, status = cli_json(capsys, urls, "status")
    assert rc == 0 and set(status) == {"cluster", "queues"}
    target = tmp_path / "backup.snap"
    rc, backup = cli_json(capsys, urls, "backup", str(target))
    assert rc == 0 and backup["verified_against_node"] is True
    assert backup["bytes"] == target.stat().st_size > 0 and len(backup["sha256"]) == 64

    rc, out, _ = cli(capsys, "cluster", "--cluster", urls)
    assert rc == 0 and "MEMBER" in out and "term" in out
    rc, out, _ = cli(capsys, "jobs", "--queue", "e2e-shell", "--cluster", urls)
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["ID", "QUEUE", "STATE"]

    rc, err_doc = cli_json(capsys, urls, "jobs", "show", "no-such-job")
    assert rc == 1 and err_doc["error"]["status"] == 404
    rc, err_doc = cli_json(capsys, urls, "submit", "e2e-shell", "--max-attempts", "0")
    assert rc == 1 and err_doc["error"]["details"]["field"] == "max_attempts"
    rc, _, err = cli(capsys, "submit", "e2e-shell", "--payload", "{bad", "--cluster", urls)
    assert rc == 2 and "not valid JSON" in err
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    rc, out, err = cli(capsys, "status", "--cluster", dead, "--timeout", "0.5", "--json")
    assert rc == 3 and json.loads(out)["error"]["code"] == "unavailable"


def test_cli_cancel_queues_and_schedules_against_the_live_cluster(
    capsys: pytest.CaptureFixture[str], urls: str
) -> None:
    rc, job = cli_json(capsys, urls, "submit", "e2e-idle", "--id", "cli-c1", "--payload", "1")
    assert rc == 0 and job["state"] == "pending"
    rc, job = cli_json(capsys, urls, "cancel", "cli-c1", "--reason", "not needed")
    assert rc == 0 and job["state"] == "cancelled" and job["id"] == "cli-c1"
    rc, err_doc = cli_json(capsys, urls, "cancel", "cli-c1")
    assert rc == 1 and err_doc["error"]["status"] == 409
    rc, _ = cli_json(capsys, urls, "queues", "config", "e2e-idle", "--max-in-flight", "3")
    rc, _ = cli_json(capsys, urls, "queues", "pause", "e2e-idle")
    rc, queue = cli_json(capsys, urls, "queues", "show", "e2e-idle")
    assert rc == 0 and queue["config"]["max_in_flight"] == 3 and queue["config"]["paused"]
    assert queue["counts"]["cancelled"] == 1
    rc, out, _ = cli(capsys, "queues", "--cluster", urls)
    assert any(line.split()[:2] == ["e2e-idle", "paused"] for line in out.splitlines())
    rc, _ = cli_json(capsys, urls, "queues", "resume", "e2e-idle")
    rc, queue = cli_json(capsys, urls, "queues", "show", "e2e-idle")
    assert queue["config"]["paused"] is False and queue["config"]["max_in_flight"] == 3
    template = '{"queue": "e2e-idle"}'
    rc, _ = cli_json(
        capsys, urls, "schedules", "put", "cli-s", "--cron", "0 3 * * *", "--template", template
    )
    assert rc == 0
    rc, doc = cli_json(capsys, urls, "schedules")
    assert "cli-s" in [s["name"] for s in doc["schedules"]]
    rc, doc = cli_json(capsys, urls, "schedules", "show", "cli-s")
    assert rc == 0 and doc["cron"] == "0 3 * * *" and doc["next_fire_at"] > 0
    rc, out, _ = cli(capsys, "schedules", "--cluster", urls)
    assert out.splitlines()[0].split()[:2] == ["SCHEDULE", "CRON"]
    rc, _ = cli_json(capsys, urls, "schedules", "delete", "cli-s")
    rc, err_doc = cli_json(capsys, urls, "schedules", "show", "cli-s")
    assert rc == 1 and err_doc["error"]["status"] == 404


def test_jobs_running_across_a_leader_kill_complete_exactly_once(
    client: Client, cluster: LocalCluster, worker: subprocess.Popen[bytes]
) -> None:
    ids = [f"lk-{i}" for i in range(12)]
    client.submit_batch(
        [{"id": i, "queue": "e2e-slow", "payload": {"cmd": ["sleep", "0.5"]}} for i in ids]
    )
    wait_for("jobs running", lambda: client.get_job(ids[0]).state != "pending")
    old = cluster.wait_for_leader()
    cluster.kill(old)
    cluster.wait_for_leader(not_=old, timeout_s=20)
    cluster.start_node(old)
    for job_id in ids:
        job = client.wait(job_id, timeout_s=60)
        states = [e["state"] for e in job.raw["events"]]
        assert job.state == "succeeded" and states.count("succeeded") == 1, job.raw
        tokens = leased_tokens(job)
        assert tokens == sorted(set(tokens)) and job.token == tokens[-1]
    cluster.wait_until(
        "the restarted node to follow",
        lambda: (st := cluster.status(old)) is not None and st["leader_id"] not in (None, 0),
    )


# -- cron across a leader kill -9 (last: it moves leadership) -----------------------------------


def fire_times(client: Client, queue: str, schedule: str) -> list[int]:
    page = client.list_jobs(queue=queue, limit=1000)
    assert page.next_after is None
    ids = [j.id for j in page.jobs]
    assert all(i.startswith(f"{schedule}@") for i in ids), ids
    return [int(i.split("@", 1)[1]) for i in ids]


def test_cron_fires_exactly_once_per_fire_time_across_a_leader_kill(
    client: Client, cluster: LocalCluster
) -> None:
    client.put_schedule(
        "every-sec", cron="* * * * * *", template={"queue": "e2e-cron"}, misfire="fire_all"
    )
    wait_for("two fires", lambda: len(fire_times(client, "e2e-cron", "every-sec")) >= 2)
    old = cluster.wait_for_leader()
    cluster.kill(old)
    cluster.wait_for_leader(not_=old, timeout_s=20)
    seen = len(fire_times(client, "e2e-cron", "every-sec"))
    wait_for(
        "three fires under the new leader",
        lambda: len(fire_times(client, "e2e-cron", "every-sec")) >= seen + 3,
    )
    client.delete_schedule("every-sec")
    cluster.start_node(old)
    times = fire_times(client, "e2e-cron", "every-sec")
    assert len(times) == len(set(times))
    ordered = sorted(times)
    assert all(t % 1000 == 0 for t in ordered)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b - a != 1000]
    assert gaps == [], ordered  # every second between the first and last fire, once
    cluster.wait_until(
        "the restarted node to catch up",
        lambda: (st := cluster.status(old)) is not None and st["leader_id"] not in (None, 0),
    )


def test_misfire_policies_across_a_whole_cluster_outage(
    client: Client, cluster: LocalCluster
) -> None:
    """Every node kill -9'd for a few seconds: fire times that fell due while no node was up
    are all fired late under fire_all, at most one under fire_once, none under skip (their
    lateness is past the 500 ms grace); never twice."""
    names = {"skip": "mf-skip", "fire_once": "mf-once", "fire_all": "mf-all"}
    policies = tuple(names)
    for policy, name in names.items():
        client.put_schedule(
            name,
            cron="* * * * * *",
            template={"queue": f"e2e-{name}"},
            misfire=policy,
            misfire_grace_ms=500,
        )

    def times(policy: str) -> list[int]:
        return fire_times(client, f"e2e-{names[policy]}", names[policy])

    wait_for("a fire of each", lambda: all(times(p) for p in policies))
    nodes = list(cluster.running())
    down_ms = int(time.time() * 1000)
    for node in nodes:
        cluster.kill(node)
    outage_end = time.monotonic() + 4.5  # the outage itself is what is tested
    wait_for("the outage to last 4.5 s", lambda: time.monotonic() >= outage_end, timeout=10)
    restart_ms = int(time.time() * 1000)  # no tick can come before this
    for node in nodes:
        cluster.start_node(node)
    cluster.wait_for_leader(timeout_s=30)
    up_ms = int(time.time() * 1000)
    wait_for(
        "two fires of each after the restart",
        lambda: all(sum(t > up_ms for t in times(p)) >= 2 for p in policies),
        timeout=30,
    )
    for name in names.values():
        client.delete_schedule(name)
    # Fire times no node was up to fire on time, each over a second late at the first possible
    # tick (so past the 500 ms grace), with a second of margin after the kill.
    missed = range(-(-(down_ms + 1000) // 1000) * 1000, restart_ms - 1000, 1000)
    assert len(missed) >= 2, (down_ms, restart_ms)
    fired = {p: times(p) for p in policies}
    for policy, got in fired.items():
        assert len(got) == len(set(got)), policy
    all_times = sorted(fired["fire_all"])
    assert [b - a for a, b in itertools.pairwise(all_times) if b - a != 1000] == [], all_times
    assert set(missed) <= set(all_times)
    assert len(set(missed) & set(fired["fire_once"])) <= 1, fired["fire_once"]
    assert set(missed) & set(fired["skip"]) == set(), fired["skip"]

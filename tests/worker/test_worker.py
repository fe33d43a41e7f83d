"""The worker agent as a real process against the fake API (real HTTP, real children).

One fake API and one worker (concurrency 4) are shared by the module; each test uses its own
queue names through the shared worker's queue list."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsched.client import Client, Job
from tests.client.fake_api import FakeApi
from tests.worker.helpers import pid_alive, start_worker, stop, timed_out, wait_for

QUEUES = ["shell", "py", "slow"]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApi]:
    with FakeApi() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="module")
def worker(api: FakeApi, worker_log: Path) -> Iterator[None]:
    proc = start_worker(api.url, QUEUES, extra=["--import", "tests.worker.tasks"], log=worker_log)
    try:
        yield
    finally:
        stop(proc)


@pytest.fixture
def client(api: FakeApi, worker: None) -> Iterator[Client]:
    with Client(api.url, timeout_s=5.0) as c:
        yield c


def finished(client: Client, job_id: str, timeout: float = 20.0) -> Job:
    return client.wait(job_id, timeout_s=timeout)


def test_shell_job_sees_its_token_and_keeps_bounded_tails(client: Client) -> None:
    client.submit(
        "shell",
        {
            "cmd": [
                "sh",
                "-c",
                "echo token=$RAFTSCHED_FENCING_TOKEN "
                "job=$RAFTSCHED_JOB_ID q=$RAFTSCHED_QUEUE; "
                "head -c 100000 /dev/zero | tr '\\0' x >&2",
            ]
        },
        id="s1",
    )
    job = finished(client, "s1")
    assert job.state == "succeeded", job.raw
    assert job.result["exit_code"] == 0
    assert f"token={job.token} job=s1 q=shell" in job.result["stdout"]
    assert len(job.result["stderr"]) == 4096 and job.result["truncated"]


def test_shell_without_a_shell_unless_asked(client: Client) -> None:
    client.submit("shell", {"cmd": ["echo", "$HOME;", "x"]}, id="s2")
    assert finished(client, "s2").result["stdout"] == "$HOME; x\n"
    client.submit("shell", {"cmd": "echo $((1+2))", "shell": True}, id="s3")
    assert finished(client, "s3").result["stdout"] == "3\n"


def test_shell_failure_is_retried_then_dead(client: Client) -> None:
    client.submit(
        "shell",
        {"cmd": ["sh", "-c", "echo oops >&2; exit 3"]},
        id="s4",
        max_attempts=2,
        backoff={"initial_ms": 0, "max_ms": 0},
    )
    job = finished(client, "s4")
    assert job.state == "dead" and job.attempts == 2
    assert job.error["exit_code"] == 3 and "oops" in job.error["stderr"]


def test_python_job_and_context(client: Client) -> None:
    client.submit("py", {"call": "tests.worker.tasks:add", "args": [2, 3]}, id="p1")
    client.submit("py", {"call": "tests.worker.tasks:whoami"}, id="p2")
    assert finished(client, "p1").result == 5
    job = finished(client, "p2")
    assert job.result == {"job_id": "p2", "attempt": 1, "token": job.token, "queue": "py"}


def test_fail_once_then_succeed_with_a_larger_token(client: Client) -> None:
    client.submit(
        "py",
        {"call": "tests.worker.tasks:fail_first"},
        id="p3",
        max_attempts=3,
        backoff={"initial_ms": 0, "max_ms": 0},
    )
    job = finished(client, "p3")
    assert job.state == "succeeded" and job.result["attempt"] == 2
    tokens = [e["token"] for e in job.raw["events"] if e["state"] == "leased"]
    assert len(tokens) == 2 and tokens[1] > tokens[0]
    assert job.result["token"] == tokens[1]


def test_permanent_error_is_not_retried(client: Client) -> None:
    client.submit("py", {"call": "tests.worker.tasks:permanent"}, id="p4", max_attempts=5)
    job = finished(client, "p4")
    assert job.state == "dead" and job.attempts == 1
    assert job.error["type"] == "Permanent"


def test_bad_payload_fails_without_retry(client: Client) -> None:
    client.submit("py", {"nothing": 1}, id="p5", max_attempts=3)
    job = finished(client, "p5")
    assert job.state == "dead" and job.attempts == 1 and job.error["kind"] == "bad_payload"


def test_timeout_kills_the_process_group_and_retries(client: Client, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! >> {pids}; wait"
    client.submit(
        "slow",
        {"cmd": ["sh", "-c", script]},
        id="t1",
        timeout_ms=1000,
        max_attempts=2,
        backoff={"initial_ms": 0, "max_ms": 0},
    )
    job = finished(client, "t1")
    assert job.state == "dead" and job.attempts == 2 and timed_out(job.error), job.raw
    grandchildren = [int(p) for p in pids.read_text().split()]
    assert len(grandchildren) == 2, job.raw
    wait_for("the sleeps to be killed", lambda: not any(pid_alive(p) for p in grandchildren))


def test_lease_lost_stops_the_child_and_reports_nothing(
    client: Client, api: FakeApi, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    client.submit(
        "slow", {"cmd": ["sh", "-c", f"echo $$ > {marker}; sleep 60"]}, id="l1", lease_ms=1500
    )
    text = wait_for("the job to start", lambda: marker.exists() and marker.read_text().strip())
    pid = int(str(text))
    client.cancel("l1")  # the lease is gone: the next renewal is refused with 409
    wait_for("the child to be killed", lambda: not pid_alive(pid))
    job = client.get_job("l1")
    assert job.state == "cancelled" and job.result is None and job.error is None
    reports = [r for r in api.requests if r[1] in ("/v1/jobs/l1/complete", "/v1/jobs/l1/fail")]
    assert reports == []
    assert not any("l1" in batch for batch in api.batched_reports)


def test_log_lines_per_job(client: Client, worker_log: Path) -> None:
    client.submit("py", {"call": "tests.worker.tasks:add", "args": [1, 1]}, id="log1")
    job = finished(client, "log1")

    def ended() -> str | None:
        log = worker_log.read_text()
        return log if "job end id=log1 " in log else None

    text = wait_for("the end line", ended)
    assert f"job start id=log1 attempt=1 token={job.token} queue=py" in text
    assert "outcome=succeeded" in text


def test_sigterm_drains_without_losing_jobs(api: FakeApi, tmp_path: Path) -> None:
    proc = start_worker(api.url, ["drain"], concurrency=2, log=tmp_path / "w.log")
    try:
        with Client(api.url, timeout_s=5.0) as c:
            for i in range(2):
                c.submit("drain", {"call": "tests.worker.tasks:sleep", "args": [1.0]}, id=f"d{i}")
            wait_for(
                "both leased", lambda: all(c.get_job(f"d{i}").state == "leased" for i in range(2))
            )
            c.submit("drain", {"cmd": ["true"]}, id="d-later")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            assert [c.get_job(f"d{i}").state for i in range(2)] == ["succeeded"] * 2
            later = c.get_job("d-later")
            assert later.state == "pending" and later.attempts == 0, later.raw  # never leased
    finally:
        stop(proc)


def test_sigkilled_worker_job_is_re_leased_and_completed_once(api: FakeApi, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    script = f"echo $RAFTSCHED_FENCING_TOKEN >> {runs}; sleep 1"
    first = start_worker(api.url, ["killq"], concurrency=1)
    second = None
    try:
        with Client(api.url, timeout_s=5.0) as c:
            c.submit("killq", {"cmd": ["sh", "-c", script]}, id="k1", lease_ms=60_000)
            wait_for("the first run", lambda: runs.exists() and runs.read_text().strip())
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            # The lease is long: only the worker's registration expiring (ttl 2 s) frees it.
            second = start_worker(api.url, ["killq"], concurrency=1)
            job = c.wait("k1", timeout_s=30)
            assert job.state == "succeeded", job.raw
            tokens = [int(t) for t in runs.read_text().split()]
            assert len(tokens) == 2 and tokens[1] > tokens[0]
            assert job.token == tokens[1]
            singles = [r for r in api.requests if r[1] == "/v1/jobs/k1/complete"]
            batched = [b for b in api.batched_reports if "k1" in b]
            assert len(singles) + len(batched) == 1
            assert [e["state"] for e in job.raw["events"]].count("succeeded") == 1
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_stale_worker_completion_is_refused(api: FakeApi, tmp_path: Path) -> None:
    """A worker frozen past its lease (SIGSTOP) wakes up after another worker finished the job:
    its report is refused or never sent, and the job's result is the second run's."""
    runs = tmp_path / "runs"
    script = f"echo $RAFTSCHED_FENCING_TOKEN >> {runs}; sleep 2; echo done"
    frozen = start_worker(api.url, ["stale"], concurrency=1, log=tmp_path / "frozen.log")
    other = None
    try:
        with Client(api.url, timeout_s=5.0) as c:
            c.submit("stale", {"cmd": ["sh", "-c", script]}, id="st1", lease_ms=1000)
            wait_for("the first run", lambda: runs.exists() and runs.read_text().strip())
            frozen.send_signal(signal.SIGSTOP)
            other = start_worker(api.url, ["stale"], concurrency=1)
            job = c.wait("st1", timeout_s=30)
            assert job.state == "succeeded"
            frozen.send_signal(signal.SIGCONT)
            tokens = [int(t) for t in runs.read_text().split()]
            assert len(tokens) >= 2 and job.token == tokens[-1] > tokens[0]

            def frozen_ended() -> str | None:
                log = (tmp_path / "frozen.log").read_text()
                return log if "job end id=st1 " in log else None

            log = wait_for("the frozen worker to give the job up", frozen_ended)
            end = log.split("job end id=st1 ")[1].splitlines()[0]
            assert f"token={tokens[0]}" in end
            assert "lease_lost" in end or "refused" in end, end
            assert c.get_job("st1").token == job.token  # unchanged by the stale worker
    finally:
        if frozen.poll() is None:
            frozen.send_signal(signal.SIGCONT)
        stop(frozen)
        if other is not None:
            stop(other)


def test_short_jobs_are_leased_in_batches(api: FakeApi, tmp_path: Path) -> None:
    """Slots free up one completion at a time; the lease linger makes one lease request fill
    a quarter of the slots (or more) instead of one slot each: far fewer requests than jobs."""
    proc = start_worker(
        api.url,
        ["linger"],
        concurrency=16,
        log=tmp_path / "w.log",
        extra=["--lease-linger-ms", "300"],
    )
    try:
        with Client(api.url, timeout_s=5.0) as c:
            sleep = "tests.worker.tasks:sleep"
            c.submit_batch(
                [
                    {
                        "id": f"lg-{i}",
                        "queue": "linger",
                        "payload": {"call": sleep, "args": [i % 4 / 20]},
                    }
                    for i in range(120)
                ]
            )
            wait_for(
                "every job done",
                lambda: c.get_queue("linger")["counts"]["succeeded"] == 120,
                timeout=60,
            )
        leases = [r for r in api.requests if r[:2] == ("POST", "/v1/queues/linger/lease")]
        assert len(leases) <= 120 // 3, len(leases)  # 80 in a run without the linger
    finally:
        stop(proc)


def test_a_report_answered_429_is_retried(client: Client, api: FakeApi) -> None:
    start = len(api.requests)
    api.fail_on["/v1/jobs:complete"] = [429, 429]
    client.submit("py", {"call": "tests.worker.tasks:add", "args": [1, 2]}, id="ov1")
    assert finished(client, "ov1").result == 3
    assert [p for _, p, _ in api.requests[start:]].count("/v1/jobs:complete") == 3
    assert [b for b in api.batched_reports if "ov1" in b] == [["ov1"]]


def test_no_renewals_when_the_lease_already_lasts_to_the_timeout(
    client: Client, api: FakeApi
) -> None:
    """The cluster caps a lease at lease start + timeout_ms: renewing it would only cost log
    entries. A lease shorter than that is renewed as usual."""
    sleep = {"call": "tests.worker.tasks:sleep", "args": [1.2]}
    client.submit("py", sleep, id="hb-capped", timeout_ms=3000)
    client.submit("py", sleep, id="hb-short", lease_ms=600)
    assert finished(client, "hb-capped").state == "succeeded"
    assert finished(client, "hb-short").state == "succeeded"
    paths = [p for _, p, _ in api.requests]
    assert paths.count("/v1/jobs/hb-capped/heartbeat") == 0
    assert paths.count("/v1/jobs/hb-short/heartbeat") >= 2


def test_a_worker_with_a_wrong_token_exits_1_with_the_reason(tmp_path: Path) -> None:
    with FakeApi(token="right") as api:
        log = tmp_path / "w.log"
        proc = start_worker(api.url, ["q"], extra=["--token", "wrong"], log=log)
        try:
            assert proc.wait(30) == 1
        finally:
            stop(proc)
        assert "refused this worker" in log.read_text() and "401" in log.read_text()


def test_reports_finishing_together_share_one_request(api: FakeApi, tmp_path: Path) -> None:
    """Instant jobs leased together finish within the batching window: far fewer report
    requests than jobs, each job reported exactly once, none through the single routes."""
    proc = start_worker(
        api.url,
        ["batchq"],
        concurrency=16,
        log=tmp_path / "w.log",
        extra=["--import", "tests.worker.tasks", "--report-batch-ms", "50"],
    )
    ids = [f"bt-{i}" for i in range(64)]
    try:
        with Client(api.url, timeout_s=5.0) as c:
            add = "tests.worker.tasks:add"
            c.submit_batch(
                [
                    {"id": i, "queue": "batchq", "payload": {"call": add, "args": [1, 2]}}
                    for i in ids
                ]
            )
            wait_for(
                "every job done",
                lambda: c.get_queue("batchq")["counts"]["succeeded"] == 64,
                timeout=60,
            )
        batches = [b for b in api.batched_reports if any(i.startswith("bt-") for i in b)]
        reported = sorted(i for b in batches for i in b)
        assert reported == sorted(ids)  # each job once
        assert len(batches) <= 64 // 4, [len(b) for b in batches]
        singles = [p for _, p, _ in api.requests if p.startswith("/v1/jobs/bt-")]
        assert singles == []
    finally:
        stop(proc)


def test_without_the_batch_route_reports_fall_back_to_single_requests(
    api: FakeApi, tmp_path: Path
) -> None:
    start = len(api.requests)
    api.fail_on["/v1/jobs:complete"] = [404]  # a node that predates the route
    proc = start_worker(api.url, ["oldq"], concurrency=2, log=tmp_path / "w.log")
    try:
        with Client(api.url, timeout_s=5.0) as c:
            for i in range(3):
                c.submit("oldq", {"cmd": ["true"]}, id=f"old-{i}")
            for i in range(3):
                assert c.wait(f"old-{i}", timeout_s=20).state == "succeeded"
        paths = [p for _, p, _ in api.requests[start:]]
        assert paths.count("/v1/jobs:complete") == 1  # tried once, then one by one
        assert all(f"/v1/jobs/old-{i}/complete" in paths for i in range(3))
        assert "batched reports not supported" in (tmp_path / "w.log").read_text()
    finally:
        stop(proc)


def test_the_worker_registers_with_an_incarnation(client: Client, api: FakeApi) -> None:
    process = wait_for(
        "a registered worker with an incarnation",
        lambda: next((w.process for w in api.state.workers.values() if w.process), None),
    )
    host, pid, started = str(process).rsplit(":", 2)
    assert host and int(pid) > 0 and int(started) > 0

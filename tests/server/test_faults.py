"""Faults against a real 3-node cluster: kill -9 (leader, random nodes, all), SIGSTOP/SIGCONT,
a torn WAL tail and a corrupt record. The promise checked each time: every job whose submit
was acknowledged (201/200) is present afterwards, on every node, and reads are never stale.

One cluster is shared by the module (CI time); every test leaves all nodes running, except
the last (a corrupt log keeps its node down by design). Submitters are threads posting jobs
with unique ids to random nodes; a failed submit is retried with the same id (same id and
same spec answers 200), so each id is acknowledged at most once by the client's count.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.procs import ClusterError, LocalCluster

SUBMITTERS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("faults"), nodes=3) as c:
        c.wait_for_leader(timeout_s=30)
        yield c


class Submitters:
    """Threads submitting unique jobs to random live nodes until stopped."""

    def __init__(self, cluster: LocalCluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.acked: set[str] = set()
        self.failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(SUBMITTERS)
        ]

    def __enter__(self) -> Submitters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not self._stop.is_set():
            job_id = f"{self.prefix}-{worker}-{n}"
            n += 1
            while not self._stop.is_set():
                # A copy: the membership tests add nodes while the submitters run.
                nodes = [
                    i
                    for i, node in list(self.cluster.nodes.items())
                    if self.cluster.alive(i) and not node.paused
                ]
                if not nodes:
                    time.sleep(0.05)
                    continue
                try:
                    res = self.cluster.post(
                        rng.choice(nodes),
                        "/v1/jobs",
                        {"id": job_id, "queue": "faults"},
                        timeout_s=5,
                    )
                except OSError:
                    res = None
                if res is not None and res.status in (200, 201):
                    with self._lock:
                        self.acked.add(job_id)
                    break
                with self._lock:
                    self.failures += 1
                time.sleep(0.02)

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        self.cluster.wait_until(
            f"{count} acknowledged submits", lambda: len(self.acked) >= count, timeout_s
        )


def _ids_on(cluster: LocalCluster, node: int, queue: str) -> set[str]:
    """Every job id of `queue` on `node`, read linearizably page by page."""
    ids: set[str] = set()
    after = ""
    while True:
        res = cluster.get(node, f"/v1/jobs?queue={queue}&limit=1000&after={after}")
        assert res.status == 200, (node, res.status, res.body)
        ids.update(job["id"] for job in res.body["jobs"])
        after = res.body.get("next_after") or ""
        if not after:
            return ids


def _assert_all_present(cluster: LocalCluster, ids: set[str], queue: str = "faults") -> None:
    """Every acknowledged id is readable (linearizable reads) on every running node."""
    assert ids, "the test acknowledged nothing"
    for node in [i for i in cluster.nodes if cluster.alive(i)]:
        missing = ids - _ids_on(cluster, node, queue)
        assert not missing, f"node {node} lacks acknowledged jobs {sorted(missing)[:5]}\n" + (
            cluster.logs()
        )


def _all_up(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        if not cluster.alive(node):
            cluster.start_node(node)
    cluster.wait_until(
        "every node to know the leader",
        lambda: all(
            (st := cluster.status(i)) is not None and st.get("leader_id") for i in cluster.nodes
        ),
        30,
    )


def test_kill_leader_under_concurrent_submits_loses_nothing(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    with Submitters(cluster, "kill-leader") as subs:
        subs.wait_for(50)
        cluster.kill(leader)
        killed_at = len(subs.acked)
        new_leader = cluster.wait_for_leader(not_=leader)
        subs.wait_for(killed_at + 50)
    assert new_leader != leader
    cluster.start_node(leader)
    _all_up(cluster)
    _assert_all_present(cluster, subs.acked)


def test_kill_and_restart_random_nodes_in_a_loop(cluster: LocalCluster) -> None:
    rng = random.Random(7)
    with Submitters(cluster, "loop") as subs:
        for round_ in range(4):
            victim = rng.choice(list(cluster.nodes))
            cluster.kill(victim)
            subs.wait_for(20 * (round_ + 1), timeout_s=30)
            cluster.start_node(victim)
            cluster.wait_for_leader(timeout_s=30)
    _all_up(cluster)
    _assert_all_present(cluster, subs.acked)


def test_kill_all_and_restart_keeps_state(cluster: LocalCluster) -> None:
    with Submitters(cluster, "all") as subs:
        subs.wait_for(30)
    for node in cluster.nodes:
        cluster.kill(node)
    for node in cluster.nodes:
        cluster.start_node(node)
    cluster.wait_for_leader(timeout_s=30)
    _all_up(cluster)
    _assert_all_present(cluster, subs.acked)


def test_paused_leader_steps_down_and_serves_no_stale_read(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    cluster.pause(leader)
    # Requests sent to the frozen leader wait in its socket; once it runs again they must
    # succeed (forwarded to the new leader) or fail with 503, never hang or lie.
    statuses: dict[str, int] = {}

    def post(job_id: str) -> None:
        res = cluster.post(leader, "/v1/jobs", {"id": job_id, "queue": "faults"}, timeout_s=30)
        statuses[job_id] = res.status

    pending = [threading.Thread(target=post, args=(f"to-paused-{i}",)) for i in range(4)]
    try:
        for t in pending:
            t.start()
        new_leader = cluster.wait_for_leader(not_=leader, timeout_s=30)
        res = cluster.post(new_leader, "/v1/jobs", {"id": "during-pause", "queue": "faults"})
        assert res.status == 201, res
    finally:
        cluster.resume(leader)
    for t in pending:
        t.join(timeout=40)
    assert len(statuses) == 4 and set(statuses.values()) <= {200, 201, 503}, statuses
    # The old leader, resumed, must not serve a read that misses the write made without it.
    res = cluster.get(leader, "/v1/jobs/during-pause")
    assert res.status in (200, 503), res
    if res.status == 200:
        assert res.body["id"] == "during-pause"
    cluster.wait_until(
        "the old leader to follow",
        lambda: (
            (st := cluster.status(leader)) is not None
            and st["role"] == "follower"
            and st["leader_id"] == new_leader
        ),
    )
    assert cluster.get(leader, "/v1/jobs/during-pause").status == 200
    acked = {job_id for job_id, status in statuses.items() if status in (200, 201)}
    if acked:
        _assert_all_present(cluster, acked)


def test_leader_without_its_quorum_answers_pending_writes_promptly(
    cluster: LocalCluster,
) -> None:
    """Both followers frozen: the leader steps down after about an election timeout (check
    quorum) and its write in flight answers 503 outcome_unknown then, not after the 10 s
    propose timeout; the paused write may still commit once the followers run again."""
    _all_up(cluster)
    leader = cluster.wait_for_leader()
    followers = [n for n in cluster.nodes if n != leader]
    for node in followers:
        cluster.pause(node)
    try:
        started = time.monotonic()
        res = cluster.post(leader, "/v1/jobs", {"id": "no-quorum", "queue": "faults"})
        elapsed = time.monotonic() - started
    finally:
        for node in followers:
            cluster.resume(node)
    assert res.status == 503, res
    assert res.body["error"]["code"] == "outcome_unknown", res.body
    assert elapsed < 4.0, elapsed  # ~0.3-0.6 s to step down + 2 election timeouts of grace
    cluster.wait_for_leader(timeout_s=30)


def test_sigterm_leader_under_load_exits_zero_and_loses_nothing(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    with Submitters(cluster, "sigterm") as subs:
        subs.wait_for(30)
        assert cluster.terminate(leader) == 0, cluster.logs()
        subs.wait_for(len(subs.acked) + 30)
    log = cluster.log_path(leader).read_text()
    assert "transferring leadership" in log and "stopped cleanly" in log
    _all_up(cluster)
    _assert_all_present(cluster, subs.acked)


def test_disk_full_follower_exits_nonzero_then_recovers(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]
    cluster.terminate(victim)
    cluster.start_node(victim, env={"RAFTSCHED_FAILPOINT_ENOSPC_AFTER_BYTES": "20000"})
    with Submitters(cluster, "enospc") as subs:
        proc = cluster.nodes[victim].proc
        assert proc is not None
        cluster.wait_until(
            f"node {victim} to stop on a full disk", lambda: proc.poll() is not None, 60
        )
        subs.wait_for(len(subs.acked) + 20)
    assert proc.returncode == 1
    assert "storage failure, the node stops" in cluster.log_path(victim).read_text()
    _all_up(cluster)  # restarted without the failpoint: recovers what it had synced
    _assert_all_present(cluster, subs.acked)


def _segments(cluster: LocalCluster, node: int) -> list[Path]:
    return sorted(cluster.files.data_dir(node).glob("*.wal"))


def test_torn_wal_tail_rejoins(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]
    cluster.kill(victim)
    with _segments(cluster, victim)[-1].open("ab") as f:
        f.write(b"\x00\x00\x01\x00torn-record-without-its-tail")  # a partial record
    cluster.start_node(victim)
    res = cluster.post(leader, "/v1/jobs", {"id": "after-torn-tail", "queue": "faults"})
    assert res.status == 201
    cluster.wait_until(
        f"node {victim} to serve the new job",
        lambda: (
            cluster.status(victim) is not None
            and cluster.get(victim, "/v1/jobs/after-torn-tail").status == 200
        ),
        30,
    )


def test_corrupt_middle_record_refuses_to_start_naming_file_and_offset(
    cluster: LocalCluster,
) -> None:
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]
    cluster.kill(victim)
    segment = _segments(cluster, victim)[-1]
    data = bytearray(segment.read_bytes())
    assert len(data) > 4096, "expected a log with many records"
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    log = cluster.log_path(victim)
    before = log.stat().st_size
    cluster.start_node(victim)
    proc = cluster.nodes[victim].proc
    assert proc is not None
    try:
        code = proc.wait(timeout=30)
    except Exception as exc:
        raise ClusterError("a node with a corrupt log kept running\n" + cluster.logs()) from exc
    assert code == 1
    text = log.read_text()[before:]
    assert "refusing to start" in text and segment.name in text and "offset" in text, text

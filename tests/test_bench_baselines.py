"""The baselines of SPEC §9 (bench/baselines, bench/compare.py).

- The pysyncobj queue's state machine, without pysyncobj: submit, lease with a token,
  complete, a stale token refused, an expired lease re-queued, the same commands giving the
  same state on two replicas.
- `report.problems`, the sanity check of a comparison, accepts a sane result and names what
  is wrong in doctored ones.
- Smoke runs of `python -m bench.compare --quick` in a subprocess: the pysyncobj baseline
  (3 real node processes, real `raftsched worker` processes) always; RQ when redis-server is
  installed (scripts/setup test installs it with apt when it can). Figures are not compared
  with targets (CI machines vary): each must be a real, positive measurement, and the JSON,
  Markdown and PNG must be written.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.baselines.pysyncobj_queue import QueueMachine
from bench.baselines.report import problems

pytest.importorskip("pysyncobj")

REPO = Path(__file__).resolve().parents[1]
COMPARE_DEADLINE_S = 240.0
STOP_DEADLINE_S = 30.0


def test_submit_lease_complete_with_tokens() -> None:
    m = QueueMachine()
    out = m.submit([{"queue": "q", "payload": 1}, {"queue": "q", "id": "b"}], now_ms=1000)
    assert [created for created, _ in out] == [True, True]
    assert [job.id for _, job in out] == ["auto-1", "b"]
    assert m.submit([{"queue": "q", "id": "b"}], now_ms=1001)[0][0] is False  # same id
    first = m.lease("q", "w", max_jobs=1, now_ms=1002, lease_ms=100)
    second = m.lease("q", "w", max_jobs=5, now_ms=1003, lease_ms=100)
    assert [j.id for j in first] == ["auto-1"] and [j.id for j in second] == ["b"]
    assert first[0].token < second[0].token  # tokens only grow
    assert m.lease("q", "w", max_jobs=5, now_ms=1004, lease_ms=100) == []
    results = m.report(
        [
            {"job_id": "auto-1", "token": first[0].token, "result": 3},
            {"job_id": "b", "token": first[0].token, "result": 3},  # b's token is newer
        ],
        now_ms=1005,
    )
    assert results[0] == {"job_id": "auto-1", "ok": True, "state": "succeeded"}
    assert results[1]["error"]["code"] == "stale_token"
    assert m.counts["q"]["succeeded"] == 1 and m.counts["q"]["leased"] == 1


def test_expired_lease_runs_again_then_dies() -> None:
    m = QueueMachine()
    m.submit([{"queue": "q", "id": "x", "max_attempts": 2}], now_ms=0)
    (a,) = m.lease("q", "w", max_jobs=1, now_ms=0, lease_ms=10)
    token_a = a.token
    assert m.lease("q", "w", max_jobs=1, now_ms=5, lease_ms=10) == []  # still held
    (b,) = m.lease("q", "w", max_jobs=1, now_ms=10, lease_ms=10)  # expired: leased again
    assert b.id == "x" and b.attempts == 2 and b.token > token_a
    late = m.report([{"job_id": "x", "token": token_a, "result": 1}], now_ms=11)
    assert late[0]["error"]["code"] == "stale_token"
    m.expire(now_ms=20)
    assert m.jobs["x"].state == "dead"  # two attempts used


def test_same_commands_same_state() -> None:
    def run() -> QueueMachine:
        m = QueueMachine()
        m.submit([{"queue": "q", "payload": i} for i in range(10)], now_ms=5)
        leased = m.lease("q", "w", max_jobs=4, now_ms=6, lease_ms=50)
        m.report([{"job_id": j.id, "token": j.token, "result": 0} for j in leased], now_ms=7)
        m.lease("q", "w2", max_jobs=3, now_ms=100, lease_ms=50)
        return m

    a, b = run(), run()
    assert {k: j.doc() for k, j in a.jobs.items()} == {k: j.doc() for k, j in b.jobs.items()}
    assert a.counts == b.counts and a.token == b.token


def _sane_doc() -> dict[str, Any]:
    tp = {"concurrency": 16, "requests": 100, "errors": 0, "per_s": 900, "p50_ms": 2.0}
    return {
        "meta": {
            "command": "python -m bench.compare --quick",
            "machine": "m",
            "python": "CPython 3.11",
            "date": "d",
            "load_start": 0.5,
            "load_end": 0.7,
            "settings": {"concurrencies": [16], "e2e_workers": [2]},
        },
        "systems": [
            {
                "key": "pysyncobj-3",
                "label": "pysyncobj queue, 3 nodes",
                "kind": "pysyncobj",
                "result": {
                    "idle": {"p50_ms": 1.0, "p99_ms": 3.0},
                    "throughput": [tp],
                    "batch": {**tp, "concurrency": 8},
                    "e2e": [
                        {
                            "workers": 2,
                            "jobs_per_s": 700.0,
                            "nodes_cpu_ms_per_job": 0.7,
                            "workers_cpu_ms_per_job": 0.8,
                        }
                    ],
                    "failover": {"kills": 1, "median_s": 0.9, "all_s": [0.9]},
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("meta", "load_start"), None, "meta: no load_start"),
        (("result", "throughput", 0, "per_s"), 0, "0/s at concurrency 16"),
        (("result", "throughput", 0, "errors"), 5, "5 errors"),
        (("result", "idle", "p50_ms"), 9.0, "idle p50 9.0"),
        (("result", "e2e"), [], "no end-to-end row"),
        (("result", "e2e", 0, "nodes_cpu_ms_per_job"), -2.6, "CPU -1.8"),
        (("result", "failover", "all_s"), [], "failover"),
    ],
)
def test_problems_names_what_is_wrong(path: tuple[Any, ...], value: Any, complaint: str) -> None:
    assert problems(_sane_doc()) == []
    doc = copy.deepcopy(_sane_doc())
    node: Any = doc if path[0] == "meta" else doc["systems"][0]
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    found = problems(doc)
    assert any(complaint in p for p in found), found


def test_problems_accepts_a_reported_failover_failure_but_not_a_failed_run() -> None:
    doc = _sane_doc()
    doc["systems"][0]["result"]["failover"] = {
        "kills": 5,
        "median_s": 0.9,
        "all_s": [0.9, 0.8],
        "failed": "kill 3: no write within 30.0s of killing the leader",
    }
    assert problems(doc) == []  # a system that did not recover is a result, reported
    doc["systems"].append({"key": "rq-always", "label": "RQ", "kind": "rq", "failed": "boom"})
    assert problems(doc) == ["rq-always: run failed: boom"]


def _compare(tmp_path: Path, systems: str) -> dict[str, Any]:
    """`python -m bench.compare --quick --systems ...`; SIGTERM (its processes are stopped by
    pid on the way out) then SIGKILL if it overruns its deadline."""
    argv = [sys.executable, "-m", "bench.compare", "--quick", "--no-install"]
    argv += ["--systems", systems, "--out-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=COMPARE_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"bench.compare overran {COMPARE_DEADLINE_S}s:\n{out.decode()[-3000:]}")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    for name in ("compare.json", "compare.md", "compare.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    doc: dict[str, Any] = json.loads((tmp_path / "compare.json").read_text())
    assert problems(doc) == []
    md = (tmp_path / "compare.md").read_text()
    for fact in ("Machine:", "Python:", "Date:", "Load average", "Command:"):
        assert fact in md
    return doc


def test_quick_pysyncobj_baseline(tmp_path: Path) -> None:
    doc = _compare(tmp_path, "pysyncobj-3")
    (entry,) = doc["systems"]
    res = entry["result"]
    assert [t["concurrency"] for t in res["throughput"]] == [16, 64]
    assert all(t["requests"] > 0 and t["per_s"] > 0 for t in res["throughput"])
    assert res["batch"]["per_s"] > 0
    (e2e,) = res["e2e"]
    assert e2e["workers"] == 2 and e2e["jobs"] == 300 and e2e["jobs_per_s"] > 0
    assert res["failover"]["kills"] == 1 and res["failover"]["median_s"] > 0
    assert res["replicas"]["checked"] is True  # the digests were compared (agreeing or not)
    assert "pysyncobj queue, 3 nodes" in (tmp_path / "compare.md").read_text()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_quick_rq_baseline(tmp_path: Path) -> None:
    doc = _compare(tmp_path, "rq-everysec")
    (entry,) = doc["systems"]
    res = entry["result"]
    assert res["failover"] is None  # not replicated
    assert {r["worker_class"] for r in res["e2e"]} == {"rq.SimpleWorker", "rq.Worker"}
    assert all(r["jobs_per_s"] > 0 for r in res["e2e"])
    assert "Redis server" in res["server"]

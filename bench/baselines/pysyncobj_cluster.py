"""Run N pysyncobj baseline nodes on free loopback ports, like bench/jobs_e2e.py's `Cluster`.

`PysyncobjCluster` is a `jobs_e2e.Cluster` whose processes are bench/baselines/pysyncobj_node.py
instead of `raftsched node`: same ports (one HTTP and one Raft port per node, from the OS),
same leader lookup (GET /v1/cluster until a node says "leader", with a deadline), same stop
(SIGTERM by pid, SIGKILL after a deadline). So `jobs_e2e.measure` and bench/cluster.py's
drivers run against it unchanged.

    python -m bench.baselines.pysyncobj_cluster --nodes 3   # start, print the URLs, Ctrl-C
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.jobs_e2e import LEADER_DEADLINE_S, Cluster

LEADER_POLL_S = 0.05


class PysyncobjCluster(Cluster):
    """`nodes` pysyncobj node processes; `journal`: pysyncobj's mmap journal (never fsynced)."""

    def __init__(self, base: Path, nodes: int, *, journal: bool = True, batch: bool = True):
        super().__init__(base, nodes, fsync="never" if journal else "memory")
        self.journal = journal
        self.batch = batch

    def argv(self, node_id: int) -> list[str]:
        me = self.specs[node_id - 1]
        argv = [
            sys.executable, "-m", "bench.baselines.pysyncobj_node",
            "--node-id", str(me.node_id), "--raft", me.peer_addr,
            "--http", me.url.removeprefix("http://"),
            "--data-dir", str(self.files.data_dir(me.node_id)),
        ]  # fmt: skip
        for other in self.specs:
            if other.node_id != me.node_id:
                argv += ["--peer", f"{other.node_id}={other.peer_addr},{other.url}"]
        if self.journal:
            argv.append("--journal")
        if not self.batch:
            argv.append("--no-batch")
        return argv

    def start(self) -> None:
        for spec in self.specs:
            with open(self.files.log_file(f"pso{spec.node_id}"), "ab") as log:
                self.procs.append(  # the child keeps its own copy of the log fd
                    subprocess.Popen(
                        self.argv(spec.node_id),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + LEADER_DEADLINE_S
        while self.leader_url() is None:
            dead = [p.pid for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                why = (
                    f"node pids {dead} exited" if dead else f"no leader after {LEADER_DEADLINE_S}s"
                )
                raise RuntimeError(f"pysyncobj cluster: {why}; logs in {self.files.base}/logs")
            time.sleep(LEADER_POLL_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baselines.pysyncobj_cluster")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--no-journal", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pysyncobj-bench-") as tmp:
        cluster = PysyncobjCluster(Path(tmp), args.nodes, journal=not args.no_journal)
        cluster.start()
        try:
            print(f"leader {cluster.leader_url()}; nodes {' '.join(cluster.urls)}", flush=True)
            while all(p.poll() is None for p in cluster.procs):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

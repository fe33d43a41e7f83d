"""Raft core throughput: committed entries per CPU-second through a simulated 3-node cluster.

Theory of operation: three real RaftNodes on in-memory disks (raftsched.sim.disk, no crash
tracking) exchange messages through a FIFO queue with no delay and no faults. The driver is
the ready loop of raftsched/raft/ready.py, minus I/O: persist to the in-memory disk, "fsync"
(nothing), send, apply (count), advance. The leader proposes 16-byte commands with
`propose_batch`, `--batch` at a time, keeping up to `--window` uncommitted commands in
flight (pipelining). The figure is committed entries (at the leader) per second of
`time.process_time()`, so it measures the core plus a minimal driver, not the machine's
other load. `--profile` prints where the time goes (cProfile).

    python -m bench.raft_core [--entries N] [--batch B] [--window W] [--profile]

Writes bench/results/raft_core.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from raftsched.raft.config import RaftConfig
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.storage import persist_ready
from raftsched.raft.types import Membership, Role
from raftsched.sim.disk import SimDisk

TARGET_ENTRIES_PER_CPU_S = 200_000
RESULTS = Path(__file__).resolve().parent / "results" / "raft_core.json"
COMMAND = b"0123456789abcdef"  # 16 bytes


class Cluster:
    def __init__(self, nodes: int = 3, seed: int = 1) -> None:
        members = Membership(voters=frozenset(range(1, nodes + 1)))
        rng = random.Random(seed)
        self.disks = {i: SimDisk(members, track_durability=False) for i in members.voters}
        self.nodes = {
            i: RaftNode(
                RaftConfig(
                    node_id=i,
                    max_inflight_appends=256,
                    max_entries_per_append=4096,
                    max_bytes_per_append=1 << 22,
                ),
                self.disks[i],
                random.Random(rng.getrandbits(64)),
            )
            for i in sorted(members.voters)
        }
        self.queue: deque[Message] = deque()
        self.applied = dict.fromkeys(self.nodes, 0)

    def drain(self, node_id: int) -> None:
        node, disk, queue = self.nodes[node_id], self.disks[node_id], self.queue
        while node.has_ready():
            rd = node.ready()
            queue.extend(rd.eager_messages)
            persist_ready(disk, rd)
            queue.extend(rd.messages)
            if rd.committed_entries:
                self.applied[node_id] = rd.committed_entries[-1].index
            node.advance(rd)

    def deliver_all(self) -> None:
        queue, nodes = self.queue, self.nodes
        while queue:
            msg = queue.popleft()
            nodes[msg.dst].step(msg)
            self.drain(msg.dst)

    def elect(self, node_id: int = 1) -> RaftNode:
        self.nodes[node_id].campaign()
        self.drain(node_id)
        self.deliver_all()
        leader = self.nodes[node_id]
        assert leader.role is Role.LEADER, "the bench cluster failed to elect a leader"
        return leader


def run(entries: int, batch: int, window: int) -> dict[str, Any]:
    cluster = Cluster()
    leader = cluster.elect(1)
    base = cluster.applied[1]
    proposed = 0
    datas = [COMMAND] * batch
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    rounds = 0
    while cluster.applied[1] - base < entries:
        # Pipelining: keep up to `window` commands proposed but not yet committed.
        while proposed < entries and proposed - (cluster.applied[1] - base) < window:
            leader.propose_batch(datas)
            proposed += batch
        cluster.drain(1)
        cluster.deliver_all()
        rounds += 1
        if rounds % 8 == 0:  # a tick now and then, as a real runtime would
            for node_id, node in cluster.nodes.items():
                node.tick()
                cluster.drain(node_id)
    cpu_s = time.process_time() - started_cpu
    wall_s = time.perf_counter() - started_wall
    committed = cluster.applied[1] - base
    assert min(cluster.applied.values()) > base, "followers applied nothing"
    return {
        "benchmark": "raft_core",
        "nodes": 3,
        "command_bytes": len(COMMAND),
        "batch": batch,
        "window": window,
        "committed_entries": committed,
        "cpu_s": round(cpu_s, 4),
        "wall_s": round(wall_s, 4),
        "entries_per_cpu_s": round(committed / cpu_s),
        "target_entries_per_cpu_s": TARGET_ENTRIES_PER_CPU_S,
        "meets_target": committed / cpu_s >= TARGET_ENTRIES_PER_CPU_S,
        "python": platform.python_version(),
        "machine": machine_line(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.raft_core", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--entries", type=int, default=400_000, help="entries to commit")
    parser.add_argument("--batch", type=int, default=512, help="commands per propose_batch")
    parser.add_argument(
        "--window",
        type=int,
        default=4096,
        help="max commands proposed but not committed (pipelining depth)",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    for name in ("entries", "batch", "window"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be a positive integer")
    if args.batch > args.window:
        parser.error("--batch cannot exceed --window (a batch must fit in the pipeline)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        result = run(args.entries, args.batch, args.window)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
    else:
        result = run(args.entries, args.batch, args.window)
    print(
        f"raft core: {result['entries_per_cpu_s']:,} committed entries per CPU-second "
        f"(3 nodes, {result['command_bytes']}-byte commands, batches of {result['batch']}, "
        f"window {result['window']}; target {TARGET_ENTRIES_PER_CPU_S:,}: "
        f"{'met' if result['meets_target'] else 'NOT met'})"
    )
    if not args.no_write and not args.profile:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`raftsched worker`: flags -> WorkerConfig -> Agent.run(). See agent.py."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

from raftsched.client import split_cluster
from raftsched.worker.agent import Agent, WorkerConfig

EXIT_OK, EXIT_USAGE = 0, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftsched worker",
        description="Lease jobs from a raftsched cluster and run them in child processes.",
    )
    p.add_argument(
        "--cluster",
        default=os.environ.get("RAFTSCHED_CLUSTER"),
        help="node URLs, comma separated (env RAFTSCHED_CLUSTER)",
    )
    p.add_argument("--queue", action="append", required=True, help="queue to lease (repeat)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1)")
    p.add_argument("--id", default="", help="worker id (default host-pid)")
    p.add_argument(
        "--token",
        default=os.environ.get("RAFTSCHED_TOKEN"),
        help="bearer token with the worker role (env RAFTSCHED_TOKEN)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="module to import first, registering its @raftsched.task functions",
    )
    p.add_argument(
        "--ttl-ms",
        type=int,
        default=10_000,
        help="worker registration TTL: its leases are released this long after "
        "the worker goes silent (default 10000)",
    )
    p.add_argument("--long-poll-ms", type=int, default=5_000)
    p.add_argument(
        "--drain-grace",
        type=float,
        default=30.0,
        help="seconds running jobs get to finish after SIGTERM (default 30)",
    )
    p.add_argument(
        "--kill-grace",
        type=float,
        default=2.0,
        help="seconds between SIGTERM and SIGKILL of a timed-out job (default 2)",
    )
    p.add_argument(
        "--tail-bytes",
        type=int,
        default=4096,
        help="stdout/stderr bytes kept per shell job (default 4096)",
    )
    p.add_argument(
        "--fresh-process",
        action="store_true",
        help="run each Python job in a new interpreter (no state shared between jobs; "
        "costs an interpreter start per job) instead of the pool of long-lived children",
    )
    p.add_argument(
        "--lease-linger-ms",
        type=int,
        default=20,
        help="while jobs run, wait up to this long for a quarter of the slots to be free "
        "before leasing, so one lease fills several slots (default 20)",
    )
    p.add_argument(
        "--report-batch-ms",
        type=float,
        default=2.0,
        help="reports of jobs finishing within this many ms share one request and one log "
        "entry (default 2)",
    )
    p.add_argument(
        "--report-batch-max",
        type=int,
        default=64,
        help="reports per batched request (default 64; 1: one request per report)",
    )
    p.add_argument("--max-jobs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        if not args.cluster:
            raise ValueError("--cluster (or RAFTSCHED_CLUSTER) is required")
        config = WorkerConfig(
            cluster=split_cluster(args.cluster),
            queues=args.queue,
            concurrency=args.concurrency,
            worker_id=args.id,
            token=args.token,
            imports=args.imports,
            ttl_ms=args.ttl_ms,
            long_poll_ms=args.long_poll_ms,
            drain_grace_s=args.drain_grace,
            kill_grace_s=args.kill_grace,
            tail_bytes=args.tail_bytes,
            max_jobs=args.max_jobs,
            fresh_process=args.fresh_process,
            lease_linger_ms=args.lease_linger_ms,
            report_batch_ms=args.report_batch_ms,
            report_batch_max=args.report_batch_max,
        )
        for name in config.imports:  # fail fast, before leasing anything
            importlib.import_module(name)
    except (ValueError, ImportError) as exc:
        print(f"raftsched worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import uvloop  # noqa: PLC0415 - optional: a cheaper event loop per job
    except ImportError:
        return asyncio.run(Agent(config).run())
    return int(uvloop.run(Agent(config).run()))

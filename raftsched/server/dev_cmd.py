"""`raftsched dev`: a local 3- or 5-node cluster (plus one worker) on 127.0.0.1.

Theory of operation. Writes a cluster secret and an admin token into the data dir (a fresh
temporary one unless --data-dir is given), starts one `raftsched node` child per node (node i
serves HTTP on P+i and peers on Q+i, logs in <data dir>/logs/node<i>.log), waits until they
agree on a leader, then starts one worker child (unless --no-worker) and prints ONE line
beginning `ready:` with the HTTP URLs and the admin token. Auth is off on loopback, so the
token is only needed once auth is turned on. Then it keeps one status line up to date (leader,
term, commit index, jobs by state) until Ctrl-C or SIGTERM, which stops every child with
SIGTERM (SIGKILL after a deadline). A child that dies is reported with its exit status and the
last lines of its log; the cluster keeps running while a majority is up.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from .local_nodes import HOST, ClusterFiles, NodeSpec, get_json, node_argv, prepare_files

LEADER_DEADLINE_S: Final = 30.0
STOP_DEADLINE_S: Final = 15.0
STATUS_INTERVAL_S: Final = 1.0
WORKER_QUEUE: Final = "default"
WORKER_CONCURRENCY: Final = 4
LOG_TAIL_LINES: Final = 5


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    reported: bool = False


class Stop(Exception):
    """SIGTERM / SIGINT: stop the children and exit."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftsched dev", description="A local raftsched cluster on 127.0.0.1."
    )
    p.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    p.add_argument("--http-port", type=int, default=8100, help="node i serves HTTP on P+i")
    p.add_argument("--peer-port", type=int, default=9100, help="node i listens for peers on Q+i")
    p.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    p.add_argument("--no-worker", action="store_true", help="do not start a worker")
    p.add_argument(
        "--fsync",
        choices=["always", "never"],
        default="always",
        help="'never' is UNSAFE: acknowledged writes can be lost (benchmarks only)",
    )
    return p


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def start_child(name: str, argv: list[str], log_path: Path) -> Child:
    log = open(log_path, "ab")  # noqa: SIM115 - closed in stop_children
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    return Child(name, argv, log_path, proc, log)


def stop_children(children: Sequence[Child], deadline_s: float = STOP_DEADLINE_S) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + deadline_s
    for child in children:
        try:
            child.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop in {deadline_s:.0f}s: SIGKILL", file=sys.stderr)
            child.proc.kill()
            child.proc.wait()
        child.log.close()


def report_deaths(children: Sequence[Child]) -> int:
    """Print each newly dead child once; the number of children still running."""
    alive = 0
    for child in children:
        code = child.proc.poll()
        if code is None:
            alive += 1
        elif not child.reported:
            child.reported = True
            print(
                f"\n{child.name} (pid {child.proc.pid}) {exit_reason(code)}; last log lines "
                f"({child.log_path}):\n{log_tail(child.log_path)}",
                file=sys.stderr,
            )
    return alive


def find_leader(specs: Sequence[NodeSpec]) -> dict[str, Any] | None:
    """The leader's /v1/cluster document once a node that says it leads answers."""
    for spec in specs:
        doc = get_json(f"{spec.url}/v1/cluster", timeout_s=0.5)
        if isinstance(doc, dict) and doc.get("role") == "leader":
            return doc
    return None


def status_line(specs: Sequence[NodeSpec]) -> str:
    leader = find_leader(specs)
    if leader is None:
        return "no leader (election in progress or a majority is down)"
    url = next(s.url for s in specs if s.node_id == leader["node_id"])
    queues = get_json(f"{url}/v1/queues?consistency=stale", timeout_s=0.5)
    totals: dict[str, int] = {}
    items = queues.get("queues", []) if isinstance(queues, dict) else []
    for q in items if isinstance(items, list) else []:
        for state, count in (q.get("counts") or {}).items():
            if isinstance(count, int) and count:
                totals[state] = totals.get(state, 0) + count
    jobs = " ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "none"
    return (
        f"leader node{leader['node_id']} term {leader['term']} commit "
        f"{leader['commit_index']} | jobs: {jobs}"
    )


def ports_in_use(specs: Sequence[NodeSpec]) -> list[str]:
    """The ports of `specs` something already listens on. Checked before starting: another
    cluster on the same ports would answer our readiness probes and pass for ours."""
    busy: list[str] = []
    for spec in specs:
        for what, port in (("HTTP", spec.http_port), ("peer", spec.peer_port)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # As the node binds (asyncio sets SO_REUSEADDR): TIME_WAIT is not "in use".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((HOST, port))
                except OSError as exc:
                    busy.append(f"{HOST}:{port} (node {spec.node_id} {what}: {exc.strerror})")
    return busy


def _nodes_alive(children: Sequence[Child], nodes: int) -> int:
    return sum(1 for child in children[:nodes] if child.proc.poll() is None)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    temp = args.data_dir is None
    base: Path = Path(tempfile.mkdtemp(prefix="raftsched-dev-")) if temp else args.data_dir
    files = prepare_files(base)
    specs = [NodeSpec(i, args.http_port + i, args.peer_port + i) for i in range(1, args.nodes + 1)]
    children: list[Child] = []
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    code = 0
    busy = ports_in_use(specs)
    if busy:
        print(
            "raftsched dev: ports already in use: "
            + ", ".join(busy)
            + "; is another cluster running? choose others with --http-port/--peer-port",
            file=sys.stderr,
        )
        if temp:
            shutil.rmtree(base, ignore_errors=True)
        return 1
    try:
        if args.fsync == "never":
            print(
                "WARNING: --fsync never is UNSAFE: acknowledged writes can be lost", file=sys.stderr
            )
        for spec in specs:
            children.append(
                start_child(
                    f"node{spec.node_id}",
                    node_argv(spec, specs, files, fsync=args.fsync),
                    files.log_file(f"node{spec.node_id}"),
                )
            )
        code = _wait_and_watch(args, specs, files, children)
    except Stop:
        print("\nstopping...", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children)
        for child in children:
            if child.proc.returncode not in (0, None) and not child.reported:
                print(
                    f"{child.name} {exit_reason(child.proc.returncode)} while stopping",
                    file=sys.stderr,
                )
        if temp and code == 0:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"data and logs kept in {base}", file=sys.stderr)
    return code


def _wait_and_watch(
    args: argparse.Namespace, specs: Sequence[NodeSpec], files: ClusterFiles, children: list[Child]
) -> int:
    deadline = time.monotonic() + LEADER_DEADLINE_S
    while find_leader(specs) is None:
        if report_deaths(children) <= len(specs) // 2:
            print(
                "raftsched dev: a majority of the nodes died; see the logs above", file=sys.stderr
            )
            return 1
        if time.monotonic() > deadline:
            print(
                f"raftsched dev: no leader after {LEADER_DEADLINE_S:.0f}s; logs in "
                f"{files.base / 'logs'}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    urls = [s.url for s in specs]
    if not args.no_worker:
        from raftsched.worker.spawn import worker_argv  # noqa: PLC0415 - optional part

        children.append(
            start_child(
                "worker",
                worker_argv(urls, WORKER_QUEUE, WORKER_CONCURRENCY, files.admin_token),
                files.log_file("worker"),
            )
        )
    print(
        f"ready: {' '.join(urls)} admin-token={files.admin_token} data-dir={files.base}"
        f"{' worker=' + WORKER_QUEUE if not args.no_worker else ''}",
        flush=True,
    )
    tty = sys.stdout.isatty()
    last_printed = 0.0
    while True:
        report_deaths(children)
        if _nodes_alive(children, len(specs)) <= len(specs) // 2:
            print(
                "\nraftsched dev: a majority of the nodes died; see the logs above",
                file=sys.stderr,
            )
            return 1
        line = status_line(specs)
        now = time.monotonic()
        if tty:
            print(f"\r\x1b[2K{line}", end="", flush=True)
        elif now - last_printed >= 10 * STATUS_INTERVAL_S:
            print(line, flush=True)
            last_printed = now
        with contextlib.suppress(InterruptedError):
            time.sleep(STATUS_INTERVAL_S)

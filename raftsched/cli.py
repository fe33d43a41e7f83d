"""The `raftsched` command (SPEC §7).

Subcommands that own their flags (`sim`, `node`, `dev`, `worker`, `restore`) get the rest of
argv and are imported lazily, so a missing or broken part never breaks the others. The
operator's commands (submit, jobs, cancel, queues, workers, schedules, cluster, status, backup)
call the API through `raftsched.client.Client` and print a human table (colour only on a tty,
never with NO_COLOR) or, with `--json`, one JSON document whose shape is the API's.

Exit codes: 0 ok, 1 refused by the cluster (4xx: bad input, not found, conflict, auth,
overloaded), 2 usage error, 3 unavailable (no leader, unreachable, timed out).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raftsched import __version__
from raftsched.client import ApiError, Client, Job, Unavailable

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

# command -> (module, what it does). Each module has `main(argv: list[str]) -> int`.
DELEGATED: dict[str, tuple[str, str]] = {
    "sim": ("raftsched.sim.cli", "run the deterministic Raft simulator"),
    "node": ("raftsched.server.node_cmd", "run one cluster node (--config node.toml or flags)"),
    "dev": ("raftsched.server.dev_cmd", "a local 3-node cluster plus one worker on loopback"),
    "worker": ("raftsched.worker.cli", "the worker agent: lease jobs and run them"),
    "restore": ("raftsched.server.restore_cmd", "seed a new node's data dir from a backup"),
}
STATE_COLOURS = {
    "succeeded": "32",
    "dead": "31",
    "cancelled": "33",
    "leased": "36",
    "pending": "0",
    "scheduled": "35",
    "waiting": "2",
    "leader": "32",
}


class UsageError(Exception):
    pass


def _delegate(command: str, argv: list[str]) -> int:
    module_name, _ = DELEGATED[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            print(
                f"raftsched {command}: not available in this build ({module_name} is missing)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        raise
    entry: Callable[[list[str]], int] = module.main
    return int(entry(argv))


# -- output --------------------------------------------------------------------------------------


def _colour(text: str, state: str, enabled: bool) -> str:
    code = STATE_COLOURS.get(state)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code and code != "0" else text


def _use_colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def relative(ms: Any, now_ms: float | None = None) -> str:
    """'12s ago' / 'in 3m' for a time in ms since the epoch; '-' for none."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return "-"
    now = time.time() * 1000 if now_ms is None else now_ms
    delta = (now - ms) / 1000
    span = abs(delta)
    if span < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if span >= size:
            amount = f"{int(span // size)}{unit}"
            return f"{amount} ago" if delta > 0 else f"in {amount}"
    return "now"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    state_col: int | None = None,
    colour: bool = False,
) -> str:
    cells = [[str("-" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in cells:
        parts = []
        for i, (v, w) in enumerate(zip(r, widths, strict=True)):
            padded = v.ljust(w)
            parts.append(_colour(padded, v, colour) if i == state_col else padded)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _short(value: Any, n: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= n else text[: n - 1] + "…"


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _time_arg(text: str, what: str) -> int:
    """ms since the epoch from an integer or an ISO 8601 time (UTC unless it says)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is neither ms since the epoch nor ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


# -- commands ------------------------------------------------------------------------------------


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            j.get("id"),
            j.get("queue"),
            j.get("state"),
            j.get("attempts"),
            j.get("max_attempts"),
            j.get("token"),
            relative(j.get("created_at")),
            _short(j.get("payload")),
        ]
        for j in jobs
    ]


def _print_jobs(jobs: list[dict[str, Any]], colour: bool) -> None:
    print(
        table(
            ["id", "queue", "state", "attempts", "max", "token", "created", "payload"],
            _job_rows(jobs),
            state_col=2,
            colour=colour,
        )
    )


def _print_job(job: dict[str, Any], colour: bool) -> None:
    keys = [
        "id",
        "queue",
        "state",
        "reason",
        "attempts",
        "max_attempts",
        "token",
        "worker_id",
        "priority",
        "timeout_ms",
        "lease_ms",
        "depends_on",
        "workflow",
        "tags",
    ]
    width = max(len(k) for k in keys)
    for k in keys:
        v = job.get(k)
        if v in (None, [], ""):
            continue
        text = _colour(str(v), str(v), colour) if k == "state" else _short(v, 100)
        print(f"{k.ljust(width)}  {text}")
    for k in ("created_at", "run_at", "lease_expires_at", "ended_at"):
        if job.get(k):
            print(f"{k.ljust(width)}  {relative(job[k])} ({job[k]})")
    for k in ("payload", "result", "error"):
        if job.get(k) is not None:
            text = json.dumps(job[k], indent=2, sort_keys=True).replace("\n", "\n  ")
            print(f"{k}:\n  {text}")
    events = job.get("events") or []
    if events:
        print("events:")
        print(
            table(
                ["at", "state", "token"],
                [[relative(e.get("at")), e.get("state"), e.get("token")] for e in events],
                state_col=1,
                colour=colour,
            )
        )


def cmd_submit(c: Any, a: argparse.Namespace) -> Any:
    if sum(x is not None for x in (a.payload, a.call)) + bool(a.cmd) > 1:
        raise UsageError("give one of --payload, --call, or a command after --")
    if a.call:
        payload: Any = {
            "call": a.call,
            "args": _json_arg(a.args, "--args"),
            "kwargs": _json_arg(a.kwargs, "--kwargs"),
        }
    elif a.cmd:
        payload = {"cmd": a.cmd}
    else:
        payload = _json_arg(a.payload, "--payload") if a.payload is not None else None
    job: Job = c.submit(
        a.queue,
        payload,
        id=a.id,
        priority=a.priority,
        delay_ms=a.delay_ms,
        run_at=_time_arg(a.run_at, "--run-at") if a.run_at else None,
        max_attempts=a.max_attempts,
        timeout_ms=a.timeout_ms,
        lease_ms=a.lease_ms,
        depends_on=a.after or None,
        tags=a.tag or None,
        idempotency_key=a.idempotency_key,
    )
    if a.wait is not None:
        job = c.wait(job.id, timeout_s=a.wait)
    return job.raw


def cmd_jobs(c: Any, a: argparse.Namespace) -> Any:
    if a.action == "show":
        if not a.job_id:
            raise UsageError("jobs show needs a job id")
        return c.get_job(a.job_id).raw
    page = c.list_jobs(queue=a.queue, state=a.state, limit=a.limit, after=a.after)
    return {"jobs": [j.raw for j in page.jobs], "next_after": page.next_after}


def cmd_cancel(c: Any, a: argparse.Namespace) -> Any:
    return c.cancel(a.job_id, reason=a.reason).raw  # the API answers the cancelled job


def cmd_queues(c: Any, a: argparse.Namespace) -> Any:
    if a.action == "list":
        return c.queues()
    if not a.queue:
        raise UsageError(f"queues {a.action} needs a queue name")
    if a.action == "show":
        return c.get_queue(a.queue)
    if a.action in ("pause", "resume"):
        return c.configure_queue(a.queue, paused=a.action == "pause")
    return c.configure_queue(  # partial: fields not given keep their value
        a.queue,
        max_in_flight=a.max_in_flight,
        lease_ms=a.lease_ms,
        max_attempts=a.max_attempts,
        reset=a.reset or (),
    )


def cmd_workers(c: Any, a: argparse.Namespace) -> Any:
    return c.workers()


def cmd_schedules(c: Any, a: argparse.Namespace) -> Any:
    if a.action == "list":
        return c.schedules()
    if not a.name:
        raise UsageError(f"schedules {a.action} needs a schedule name")
    if a.action == "show":
        return c.get_schedule(a.name)
    if a.action == "delete":
        return c.delete_schedule(a.name)
    if a.action == "backfill":
        if not (a.start and a.end):
            raise UsageError("schedules backfill needs --from and --to")
        return c.backfill(
            a.name, start_ms=_time_arg(a.start, "--from"), end_ms=_time_arg(a.end, "--to")
        )
    if not a.cron or a.template is None:
        raise UsageError("schedules put needs --cron and --template")
    extra = {"misfire_cap": a.misfire_cap} if a.misfire_cap else {}
    return c.put_schedule(
        a.name,
        cron=a.cron,
        template=_json_arg(a.template, "--template"),
        timezone=a.timezone,
        misfire=a.misfire,
        **extra,
    )


def cmd_cluster(c: Any, a: argparse.Namespace) -> Any:
    if a.action in ("members", "status"):
        return c.cluster(leader=True)  # the leader knows every member's match index and lag
    if a.action == "add":
        if a.node_id is None or not a.peer_addr or not a.http_url:
            raise UsageError("cluster add needs NODE_ID --peer-addr --http-url")
        return c.add_member(a.node_id, peer_addr=a.peer_addr, http_url=a.http_url)
    if a.action == "remove":
        if a.node_id is None:
            raise UsageError("cluster remove needs NODE_ID")
        return c.remove_member(a.node_id)
    return c.transfer_leader(a.to if a.to is not None else a.node_id)


def cmd_status(c: Any, a: argparse.Namespace) -> Any:
    return {"cluster": c.cluster(leader=True), "queues": c.queues()}


def cmd_backup(c: Any, a: argparse.Namespace) -> Any:
    data: bytes = c.backup()
    digest = hashlib.sha256(data).hexdigest()
    claimed = (
        c.last_headers.get("X-Backup-SHA256") or c.last_headers.get("X-Backup-Sha256") or ""
    ).lower()
    if claimed and claimed != digest:
        raise VerifyError(f"backup digest mismatch: node says {claimed}, got {digest}")
    if not data:
        raise VerifyError("the node sent an empty backup")
    out = Path(a.file)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if hashlib.sha256(tmp.read_bytes()).hexdigest() != digest:
        raise VerifyError(f"{tmp}: read back differs from what was written")
    os.replace(tmp, out)
    return {
        "file": str(out),
        "bytes": len(data),
        "sha256": digest,
        "verified_against_node": bool(claimed),
    }


class VerifyError(Exception):
    pass


# -- human renderers -----------------------------------------------------------------------------


def _items(doc: Any, key: str) -> list[dict[str, Any]]:
    items = doc.get(key, []) if isinstance(doc, dict) else doc
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def render_human(command: str, a: argparse.Namespace, doc: Any, colour: bool) -> None:
    if command in ("submit", "cancel") or (command == "jobs" and a.action == "show"):
        if command == "submit" and not a.quiet_details:
            print(f"submitted {doc.get('id')} to {doc.get('queue')}: {doc.get('state')}")
            if a.wait is None:
                return
        _print_job(doc, colour)
    elif command == "jobs":
        _print_jobs(_items(doc, "jobs"), colour)
        if doc.get("next_after"):
            print(f"(more: --after {doc['next_after']})")
    elif command == "queues" and a.action in ("list", "show"):
        rows = []
        for q in _items(doc, "queues") if a.action == "list" else [doc]:
            counts = q.get("counts") or {}
            rows.append(
                [
                    q.get("name") or q.get("queue"),
                    "paused"
                    if q.get("paused") or (q.get("config") or {}).get("paused")
                    else "active",
                    *[
                        counts.get(s, 0)
                        for s in (
                            "pending",
                            "scheduled",
                            "waiting",
                            "leased",
                            "succeeded",
                            "dead",
                            "cancelled",
                        )
                    ],
                ]
            )
        print(
            table(
                [
                    "queue",
                    "status",
                    "pending",
                    "scheduled",
                    "waiting",
                    "leased",
                    "succeeded",
                    "dead",
                    "cancelled",
                ],
                rows,
            )
        )
    elif command == "workers":
        rows = [
            [
                w.get("id"),
                w.get("capacity"),
                ",".join(w.get("queues") or []),
                len(w.get("leased") or []),
                relative(w.get("expires_at") or w.get("expires_ms")),
            ]
            for w in _items(doc, "workers")
        ]
        print(table(["worker", "capacity", "queues", "in flight", "expires"], rows))
    elif command == "schedules" and a.action == "list":
        rows = [
            [
                s.get("name"),
                s.get("cron"),
                s.get("timezone"),
                s.get("misfire"),
                "paused" if s.get("paused") else "active",
                relative(s.get("next_fire_at") or s.get("next_fire_ms")),
            ]
            for s in _items(doc, "schedules")
        ]
        print(table(["schedule", "cron", "timezone", "misfire", "status", "next fire"], rows))
    elif command in ("cluster", "status") and (
        command == "status" or a.action in {"members", "status"}
    ):
        cl = doc["cluster"] if command == "status" else doc
        role = str(cl.get("role"))
        print(
            f"node {cl.get('node_id')}  role {_colour(role, role, colour)}"
            f"  term {cl.get('term')}  leader {cl.get('leader_id')}"
            f"  commit {cl.get('commit_index')}  applied {cl.get('applied_index')}"
        )
        rows = [
            [
                m.get("node_id", m.get("id")),
                "voter" if m.get("voter", True) else "learner",
                m.get("http_url"),
                m.get("match_index"),
                m.get("lag"),
            ]
            for m in _items(cl, "members")
        ]
        print(table(["member", "role", "http", "match", "lag"], rows))
        if command == "status":
            render_human("queues", argparse.Namespace(action="list"), doc["queues"], colour)
    elif command == "backup":
        print(
            f"backup written to {doc['file']}: {doc['bytes']} bytes, sha256 {doc['sha256']}"
            f"{' (matches the node)' if doc['verified_against_node'] else ''}"
        )
    else:
        print(json.dumps(doc, indent=2, sort_keys=True))


# -- parser --------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Any, argparse.Namespace], Any]] = {
    "submit": cmd_submit,
    "jobs": cmd_jobs,
    "cancel": cmd_cancel,
    "queues": cmd_queues,
    "workers": cmd_workers,
    "schedules": cmd_schedules,
    "cluster": cmd_cluster,
    "status": cmd_status,
    "backup": cmd_backup,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 with the usage line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--cluster",
        default=os.environ.get("RAFTSCHED_CLUSTER"),
        help="node URLs, comma separated (env RAFTSCHED_CLUSTER)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("RAFTSCHED_TOKEN"),
        help="bearer token (env RAFTSCHED_TOKEN)",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="give up after this many seconds of retries (default 15)",
    )

    parser = _Parser(
        prog="raftsched",
        description=(
            "raftsched: a distributed job scheduler replicated by its own Raft log. "
            "Exit codes: 0 ok, 1 refused, 2 usage, 3 unavailable."
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("demo", help="a short narrated simulated cluster run")

    p = sub.add_parser(
        "submit",
        parents=[common],
        help="submit a job",
        description="Submit a job: --payload JSON, --call mod:fn, or a command "
        "after `--` (run without a shell): raftsched submit q -- echo hi",
    )
    p.add_argument("queue")
    p.add_argument("--payload")
    p.add_argument("--call", help="Python job: 'pkg.module:function'")
    p.add_argument("--args", default="[]", help="JSON list of arguments for --call")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for --call")
    p.add_argument("--id")
    p.add_argument("--priority", type=int)
    p.add_argument("--delay-ms", type=int)
    p.add_argument("--run-at", help="ms since the epoch or ISO 8601")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--timeout-ms", type=int)
    p.add_argument("--lease-ms", type=int)
    p.add_argument("--after", action="append", help="job id that must succeed first (repeat)")
    p.add_argument("--tag", action="append")
    p.add_argument("--idempotency-key")
    p.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait for the job to finish and print it"
    )
    p.set_defaults(quiet_details=False)

    p = sub.add_parser("jobs", parents=[common], help="list jobs or show one with its events")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("job_id", nargs="?")
    p.add_argument("--queue")
    p.add_argument("--state")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--after")

    p = sub.add_parser("cancel", parents=[common], help="cancel a job")
    p.add_argument("job_id")
    p.add_argument("--reason")

    p = sub.add_parser("queues", parents=[common], help="queue counts; pause/resume/config")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "pause", "resume", "config"],
        default="list",
    )
    p.add_argument("queue", nargs="?")
    p.add_argument("--max-in-flight", type=int)
    p.add_argument("--lease-ms", type=int)
    p.add_argument("--max-attempts", type=int)
    p.add_argument(
        "--reset",
        action="append",
        choices=["max_in_flight", "lease_ms", "max_attempts"],
        help="config: set this field back to no limit / the cluster default (repeat)",
    )

    sub.add_parser("workers", parents=[common], help="registered workers")

    p = sub.add_parser("schedules", parents=[common], help="cron schedules")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "put", "delete", "backfill"],
        default="list",
    )
    p.add_argument("name", nargs="?")
    p.add_argument("--cron")
    p.add_argument("--template", help="JSON job template (queue, payload, ...)")
    p.add_argument("--timezone")
    p.add_argument("--misfire")
    p.add_argument("--misfire-cap", type=int)
    p.add_argument("--from", dest="start")
    p.add_argument("--to", dest="end")

    p = sub.add_parser("cluster", parents=[common], help="members, roles, terms, lag; changes")
    p.add_argument(
        "action",
        nargs="?",
        choices=["members", "status", "add", "remove", "transfer"],
        default="members",
    )
    p.add_argument("node_id", nargs="?", type=int)
    p.add_argument("--peer-addr")
    p.add_argument("--http-url")
    p.add_argument("--to", type=int, help="transfer: the node to hand leadership to")

    sub.add_parser("status", parents=[common], help="cluster and queue overview")

    p = sub.add_parser("backup", parents=[common], help="download a verified backup to a file")
    p.add_argument("file")
    return parser


def run_command(args: argparse.Namespace) -> int:
    try:
        if not args.cluster:
            raise UsageError("--cluster (or RAFTSCHED_CLUSTER) is required")
        with Client(args.cluster, token=args.token, timeout_s=args.timeout) as c:
            doc = COMMANDS[args.command](c, args)
    except (UsageError, ValueError) as exc:
        print(f"raftsched {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Unavailable, TimeoutError) as exc:
        message = exc.message if isinstance(exc, Unavailable) else str(exc)
        return _fail(
            args, code="unavailable", message=message, details={}, status=0, rc=EXIT_UNAVAILABLE
        )
    except ApiError as exc:
        return _fail(
            args,
            code=exc.code,
            message=exc.message,
            details=exc.details,
            status=exc.status,
            rc=EXIT_REFUSED,
        )
    except (VerifyError, OSError) as exc:
        return _fail(
            args, code="backup_failed", message=str(exc), details={}, status=0, rc=EXIT_REFUSED
        )
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        render_human(args.command, args, doc, _use_colour())
    return EXIT_OK


def _fail(
    args: argparse.Namespace,
    *,
    code: str,
    message: str,
    details: dict[str, Any],
    status: int,
    rc: int,
) -> int:
    if args.json:
        print(
            json.dumps(
                {"error": {"code": code, "message": message, "details": details, "status": status}},
                sort_keys=True,
            )
        )
    field = f" (field {details['field']})" if "field" in details else ""
    print(f"raftsched {args.command}: {code}: {message}{field}", file=sys.stderr)
    return rc


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] and args_in[0] in DELEGATED:
        return _delegate(args_in[0], args_in[1:])
    parser = build_parser()
    cmd: list[str] = []
    if args_in[:1] == ["submit"] and "--" in args_in:  # `submit Q [opts] -- prog args...`
        cut = args_in.index("--")
        args_in, cmd = args_in[:cut], args_in[cut + 1 :]
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.version:
        print(f"raftsched {__version__}")
        return EXIT_OK
    if args.command == "demo":
        return _delegate("sim", ["--demo"])
    args.cmd = cmd
    if args.command in COMMANDS:
        return run_command(args)
    parser.print_help()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""How other processes launch a worker agent.

`raftsched dev` (raftsched/server/dev_cmd.py) starts one worker next to its local cluster; it
calls `worker_argv` so the worker's flags are spelled in one place, the worker's own.
"""

from __future__ import annotations

import sys


def worker_argv(
    cluster_urls: list[str], queue: str | list[str], concurrency: int, token: str | None
) -> list[str]:
    """The argv of a `raftsched worker` child process (run it with subprocess.Popen).

    Uses this interpreter (`python -m raftsched.cli worker ...`), so it works from a venv without
    the console script on PATH. `queue` may be one name or several.
    """
    if not cluster_urls:
        raise ValueError("worker_argv: cluster_urls must name at least one node URL")
    if concurrency < 1:
        raise ValueError(f"worker_argv: concurrency must be >= 1, got {concurrency}")
    queues = [queue] if isinstance(queue, str) else list(queue)
    argv = [sys.executable, "-m", "raftsched.cli", "worker", "--cluster", ",".join(cluster_urls)]
    for q in queues:
        argv += ["--queue", q]
    argv += ["--concurrency", str(concurrency)]
    if token:
        argv += ["--token", token]
    return argv

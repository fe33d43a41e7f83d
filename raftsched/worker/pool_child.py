"""A long-lived child that runs Python jobs one after another: `python -m
raftsched.worker.pool_child [MODULE ...]` (the worker's pool, pool.py, starts it).

Protocol: one JSON object per line on stdin (`{call, args, kwargs, imports, context, env}`),
one JSON answer per line on the protocol pipe (the answer of child.run_spec plus the job's
`stdout`/`stderr` tails). The protocol pipe is a private duplicate of the original stdout;
fd 1 is then pointed at stderr, so nothing the task code (or a C library, or a subprocess it
starts) writes can corrupt the protocol. Per job, `sys.stdout`/`sys.stderr` are captured into
bounded tails and the job's RAFTSCHED_* variables are set in `os.environ` (so code reading the
environment sees its own token). MODULEs (the worker's `--import`) are imported once, up front.

Isolation is per process, like Celery's prefork pool: a job that crashes or hangs takes only
this child down (the worker kills its process group and starts another), but module-level
state set by one job is visible to the next job run by the same child.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from typing import IO, Any

from raftsched.worker.child import run_spec

TAIL_BYTES_DEFAULT = 4096


class BoundedText(io.TextIOBase):
    """A text sink keeping only its last `limit` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.parts.append(s)
        self.size += len(s)
        if self.size > 4 * self.limit:
            self.parts = [self.value()]
            self.size = len(self.parts[0])
        return len(s)

    def value(self) -> str:
        return "".join(self.parts)[-self.limit :]


def serve(requests: IO[bytes], answers: IO[bytes], tail_bytes: int) -> None:
    for line in requests:
        spec: dict[str, Any] = json.loads(line)
        os.environ.update(spec.get("env") or {})
        out, err = BoundedText(tail_bytes), BoundedText(tail_bytes)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            answer = run_spec(spec)
        finally:
            sys.stdout, sys.stderr = saved
        answer["stdout"], answer["stderr"] = out.value(), err.value()
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


def main(argv: list[str]) -> int:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    for name in argv:
        importlib.import_module(name)
    tail_bytes = int(os.environ.get("RAFTSCHED_TAIL_BYTES", TAIL_BYTES_DEFAULT))
    serve(sys.stdin.buffer, answers, tail_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

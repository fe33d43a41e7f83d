"""Python jobs the worker tests run (imported by dotted path in the job's child process)."""

from __future__ import annotations

import os
import time
from typing import Any

import raftsched
from raftsched.worker.context import JobContext, Permanent


def add(a: int, b: int) -> int:
    return a + b


def whoami(ctx: JobContext) -> dict[str, Any]:
    assert os.environ["RAFTSCHED_FENCING_TOKEN"] == str(ctx.token)
    return {"job_id": ctx.job_id, "attempt": ctx.attempt, "token": ctx.token, "queue": ctx.queue}


def fail_first(ctx: JobContext) -> dict[str, int]:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt, "token": ctx.token}


def permanent() -> None:
    raise Permanent("do not retry me")


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@raftsched.task(queue="deco", max_attempts=2)
def multiply(a: int, b: int) -> int:
    return a * b


@raftsched.task(queue="deco", max_attempts=1)
def explode(message: str) -> None:
    raise ValueError(message)


def pid() -> int:
    return os.getpid()


def noisy(text: str) -> str:
    print(text)
    print("to stderr", file=__import__("sys").stderr)
    return text


def crash(code: int) -> None:
    os._exit(code)


def token_from_env() -> str:
    return os.environ["RAFTSCHED_FENCING_TOKEN"]


def touch_and_sleep(path: str, seconds: float) -> None:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)

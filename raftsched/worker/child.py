"""The child process that runs one Python job: `python -m raftsched.worker.child SPEC RESULT`.

SPEC is a JSON file `{call: "pkg.mod:func", args, kwargs, imports, context}`. The child imports
the `--import` modules (so `@raftsched.task` functions are registered), resolves `call`, calls
it and writes `{"ok": true, "result": ...}` or `{"ok": false, "error": {...}, "retryable": b}`
to RESULT. A function receives the job's `JobContext` (id, attempt, queue, fencing token) when
it is a task declared with `bind=True` (as the first argument) or has a parameter named `ctx`.
An exception is retryable unless it has `retryable = False` (see `raftsched.worker.Permanent`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftsched.worker.context import JobContext


def resolve(call: str) -> Callable[..., Any]:
    module_name, _, attr = call.partition(":")
    if not module_name or not attr:
        raise ValueError(f"call {call!r} must be 'pkg.module:function'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{call} is not callable")
    return obj  # type: ignore[no-any-return]


# A pool child runs job after job, mostly of the same few functions: whether a function takes
# `ctx` is looked up once per function, not per job (inspect.signature of a builtin parses its
# text signature: ~55 us, most of a trivial job's cost in the child). Bounded: a child running
# many distinct callables only loses the cache, never grows without limit.
TAKES_CTX_CACHE_MAX = 1024
_takes_ctx_cache: dict[Callable[..., Any], bool] = {}


def _takes_ctx(target: Callable[..., Any]) -> bool:
    try:
        cached = _takes_ctx_cache.get(target)
    except TypeError:  # an unhashable callable: look it up every time
        cached = None
        hashable = False
    else:
        hashable = True
    if cached is not None:
        return cached
    try:
        takes = "ctx" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        takes = False
    if hashable:
        if len(_takes_ctx_cache) >= TAKES_CTX_CACHE_MAX:
            _takes_ctx_cache.clear()
        _takes_ctx_cache[target] = takes
    return takes


def invoke(fn: Callable[..., Any], ctx: JobContext, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if getattr(fn, "bind", False):
        return fn(ctx, *args, **kwargs)
    if _takes_ctx(getattr(fn, "fn", fn)) and "ctx" not in kwargs:
        return fn(*args, ctx=ctx, **kwargs)
    return fn(*args, **kwargs)


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job spec in this process; the answer to write back (never raises)."""
    ctx = JobContext(**spec["context"])
    try:
        for name in spec.get("imports", []):
            importlib.import_module(name)
        fn = resolve(spec["call"])
        value = invoke(fn, ctx, list(spec["args"]), dict(spec["kwargs"]))
        json.dumps(value)  # must be JSON: fail here with a clear error, not in the worker
        return {"ok": True, "result": value}
    except Exception as exc:  # the task's own failure, reported to the cluster
        return {
            "ok": False,
            "error": {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(limit=20)[-4000:],
            },
            "retryable": getattr(exc, "retryable", True) is not False,
        }


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    answer = run_spec(json.loads(spec_path.read_text()))
    result_path.write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

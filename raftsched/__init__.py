"""raftsched: a distributed job scheduler replicated by its own Raft log."""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from raftsched.worker.task import TaskFailed, TaskHandle, configure, task

__all__ = ["TaskFailed", "TaskHandle", "__version__", "configure", "task"]


def __getattr__(name: str) -> Any:
    # `raftsched.task` / `raftsched.configure` load the client (aiohttp) only when used, so the
    # pure packages (raft, sched) import nothing beyond the standard library.
    if name in ("task", "configure", "TaskFailed", "TaskHandle"):
        return getattr(importlib.import_module("raftsched.worker.task"), name)
    raise AttributeError(f"module 'raftsched' has no attribute {name!r}")

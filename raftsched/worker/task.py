"""`@raftsched.task`: Celery/RQ-style submission of Python functions as raftsched jobs.

    @raftsched.task(queue="emails", max_attempts=3)
    def send(to: str) -> str: ...

    h = send.submit("a@b.c")             # a job {"call": "mymod:send", "args": ["a@b.c"]}
    h2 = report.submit(after=[h])        # runs once h succeeded (depends_on)
    h2.result(timeout=30)                # waits; raises TaskFailed with the remote error

Workers run it with `raftsched worker --queue emails --import mymod`. The function must live
in an importable module (not `__main__`): the job names it by dotted path, and the worker's
child process imports it. Arguments and results must be JSON values. The cluster comes from
`raftsched.configure(cluster=..., token=...)` or RAFTSCHED_CLUSTER / RAFTSCHED_TOKEN.
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

from raftsched.client import Client, Job

P = ParamSpec("P")
R = TypeVar("R")

REGISTRY: dict[str, Task[Any, Any]] = {}
_default: dict[str, Client] = {}


class TaskFailed(Exception):
    """The job ended dead (attempts exhausted, permanent error, or upstream failed)."""

    def __init__(self, job: Job) -> None:
        err = job.error if isinstance(job.error, dict) else {"message": job.error}
        text = f"{err.get('type', 'error')}: {err.get('message', '')}".strip(": ")
        super().__init__(f"job {job.id} {job.state} ({job.reason or 'failed'}): {text}")
        self.job = job
        self.error = job.error


class TaskCancelled(TaskFailed):
    pass


def configure(cluster: str | Sequence[str], *, token: str | None = None) -> Client:
    """Set the cluster the decorated tasks submit to (else RAFTSCHED_CLUSTER is used)."""
    _close_default()
    _default["client"] = Client(cluster, token=token)
    return _default["client"]


@atexit.register
def _close_default() -> None:
    """Close the default client (its HTTP session) when replaced and at exit."""
    old = _default.pop("client", None)
    if old is not None:
        old.close()


def default_client() -> Client:
    if "client" not in _default:
        cluster = os.environ.get("RAFTSCHED_CLUSTER")
        if not cluster:
            raise RuntimeError(
                "no cluster: call raftsched.configure(cluster=...) or set RAFTSCHED_CLUSTER"
            )
        return configure(cluster, token=os.environ.get("RAFTSCHED_TOKEN"))
    return _default["client"]


class TaskHandle:
    """A submitted job: `.id`, `.status()`, `.result(timeout)`, `.cancel()`."""

    def __init__(self, job_id: str, client: Client) -> None:
        self.id = job_id
        self._client = client

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def job(self) -> Job:
        return self._client.get_job(self.id)

    def status(self) -> str:
        return self.job().state

    def result(self, timeout: float = 60.0) -> Any:
        job = self._client.wait(self.id, timeout_s=timeout)
        if job.state == "succeeded":
            return job.result
        if job.state == "cancelled":
            raise TaskCancelled(job)
        raise TaskFailed(job)

    def cancel(self) -> None:
        self._client.cancel(self.id)


class Task(Generic[P, R]):
    def __init__(
        self,
        fn: Callable[P, R],
        *,
        queue: str,
        max_attempts: int | None,
        timeout_ms: int | None,
        priority: int | None,
        bind: bool,
    ) -> None:
        self.fn = fn
        self.queue = queue
        self.max_attempts = max_attempts
        self.timeout_ms = timeout_ms
        self.priority = priority
        self.bind = bind
        self.name = f"{fn.__module__}:{fn.__qualname__}"
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "task")
        REGISTRY[self.name] = self

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def submit(
        self,
        *args: Any,
        after: Sequence[TaskHandle | str] = (),
        id: str | None = None,
        client: Client | None = None,
        **kwargs: Any,
    ) -> TaskHandle:
        """Submit one run; `after` handles (or job ids) must succeed first."""
        if self.fn.__module__ == "__main__":
            raise ValueError(
                f"task {self.__name__} is defined in __main__; move it to an "
                "importable module so workers can import it by name"
            )
        payload = {"call": self.name, "args": list(args), "kwargs": kwargs}
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"task {self.name}: arguments must be JSON values ({exc})") from None
        c = client or default_client()
        deps = [a.id if isinstance(a, TaskHandle) else a for a in after]
        job = c.submit(
            self.queue,
            payload,
            id=id,
            max_attempts=self.max_attempts,
            timeout_ms=self.timeout_ms,
            priority=self.priority,
            depends_on=deps or None,
        )
        return TaskHandle(job.id, c)

    delay = submit  # the Celery spelling


def task(
    *,
    queue: str,
    max_attempts: int | None = None,
    timeout_ms: int | None = None,
    priority: int | None = None,
    bind: bool = False,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a function as a raftsched task. `bind=True` passes the `JobContext` (job id,
    attempt, fencing token) as the first argument when a worker runs it."""

    def wrap(fn: Callable[P, R]) -> Task[P, R]:
        return Task(
            fn,
            queue=queue,
            max_attempts=max_attempts,
            timeout_ms=timeout_ms,
            priority=priority,
            bind=bind,
        )

    return wrap

"""Coalescing of job reports: the completes and fails that finish within a few milliseconds
of each other go to the cluster as ONE `POST /v1/jobs:complete` (one request, one Raft entry).

Theory of operation. A finished job's task calls `report(lease, outcome)` and awaits the text
its "job end" log line shows. The first pending report arms a timer of `window_s`; when it
fires, or as soon as `max_reports` are pending, the pending reports leave in one request (sent
in its own task, so the next batch can fill meanwhile). The cluster answers one result per
report; each is turned into the same text the single report would give: a refused report
(stale token, lease expired, job ended) reads `refused (<code>: lease lost)` and concerns
that job only.

Falling back. A 404 (a node without the route) switches batching off for the rest of the
run and sends these reports one by one. Any other refusal of the request as a whole (400/413:
a malformed batch, a cluster with a smaller `max_batch_jobs`) sends these reports one by one.
A 429 is retried with its Retry-After for up to REPORT_OVERLOADED_RETRY_S, as single reports
are; a cluster unavailable for the client's whole deadline fails the reports (the leases then
expire and the jobs run again, as after a failed single report). `max_reports` <= 1 means
single reports only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from raftsched.client import (
    ApiError,
    AsyncClient,
    NotFound,
    Overloaded,
    Unavailable,
)
from raftsched.client import Lease as ClientLease
from raftsched.worker.runner import SUCCEEDED, Outcome

log = logging.getLogger("raftsched.worker")
REPORT_OVERLOADED_RETRY_S = 60.0  # how long a report answered 429 keeps being retried
# Per-report codes that mean "this worker no longer holds the job" (409s of complete/fail).
LOST_CODES = frozenset({"stale_token", "lease_expired", "not_leased", "already_terminal"})

SingleReport = Callable[[ClientLease, Outcome], Awaitable[str]]
Pending = tuple[ClientLease, Outcome, "asyncio.Future[str]"]


def ok_text(outcome: Outcome) -> str:
    """The log text of an accepted report."""
    if outcome.kind == SUCCEEDED:
        return "succeeded"
    return f"{outcome.kind}{'' if outcome.retryable else ' (not retryable)'}"


def report_body(lease: ClientLease, outcome: Outcome) -> dict[str, Any]:
    if outcome.kind == SUCCEEDED:
        return {"job_id": lease.job_id, "token": lease.token, "result": outcome.result}
    return {
        "job_id": lease.job_id,
        "token": lease.token,
        "error": outcome.error,
        "retryable": outcome.retryable,
    }


def overload_wait_s(exc: Overloaded, deadline: float) -> float | None:
    """How long to wait before retrying a 429, or None when the deadline would pass."""
    wait_s = min(max(exc.retry_after_s or 0.5, 0.1), 5.0)
    return None if time.monotonic() + wait_s > deadline else wait_s


def result_text(result: dict[str, Any] | None, outcome: Outcome) -> str:
    if result is None:
        return "report failed (no result for this job in the answer)"
    if result.get("ok") is True:
        return ok_text(outcome)
    error = result.get("error")
    err = error if isinstance(error, dict) else {}
    code = str(err.get("code", "error"))
    if code in LOST_CODES:
        return f"refused ({code}: lease lost)"
    return f"report failed ({code}: {err.get('message', '')})"


class ReportBatcher:
    def __init__(
        self,
        client: AsyncClient,
        single: SingleReport,
        *,
        window_s: float,
        max_reports: int,
    ) -> None:
        self._client = client
        self._single = single
        self._window_s = window_s
        self._max = max_reports
        self.enabled = max_reports > 1
        self.requests = 0  # batched requests sent (tests, logs)
        self._pending: list[Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def report(self, lease: ClientLease, outcome: Outcome) -> str:
        if not self.enabled:
            return await self._single(lease, outcome)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._pending.append((lease, outcome, fut))
        if len(self._pending) >= self._max:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Pending]) -> None:
        try:
            texts = await self._texts(batch)
        except Exception as exc:  # a bug: fail the reports loudly rather than hang the jobs
            log.exception("batched report failed")
            texts = [f"report failed ({exc!r})"] * len(batch)
        for (_, _, fut), text in zip(batch, texts, strict=True):
            if not fut.done():  # the job's task may have been cancelled meanwhile
                fut.set_result(text)

    async def _texts(self, batch: list[Pending]) -> list[str]:
        reports = [report_body(lease, outcome) for lease, outcome, _ in batch]
        deadline = time.monotonic() + REPORT_OVERLOADED_RETRY_S
        while True:
            try:
                self.requests += 1
                results = await self._client.report_batch(reports)
                break
            except NotFound as exc:  # no such route: a node older than the batched report
                log.info("batched reports not supported (%s); reporting one by one", exc)
                self.enabled = False
                return await self._one_by_one(batch)
            except Overloaded as exc:
                wait_s = overload_wait_s(exc, deadline)
                if wait_s is None:
                    return [f"report failed ({exc})"] * len(batch)
                await asyncio.sleep(wait_s)
            except Unavailable as exc:  # the client already retried for its whole deadline
                return [f"report failed ({exc})"] * len(batch)
            except ApiError as exc:  # the batch as a whole was refused: each on its own
                log.warning("batched report refused (%s); reporting one by one", exc)
                return await self._one_by_one(batch)
        by_job = {str(r.get("job_id")): r for r in results}
        return [result_text(by_job.get(lease.job_id), outcome) for lease, outcome, _ in batch]

    async def _one_by_one(self, batch: list[Pending]) -> list[str]:
        return list(
            await asyncio.gather(*(self._single(lease, outcome) for lease, outcome, _ in batch))
        )

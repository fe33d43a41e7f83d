"""ReportBatcher in-process, against a scripted client: coalescing, per-report texts, fallbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from raftsched.client import AsyncClient, BadRequest, Lease, NotFound, Overloaded, Unavailable
from raftsched.worker.reports import ReportBatcher
from raftsched.worker.runner import FAILED, SUCCEEDED, Outcome

pytestmark = pytest.mark.asyncio


class ScriptedClient:
    """Answers report_batch as the cluster would (stale tokens refused), after raising the
    scripted errors first."""

    def __init__(
        self, errors: Sequence[Exception] = (), stale: frozenset[str] = frozenset()
    ) -> None:
        self.errors = list(errors)
        self.stale = stale
        self.batches: list[list[str]] = []

    async def report_batch(self, reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        self.batches.append([str(r["job_id"]) for r in reports])
        if self.errors:
            raise self.errors.pop(0)
        out: list[dict[str, Any]] = []
        for r in reports:
            if r["job_id"] in self.stale:
                err = {"code": "stale_token", "message": "old", "details": {}}
                out.append({"job_id": r["job_id"], "error": err})
            else:
                state = "succeeded" if "result" in r else "pending"
                out.append({"job_id": r["job_id"], "ok": True, "state": state})
        return out


def _lease(job_id: str) -> Lease:
    return Lease(
        job_id=job_id,
        queue="q",
        token=7,
        attempt=1,
        max_attempts=3,
        payload=None,
        timeout_ms=None,
        lease_expires_at=None,
        leased_at=None,
        raw={},
    )


def _batcher(client: ScriptedClient, singles: list[str], **kw: Any) -> ReportBatcher:
    async def single(lease: Lease, outcome: Outcome) -> str:
        singles.append(lease.job_id)
        return "single"

    kw.setdefault("window_s", 0.01)
    kw.setdefault("max_reports", 64)
    return ReportBatcher(cast(AsyncClient, client), single, **kw)


async def test_reports_within_the_window_share_one_request() -> None:
    client = ScriptedClient(stale=frozenset({"b"}))
    batcher = _batcher(client, [])
    texts = await asyncio.gather(
        batcher.report(_lease("a"), Outcome(SUCCEEDED, result=1)),
        batcher.report(_lease("b"), Outcome(SUCCEEDED, result=2)),
        batcher.report(_lease("c"), Outcome(FAILED, error="x", retryable=False)),
    )
    assert client.batches == [["a", "b", "c"]]
    refused = "refused (stale_token: lease lost)"  # the text a refused single report logs
    assert list(texts) == ["succeeded", refused, "failed (not retryable)"]


async def test_a_full_batch_leaves_at_once_and_the_rest_waits_for_the_window() -> None:
    client = ScriptedClient()
    batcher = _batcher(client, [], window_s=30.0, max_reports=2)
    first = [asyncio.ensure_future(batcher.report(_lease(j), Outcome(SUCCEEDED))) for j in "ab"]
    assert await asyncio.gather(*first) == ["succeeded"] * 2  # no 30 s wait
    assert client.batches == [["a", "b"]]


async def test_a_404_switches_to_single_reports_for_good() -> None:
    singles: list[str] = []
    client = ScriptedClient(errors=[NotFound(404, "no_route", "no such route", {})])
    batcher = _batcher(client, singles)
    assert await batcher.report(_lease("a"), Outcome(SUCCEEDED)) == "single"
    assert await batcher.report(_lease("b"), Outcome(SUCCEEDED)) == "single"
    assert client.batches == [["a"]] and singles == ["a", "b"] and not batcher.enabled


async def test_a_batch_refused_whole_is_sent_one_by_one_and_batching_stays_on() -> None:
    singles: list[str] = []
    client = ScriptedClient(errors=[BadRequest(413, "batch_too_large", "too many", {})])
    batcher = _batcher(client, singles)
    assert await batcher.report(_lease("a"), Outcome(SUCCEEDED)) == "single"
    assert await batcher.report(_lease("b"), Outcome(SUCCEEDED)) == "succeeded"
    assert singles == ["a"] and batcher.enabled


async def test_429_is_retried_and_unavailable_fails_the_reports() -> None:
    overloaded = Overloaded(429, "overloaded", "busy", {}, 0.1)
    client = ScriptedClient(errors=[overloaded])
    batcher = _batcher(client, [])
    assert await batcher.report(_lease("a"), Outcome(SUCCEEDED)) == "succeeded"
    assert client.batches == [["a"], ["a"]]
    down = ScriptedClient(errors=[Unavailable(503, "no_leader", "down", {})])
    text = await _batcher(down, []).report(_lease("b"), Outcome(SUCCEEDED))
    assert text.startswith("report failed")


async def test_max_reports_one_never_batches() -> None:
    singles: list[str] = []
    client = ScriptedClient()
    batcher = _batcher(client, singles, max_reports=1)
    assert await batcher.report(_lease("a"), Outcome(SUCCEEDED)) == "single"
    assert client.batches == [] and singles == ["a"]

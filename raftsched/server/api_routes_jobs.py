"""Job routes of SPEC §5: submit one, submit a batch, submit a workflow, get, list, cancel.

Each mutating handler is the hops of api_common.py: body -> parse -> propose -> answer. The
state machine answers a submit with small records ({id, state, seq, created}); these handlers
then render the full job documents from the replica that just applied the entry (the answer is
read on the event loop right after `propose` returns, so it is the state the entry made, or
later). A document that retention already removed (a keyed retry days later) falls back to the
small record.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftsched.sched import Limits, SchedulerState
from raftsched.sched import parse as p

from .api_common import (
    idempotency_key,
    json_response,
    merge_path,
    not_found,
    propose,
    propose_shared,
    query_int,
    query_str,
    read_json,
    read_point,
    runtime_of,
)
from .api_runtime import plain
from .http_errors import bad_request

MAX_LIST_LIMIT = 1_000
DEFAULT_LIST_LIMIT = 100
JOB_STATES = ("waiting", "scheduled", "pending", "leased", "succeeded", "dead", "cancelled")


def limits_of(request: web.Request) -> Limits:
    return runtime_of(request).state.limits


def path_job_id(request: web.Request, limits: Limits) -> str:
    job_id = request.match_info["id"]
    if len(job_id) > limits.max_id_chars + 21 or p.JOB_REF_RE.fullmatch(job_id) is None:
        raise bad_request("id", f"not a job id (must match {p.JOB_REF_RE.pattern})")
    return job_id


def _docs(state: SchedulerState, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fresh job documents for the state machine's records (which are not changed: they may
    be the idempotency table's own)."""
    docs = []
    for item in items:
        doc = state.get_job(item["id"])
        if doc is None:
            docs.append(plain(item))
        else:
            doc["created"] = item.get("created", True)
            docs.append(doc)
    return docs


def brief_answer(request: web.Request) -> bool:
    """`?answer=brief` (opt-in): answer the state machine's own records {id, state, seq,
    created} without rendering each job's document; `full` (the default): the documents.
    Checked before anything is proposed."""
    kind = request.query.get("answer", "full")
    if kind not in ("full", "brief"):
        raise bad_request("answer", "must be full or brief")
    return kind == "brief"


def _submit_answer(
    request: web.Request, items: list[dict[str, Any]], *, brief: bool
) -> list[dict[str, Any]]:
    if brief:
        return [plain(item) for item in items]
    return _docs(runtime_of(request).state, items)


async def submit_job(request: web.Request) -> web.Response:
    brief = brief_answer(request)
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_job(body, limits_of(request), idempotency_key(request))
    value = await propose_shared(request, cmd)
    [doc] = _submit_answer(request, value["jobs"], brief=brief)
    return json_response({"job": doc}, status=201 if doc["created"] else 200)


async def submit_batch(request: web.Request) -> web.Response:
    brief = brief_answer(request)
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_batch(body, limits_of(request), idempotency_key(request))
    value = await propose_shared(request, cmd)
    docs = _submit_answer(request, value["jobs"], brief=brief)
    created = any(doc["created"] for doc in docs)
    return json_response({"jobs": docs}, status=201 if created else 200)


async def submit_workflow(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    cmd = p.parse_submit_workflow(body, limits_of(request), idempotency_key(request))
    value = await propose(request, cmd)
    docs = _docs(runtime_of(request).state, value["jobs"])
    return json_response({"workflow": value["workflow"], "jobs": docs}, status=201)


async def get_job(request: web.Request) -> web.Response:
    job_id = path_job_id(request, limits_of(request))
    state = await read_point(request)
    doc = state.get_job(job_id)
    if doc is None:
        raise not_found("job", job_id)
    return json_response(doc)


async def list_jobs(request: web.Request) -> web.Response:
    limits = limits_of(request)
    queue = query_str(request, "queue", p.NAME_RE, limits.max_id_chars)
    state_name = request.query.get("state") or None
    if state_name is not None and state_name not in JOB_STATES:
        raise bad_request("state", f"must be one of {', '.join(JOB_STATES)}")
    limit = query_int(request, "limit", lo=1, hi=MAX_LIST_LIMIT, default=DEFAULT_LIST_LIMIT)
    after = query_int(request, "after", lo=0, hi=2**63 - 1, default=None)
    assert limit is not None
    state = await read_point(request)
    page, next_after = state.list_jobs(queue, state_name, limit, after)  # O(page), indexed
    return json_response({"jobs": page, "next_after": next_after})


async def cancel_job(request: web.Request) -> web.Response:
    """Answers the job document after the cancel (the CLI and client show it)."""
    limits = limits_of(request)
    body = merge_path(await read_json(request), "job_id", path_job_id(request, limits))
    value = await propose(request, p.parse_cancel(body, limits, idempotency_key(request)))
    doc = runtime_of(request).state.get_job(value["id"])
    return json_response({"job": doc if doc is not None else value})

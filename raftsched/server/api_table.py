"""The API's route table: every route of SPEC §5 once, with what the router, auth, forwarding
and GET /v1/openapi.json need to know about it.

`Route.forward`: a follower forwards the request to the leader (mutating requests; reads are
served locally after a read barrier, which itself may ask for forwarding by raising NotLeader).
`Route.role`: the least role that may call it (auth.py: admin may do everything, every role
may read). `body` / `query` / `answer` / `errors` are rendered by openapi.py and docs/api.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import api_routes_cluster as rc
from . import api_routes_config as rq
from . import api_routes_jobs as rj
from . import api_routes_leases as rl
from . import api_routes_meta as rm
from . import api_routes_ops as ro
from . import auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str  # a JSON Schema type, or "any"
    doc: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: auth.Role
    summary: str
    answer: str
    ok: int = 200
    mutating: bool = False
    forward: bool = False
    body: tuple[Field, ...] = ()
    query: tuple[Field, ...] = ()
    errors: tuple[str, ...] = ()


BASE_ERRORS = ("401", "403", "429", "503")
READ_ERRORS = ("400", *BASE_ERRORS)
WRITE_ERRORS = ("400", "401", "403", "409", "413", "429", "503")
CONSISTENCY = Field("consistency", "string", "linearizable (default) | stale")
SUBMIT_ANSWER = Field(
    "answer",
    "string",
    "full (default): job documents | brief: {id, state, seq, created} each, without rendering"
    " the documents (a faster answer for bulk submitters)",
)

JOB_FIELDS = (
    Field("id", "string", "optional; [A-Za-z0-9][A-Za-z0-9._:-]*, no 'auto-' prefix"),
    Field("queue", "string", "queue name", True),
    Field("payload", "any", "any JSON value, at most max_payload_bytes canonical JSON"),
    Field("priority", "integer", "higher first; default 0"),
    Field("run_at", "integer", "ms since the epoch; not with delay_ms"),
    Field("delay_ms", "integer", "run after this delay; not with run_at"),
    Field("max_attempts", "integer", "default: the queue's, else the cluster's"),
    Field("backoff", "object", "{initial_ms, multiplier, max_ms}"),
    Field("lease_ms", "integer", "how long one attempt may hold the job without a heartbeat"),
    Field("timeout_ms", "integer", "total budget of one attempt"),
    Field("depends_on", "array", "job ids that must succeed first"),
    Field("tags", "array", "strings"),
)
JOB_ANSWER = "job document: id, seq, queue, state, reason, payload, ..., events, created"


def _job_op(
    path: str,
    handler: Handler,
    role: auth.Role,
    summary: str,
    *,
    answer: str,
    body: tuple[Field, ...],
) -> Route:
    return Route(
        "POST",
        path,
        handler,
        role,
        summary,
        answer,
        mutating=True,
        forward=True,
        body=body,
        errors=(*WRITE_ERRORS, "404"),
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs",
        rj.submit_job,
        "submit",
        "Submit one job",
        "{job}; 201 created, 200 when the same id with the same spec exists",
        201,
        mutating=True,
        forward=True,
        body=JOB_FIELDS,
        query=(SUBMIT_ANSWER,),
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/jobs:batch",
        rj.submit_batch,
        "submit",
        "Submit many jobs, all or none",
        "{jobs: [job]}; 201 when any was created",
        201,
        mutating=True,
        forward=True,
        body=(Field("jobs", "array", "job objects (1..max_batch_jobs)", True),),
        query=(SUBMIT_ANSWER,),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/jobs",
        rj.list_jobs,
        "read",
        "List jobs in submit order",
        "{jobs: [job], next_after: cursor or null}",
        query=(
            CONSISTENCY,
            Field("queue", "string", "only this queue"),
            Field("state", "string", "only this state"),
            Field("limit", "integer", "1..1000, default 100"),
            Field("after", "integer", "next_after of the previous page"),
        ),
        errors=READ_ERRORS,
    ),
    Route(
        "GET",
        "/v1/jobs/{id}",
        rj.get_job,
        "read",
        "One job",
        JOB_ANSWER,
        query=(CONSISTENCY,),
        errors=(*READ_ERRORS, "404"),
    ),
    _job_op(
        "/v1/jobs/{id}/cancel",
        rj.cancel_job,
        "submit",
        "Cancel a non-terminal job",
        answer="{job}",
        body=(Field("reason", "string", "optional, recorded on the job"),),
    ),
    _job_op(
        "/v1/jobs/{id}/heartbeat",
        rl.heartbeat_lease,
        "worker",
        "Extend a lease",
        answer="{job_id, token, lease_expires_at}; stale token 409",
        body=(
            Field("token", "integer", "the lease's fencing token", True),
            Field("extend_ms", "integer", "default: the job's lease_ms"),
        ),
    ),
    _job_op(
        "/v1/jobs/{id}/complete",
        rl.complete_job,
        "worker",
        "Complete a leased job",
        answer="{id, state, token, attempts, run_at}; stale token 409",
        body=(
            Field("token", "integer", "the lease's fencing token", True),
            Field("result", "any", "any JSON value"),
        ),
    ),
    _job_op(
        "/v1/jobs/{id}/fail",
        rl.fail_job,
        "worker",
        "Fail a leased job's attempt",
        answer="{id, state, token, attempts, run_at}; stale token 409",
        body=(
            Field("token", "integer", "the lease's fencing token", True),
            Field("error", "any", "any JSON value"),
            Field("retryable", "boolean", "default true; false: dead now"),
        ),
    ),
    Route(
        "POST",
        "/v1/jobs:complete",
        rl.report_batch,
        "worker",
        "Report many completes/fails in one entry; each report succeeds or fails on its own",
        "{results: [{job_id, ok: true, state} | {job_id, error: {code, message, details}}]} "
        "in the reports' order; a stale token refuses that report only",
        mutating=True,
        forward=True,
        body=(
            Field(
                "reports",
                "array",
                "1..max_batch_jobs of {job_id, token, result} (complete) or "
                "{job_id, token, error, retryable} (fail: has error or retryable)",
                True,
            ),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/lease",
        rl.lease,
        "worker",
        "Lease up to max_jobs jobs, long-polling up to wait_ms",
        "{leases: [{job_id, queue, payload, token, lease_expires_at, attempt, max_attempts, "
        "timeout_ms, tags, job}]} (may be empty)",
        mutating=True,
        forward=True,
        body=(
            Field("worker_id", "string", "the worker's id", True),
            Field("max_jobs", "integer", "default 1"),
            Field("wait_ms", "integer", "0..60000, capped by the node's lease_wait_ms_max"),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/queues",
        rq.list_queues,
        "read",
        "Queues with config and counts by state",
        "{queues: [{name, config, counts}]}",
        query=(CONSISTENCY,),
        errors=READ_ERRORS,
    ),
    Route(
        "GET",
        "/v1/queues/{queue}",
        rq.get_queue,
        "read",
        "One queue",
        "{queue: {name, config, counts}}",
        query=(CONSISTENCY,),
        errors=(*READ_ERRORS, "404"),
    ),
    Route(
        "PUT",
        "/v1/queues/{queue}",
        rq.configure_queue,
        "admin",
        "Configure a queue (fields left out keep their value)",
        "{queue: {name, config, counts}}",
        mutating=True,
        forward=True,
        body=(
            Field("max_in_flight", "integer", "leased jobs at most; null: no limit"),
            Field("lease_ms", "integer", "default lease; null: cluster default"),
            Field("max_attempts", "integer", "default attempts; null: cluster default"),
            Field("paused", "boolean", "paused queues lease nothing"),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/workers/{id}/heartbeat",
        rl.worker_heartbeat,
        "worker",
        "Register a worker or refresh its liveness",
        "{worker}",
        mutating=True,
        forward=True,
        body=(
            Field("capacity", "integer", "jobs it may hold at once", True),
            Field("queues", "array", "queue names it serves"),
            Field("ttl_ms", "integer", "registration lifetime without a heartbeat"),
            Field(
                "incarnation",
                "string",
                "a restarted worker's new incarnation releases the old one's leases at once",
            ),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/workers",
        rl.list_workers,
        "read",
        "Registered workers",
        "{workers: [worker]}",
        query=(CONSISTENCY,),
        errors=READ_ERRORS,
    ),
    Route(
        "PUT",
        "/v1/schedules/{name}",
        rq.put_schedule,
        "admin",
        "Create or replace a cron schedule",
        "{schedule, created}; 201 created, 200 replaced",
        mutating=True,
        forward=True,
        body=(
            Field("cron", "string", "5 fields, or 6 with seconds first", True),
            Field("template", "object", "job fields without id/run_at/delay_ms/depends_on", True),
            Field("timezone", "string", "IANA zone, default UTC"),
            Field("misfire", "string", "skip | fire_once (default) | fire_all"),
            Field("misfire_cap", "integer", "fire_all: at most this many, default 100"),
            Field("misfire_grace_ms", "integer", "how late a fire still counts as on time"),
            Field("paused", "boolean", "paused schedules do not fire"),
            Field("overlap", "string", "allow (default) | skip_if_running"),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/schedules",
        rq.list_schedules,
        "read",
        "Cron schedules",
        "{schedules: [schedule]}",
        query=(CONSISTENCY,),
        errors=READ_ERRORS,
    ),
    Route(
        "GET",
        "/v1/schedules/{name}",
        rq.get_schedule,
        "read",
        "One cron schedule",
        "{schedule}",
        query=(CONSISTENCY,),
        errors=(*READ_ERRORS, "404"),
    ),
    Route(
        "DELETE",
        "/v1/schedules/{name}",
        rq.delete_schedule,
        "admin",
        "Delete a schedule",
        "{deleted: name}",
        mutating=True,
        forward=True,
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/backfill",
        rq.backfill,
        "admin",
        "Create the fires of a past interval that never made a job",
        "{created: [job id], skipped: [job id]}",
        mutating=True,
        forward=True,
        body=(
            Field("from", "integer", "ms since the epoch, exclusive", True),
            Field("to", "integer", "ms since the epoch, inclusive, not in the future", True),
        ),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/workflows",
        rj.submit_workflow,
        "submit",
        "Submit a DAG of jobs, all or none (a cycle is a 400 naming it)",
        "{workflow, jobs: [job]}",
        201,
        mutating=True,
        forward=True,
        body=(
            Field("id", "string", "workflow id", True),
            Field("jobs", "array", "job objects, each with an id", True),
        ),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/workflows/{id}",
        ro.get_workflow,
        "read",
        "A workflow's progress",
        "{workflow, counts: {state: n}, done, jobs: [{id, state}]}",
        query=(CONSISTENCY,),
        errors=(*READ_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/workflows/{id}/cancel",
        ro.cancel_workflow,
        "submit",
        "Cancel every unfinished job of a workflow",
        "{workflow, cancelled: [job id]}",
        mutating=True,
        forward=True,
        body=(Field("reason", "string", "optional"),),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/jobs:requeue",
        ro.requeue_dead,
        "admin",
        "Dead letters: move dead jobs back to pending, all or none",
        "{jobs: [{id, state, token, attempts, run_at}]}",
        mutating=True,
        forward=True,
        body=(
            Field("job_ids", "array", "dead job ids (1..max_requeue_jobs)", True),
            Field("max_attempts", "integer", "a new attempt budget"),
        ),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/jobs:purge",
        ro.purge_dead,
        "admin",
        "Dead letters: delete dead jobs now",
        "{purged: [job id]}",
        mutating=True,
        forward=True,
        body=(Field("job_ids", "array", "dead job ids (1..max_requeue_jobs)", True),),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "GET",
        "/v1/cluster/settings",
        ro.get_settings,
        "read",
        "The replicated scheduler settings (limits)",
        "{settings: {name: int}}",
        query=(CONSISTENCY,),
        errors=READ_ERRORS,
    ),
    Route(
        "PATCH",
        "/v1/cluster/settings",
        ro.update_settings,
        "admin",
        "Change scheduler settings (a partial update, replicated)",
        "{settings: {name: int}, applied}",
        mutating=True,
        forward=True,
        body=(Field("settings", "object", "{name: positive int}; names as GET answers", True),),
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/cluster/clock",
        ro.accept_clock_jump,
        "admin",
        "Accept a forward jump of the state-machine clock larger than one step",
        "{clock, clock_skew}",
        mutating=True,
        forward=True,
        body=(Field("to", "integer", "ms since the epoch", True),),
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/cluster",
        rc.get_cluster,
        "read",
        "This node's view of the cluster",
        "{node_id, role, term, leader_id, leader_http_url, commit_index, applied_index, "
        "chain_hash, members: [{node_id, voter, peer_addr, http_url, match_index, lag}], ...}",
        query=(
            Field(
                "state_hash",
                "string",
                "true: add {state_hash: {applied_index, hash}}, the hash of the whole "
                "scheduler state (costs a snapshot's serialization); default false",
            ),
        ),
        errors=BASE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/cluster/members",
        rc.add_member,
        "admin",
        "Add a node as a learner; promoted to voter once caught up",
        "{member, cluster}",
        202,
        mutating=True,
        forward=True,
        body=(
            Field("node_id", "integer", "never used before in this cluster", True),
            Field("peer_addr", "string", "host:port of its peer listener", True),
            Field("http_url", "string", "http(s)://host:port of its API", True),
        ),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "DELETE",
        "/v1/cluster/members/{id}",
        rc.remove_member,
        "admin",
        "Remove a node",
        "{removed, result, cluster}",
        mutating=True,
        forward=True,
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/cluster/leader",
        rc.transfer_leader,
        "admin",
        "Transfer leadership",
        "{requested_to, transfer, cluster}",
        202,
        mutating=True,
        forward=True,
        body=(Field("to", "integer", "target voter; null or absent: the best caught up"),),
        errors=(*WRITE_ERRORS, "404"),
    ),
    Route(
        "POST",
        "/v1/cluster/snapshot",
        rc.snapshot_now,
        "admin",
        "Snapshot this node's state now (not forwarded)",
        "{snapshot}",
        mutating=True,
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/cluster/backup",
        rc.backup,
        "admin",
        "Download a consistent snapshot file (after a read barrier)",
        "application/octet-stream; header X-Backup-Sha256: its sha256 hex",
        errors=BASE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        rm.openapi_json,
        "read",
        "This API as OpenAPI 3.1",
        "the OpenAPI document",
        errors=BASE_ERRORS,
    ),
    Route(
        "GET",
        "/metrics",
        rm.metrics,
        "read",
        "Prometheus text format",
        "text/plain; version=0.0.4",
        errors=BASE_ERRORS,
    ),
    Route("GET", "/healthz", rc.healthz, "open", "The process is up", "{ok, node_id}"),
    Route(
        "GET",
        "/readyz",
        rc.readyz,
        "open",
        "Ready: a leader is known, applied has caught up, the disk is healthy",
        "{ready, leader_id, apply_lag}; else 503 not_ready with the reasons",
        errors=("503",),
    ),
)

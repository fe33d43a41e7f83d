"""Cluster routes of SPEC §5: this node's view, membership, leader transfer, snapshot, backup,
and the probes /healthz (process up) and /readyz (a leader is known, applied has caught up
with commit, the disk is healthy, the node is not shutting down; 503 otherwise, with the
reasons).

Membership changes and transfers run on the leader (followers forward them, like every
mutating request); the runtime adds a node as a learner and promotes it once caught up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from .api_common import json_response, read_json, runtime_of
from .api_runtime import plain, status_doc
from .http_errors import ApiError, bad_request

SHA256_HEX_CHARS = 64
READY_MAX_APPLY_LAG = 1_000  # entries applied may trail commit and still count as ready


async def get_cluster(request: web.Request) -> web.Response:
    """This node's view. `?state_hash=true` adds the hash of the whole scheduler state and
    the applied index it was taken at (a snapshot's cost: for convergence checks)."""
    runtime = runtime_of(request)
    doc = status_doc(runtime)
    flag = request.query.get("state_hash", "false")
    if flag not in ("true", "false"):
        raise bad_request("state_hash", "must be true or false")
    digest = getattr(runtime, "state_digest", None)
    if flag == "true" and callable(digest):
        index, state_hash = digest()
        doc["state_hash"] = {"applied_index": index, "hash": state_hash}
    return json_response(doc)


def _int_field(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(name, "is required")
        return None
    if type(value) is not int or not 1 <= value < 2**63:
        raise bad_request(name, "must be a positive integer")
    return value


def _str_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise bad_request(name, "is required")
    if type(value) is not str or not 1 <= len(value) <= 500:
        raise bad_request(name, "must be a string of 1 to 500 characters")
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise bad_request(unknown[0], "unknown field")


async def add_member(request: web.Request) -> web.Response:
    body = await read_json(request, empty_ok=False)
    _only(body, {"node_id", "peer_addr", "http_url"})
    node_id = _int_field(body, "node_id", required=True)
    assert node_id is not None
    peer_addr, http_url = _str_field(body, "peer_addr"), _str_field(body, "http_url")
    if not http_url.startswith(("http://", "https://")):
        raise bad_request("http_url", "must start with http:// or https://")
    host, _, port = peer_addr.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise bad_request("peer_addr", "must be host:port")
    result = await runtime_of(request).add_member(node_id, peer_addr, http_url)
    return json_response(
        {
            "member": plain(result) if result is not None else body,
            "cluster": status_doc(runtime_of(request)),
        },
        status=202,
    )


async def remove_member(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) < 2**63:
        raise bad_request("id", "must be a positive integer node id")
    result = await runtime_of(request).remove_member(int(raw))
    return json_response(
        {"removed": int(raw), "result": plain(result), "cluster": status_doc(runtime_of(request))}
    )


async def transfer_leader(request: web.Request) -> web.Response:
    body = await read_json(request)
    _only(body, {"to"})
    to = _int_field(body, "to", required=False)
    result = await runtime_of(request).transfer_leadership(to)
    return json_response(
        {"requested_to": to, "transfer": plain(result), "cluster": status_doc(runtime_of(request))},
        status=202,
    )


async def snapshot_now(request: web.Request) -> web.Response:
    """Snapshots the node that received the request (not forwarded: each node compacts its
    own log)."""
    _only(await read_json(request), set())
    result = await runtime_of(request).snapshot_now()
    return json_response({"snapshot": plain(result)})


async def backup(request: web.Request) -> web.StreamResponse:
    """A consistent snapshot file with its sha256 (header X-Backup-Sha256). Served by any node
    after a read barrier, so it holds every write acknowledged before the request."""
    runtime = runtime_of(request)
    await runtime.read_barrier()
    data_or_path, sha = await runtime.backup()
    headers = {
        "X-Backup-Sha256": sha,
        "Content-Disposition": 'attachment; filename="raftsched-backup.snap"',
        "Content-Type": "application/octet-stream",
    }
    # The digest is the runtime's (re-hashing a large file here would stall the event loop);
    # the CLI verifies it against the bytes it receives.
    assert len(sha) == SHA256_HEX_CHARS, sha
    if isinstance(data_or_path, bytes):
        return web.Response(body=data_or_path, headers=headers)
    path = Path(data_or_path)
    assert path.is_file(), f"the runtime's backup file {path} is missing"
    return web.FileResponse(path, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True, "node_id": runtime_of(request).node_id})


async def readyz(request: web.Request) -> web.Response:
    st = status_doc(runtime_of(request))
    reasons = []
    if st.get("leader_id") in (None, 0):
        reasons.append("no leader")
    lag = int(st.get("commit_index", 0)) - int(st.get("applied_index", 0))
    if lag > READY_MAX_APPLY_LAG:
        reasons.append(f"applied trails commit by {lag} entries")
    if st.get("disk_healthy") is False:
        reasons.append("disk unhealthy")
    if st.get("shutting_down") is True:
        reasons.append("shutting down")
    if reasons:
        raise ApiError(
            503, "not_ready", "; ".join(reasons), {"reasons": reasons}, {"Retry-After": "1"}
        )
    return json_response({"ready": True, "leader_id": st.get("leader_id"), "apply_lag": lag})

"""Errors the runtime raises to its callers (the HTTP API maps each to a status code).

Who is at fault: none of these is a user error. They say the request could not be decided here
and now: this node is not the leader (NotLeader), there is no leader (NoLeader), a bound is full
(Overloaded), leadership was lost before the entry committed so it may or may not apply
(OutcomeUnknown; retry with the same idempotency key), or the node is stopping (ShuttingDown).
"""

from __future__ import annotations


class RuntimeUnavailable(Exception):
    """Base: the request was not decided by this node."""


class NotLeader(RuntimeUnavailable):
    def __init__(self, leader_id: int, leader_http_url: str | None) -> None:
        super().__init__(f"not the leader; the leader is node {leader_id}")
        self.leader_id = leader_id
        self.leader_http_url = leader_http_url


class NoLeader(RuntimeUnavailable):
    def __init__(self, message: str = "no leader is known") -> None:
        super().__init__(message)


class Overloaded(RuntimeUnavailable):
    def __init__(self, retry_after_s: float, what: str) -> None:
        super().__init__(f"overloaded: {what}")
        self.retry_after_s = retry_after_s
        self.what = what


class OutcomeUnknown(RuntimeUnavailable):
    def __init__(self, message: str = "leadership lost before the entry committed") -> None:
        super().__init__(message)


class ShuttingDown(RuntimeUnavailable):
    def __init__(self, message: str = "the node is shutting down") -> None:
        super().__init__(message)


class ClusterRefused(Exception):
    """A cluster operation the runtime refuses for a reason the caller can fix: a node id in
    use or removed before (ids are never reused), a membership change already in progress,
    an unknown member, a transfer target that is not a voter. `http_status` is 400, 404 or 409;
    `code` is stable (e.g. `member_exists`, `change_in_progress`, `unknown_member`)."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        assert http_status in (400, 404, 409), http_status
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message

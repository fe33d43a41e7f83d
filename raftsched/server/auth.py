"""Bearer-token auth with roles (SPEC §5): admin, submit, worker, read.

The node config stores sha256 hex digests of tokens, never the tokens, mapped to a role. A
request's token is hashed and looked up; the comparison is on digests, so timing reveals
nothing about a stored token. Each route names the role it needs; `admin` may do everything,
every role may read. No token (or an unknown one) -> 401, a known token of the wrong role -> 403.
/healthz and /readyz are open (probes carry no tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

from .http_errors import ApiError

Role = Literal["admin", "submit", "worker", "read", "open"]
ROLES: tuple[str, ...] = ("admin", "submit", "worker", "read")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def allowed(have: str, need: Role) -> bool:
    if need == "open" or have == "admin":
        return True
    return need in ("read", have)


def check(authorization: str | None, need: Role, tokens: Mapping[str, str]) -> str | None:
    """The caller's role; raises ApiError 401/403. None when the route is open."""
    if need == "open":
        return None
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive
        raise ApiError(
            401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    role = tokens.get(hash_token(token.strip()))
    if role is None:
        raise ApiError(
            401, "unauthorized", "unknown bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not allowed(role, need):
        raise ApiError(
            403,
            "forbidden",
            f"role {role!r} may not do this; needs {need!r}",
            {"role": role, "needs": need},
        )
    return role

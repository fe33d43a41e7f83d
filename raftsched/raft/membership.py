"""Membership changes one server at a time (dissertation §4.1-4.3), and their encoding.

Theory of operation. A configuration takes effect on a node as soon as its CONFIG entry is
in the node's log, committed or not (§4.1); if that entry is later truncated away the node
reverts to the previous configuration. `ConfigTracker` therefore remembers the
configuration at the log's base (the snapshot) plus every CONFIG entry after it, so the
latest one is always at hand and a truncation is a list cut.

Each change adds, promotes or removes a single server, so any two consecutive
configurations have overlapping majorities and no joint consensus is needed. The leader
validates a change (`validate_change`) before proposing it; followers apply whatever the
log says (`apply_change` is total), since the leader already validated it against the same
log prefix. A removed id goes into `Membership.removed` and can never come back.

CONFIG entry data is `encode_conf_change`: a version byte, the kind and the node id, with
the standard library's struct (raft/ may not import the wire package).
"""

from __future__ import annotations

import struct

from .errors import MembershipChangeError, RaftError
from .types import ConfChange, ConfChangeKind, Membership

_CONF_CHANGE_FORMAT = struct.Struct(">BBQ")
_CONF_CHANGE_VERSION = 1


class ConfChangeDecodeError(RaftError, ValueError):
    """The data of a CONFIG entry is not a ConfChange this version understands."""


def encode_conf_change(change: ConfChange) -> bytes:
    assert change.node_id > 0
    return _CONF_CHANGE_FORMAT.pack(_CONF_CHANGE_VERSION, int(change.kind), change.node_id)


def decode_conf_change(data: bytes) -> ConfChange:
    if len(data) != _CONF_CHANGE_FORMAT.size:
        raise ConfChangeDecodeError(
            f"conf change must be {_CONF_CHANGE_FORMAT.size} bytes, got {len(data)}"
        )
    version, kind, node_id = _CONF_CHANGE_FORMAT.unpack(data)
    if version != _CONF_CHANGE_VERSION:
        raise ConfChangeDecodeError(f"unknown conf change version {version}")
    try:
        change_kind = ConfChangeKind(kind)
    except ValueError:
        raise ConfChangeDecodeError(f"unknown conf change kind {kind}") from None
    if node_id <= 0:
        raise ConfChangeDecodeError(f"conf change node id must be positive, got {node_id}")
    return ConfChange(change_kind, node_id)


def validate_change(membership: Membership, change: ConfChange) -> None:
    """Raise MembershipChangeError unless `change` is valid on top of `membership`."""
    node = change.node_id
    if node <= 0:
        raise MembershipChangeError(f"node id must be positive, got {node}")
    if node in membership.removed:
        raise MembershipChangeError(f"node {node} was removed and its id may never be reused")
    match change.kind:
        case ConfChangeKind.ADD_LEARNER:
            if node in membership.members:
                raise MembershipChangeError(f"node {node} is already a member")
        case ConfChangeKind.PROMOTE:
            if node not in membership.learners:
                raise MembershipChangeError(f"node {node} is not a learner, cannot promote it")
        case ConfChangeKind.REMOVE:
            if node not in membership.members:
                raise MembershipChangeError(f"node {node} is not a member")
            if membership.voters == {node}:
                raise MembershipChangeError(f"cannot remove node {node}, the last voter")


def apply_change(membership: Membership, change: ConfChange) -> Membership:
    """The configuration after `change`. Total: a change that makes no sense here (which a
    correct leader never logs) leaves the configuration unchanged."""
    node = change.node_id
    if node in membership.removed:
        return membership
    voters, learners = membership.voters, membership.learners
    match change.kind:
        case ConfChangeKind.ADD_LEARNER:
            if node in voters or node in learners:
                return membership
            return Membership(voters, learners | {node}, membership.removed)
        case ConfChangeKind.PROMOTE:
            if node in voters:
                return membership
            return Membership(voters | {node}, learners - {node}, membership.removed)
        case ConfChangeKind.REMOVE:
            if node not in voters and node not in learners:
                return membership
            if voters == {node}:
                return membership
            return Membership(voters - {node}, learners - {node}, membership.removed | {node})


def change_from_entry_data(data: bytes) -> ConfChange | None:
    """The ConfChange in a CONFIG entry, or None when the data is not a valid one (then the
    entry is a no-op on every node alike)."""
    try:
        return decode_conf_change(data)
    except ConfChangeDecodeError:
        return None


class ConfigTracker:
    """The base configuration (at the snapshot) plus the CONFIG entries after it."""

    __slots__ = ("_base", "_changes")

    def __init__(self, base: Membership) -> None:
        self._base = base
        self._changes: list[tuple[int, Membership]] = []  # (entry index, config), ascending

    @property
    def current(self) -> Membership:
        return self._changes[-1][1] if self._changes else self._base

    @property
    def last_change_index(self) -> int:
        """Index of the latest CONFIG entry in the log (0 if none after the snapshot)."""
        return self._changes[-1][0] if self._changes else 0

    def reset(self, base: Membership) -> None:
        """A snapshot replaced the log."""
        self._base = base
        self._changes.clear()

    def append(self, index: int, data: bytes) -> Membership:
        """A CONFIG entry at `index` entered the log."""
        assert not self._changes or self._changes[-1][0] < index
        change = change_from_entry_data(data)
        new = self.current if change is None else apply_change(self.current, change)
        self._changes.append((index, new))
        return new

    def truncate_from(self, index: int) -> bool:
        """Entries from `index` on were removed from the log. Returns True if the current
        configuration changed (it reverts to the one before)."""
        changes = self._changes
        if not changes or changes[-1][0] < index:
            return False
        while changes and changes[-1][0] >= index:
            changes.pop()
        return True

    def at(self, index: int) -> Membership:
        """The configuration in force at log position `index` (for snapshots)."""
        result = self._base
        for change_index, membership in self._changes:
            if change_index > index:
                break
            result = membership
        return result

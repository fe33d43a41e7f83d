"""Client sessions: a retried command is applied at most once (Raft dissertation §6.3).

Theory of operation. Raft alone gives at-least-once: a client whose leader crashes after
committing but before answering retries, and the command lands in the log twice. §6.3's fix
lives in the replicated state machine, which every replica applies identically:

1. Registration. A client first commits a "register" command. The state machine calls
   `register(client_id=<that entry's log index>, stamp)`. Log indexes only grow, so client ids
   are unique, never reused, and every id this table ever issued is <= `highest_client_id`.
   That is how an evicted session is recognised: an id the table does not hold is either
   unknown (never registered: above `highest_client_id`) or expired (evicted or closed). Either
   way `lookup` raises `SessionExpiredError` and the command is NOT applied; the client must
   register again and treat its outstanding commands as of unknown outcome. The table never
   forgets a session silently and then re-applies one of its commands.

2. Commands. Each command carries (client_id, seq, first_unacked_seq): `seq` numbers the
   client's commands uniquely; `first_unacked_seq` says the client has received the response
   of every seq below it. Applying a command is:

       hit = table.lookup(client_id, seq)     # may raise SessionExpired / StaleRequest
       if hit is not None:
           return hit.response                # a retry: answer again, apply nothing
       response = state_machine.apply(command)
       table.record(client_id, seq, response, stamp, first_unacked_seq=first_unacked_seq)

   A session keeps the responses of seqs the client has not acknowledged, so several commands
   may be in flight at once and each retry still finds its own answer. Responses below
   `first_unacked_seq` are discarded (§6.3) and the session's `lowest_seq` rises to it. A seq
   below `lowest_seq` raises `StaleRequestError`: its answer is gone, and the table cannot tell
   whether it was applied, so it refuses rather than risk a second application.

3. Bounds. At most `max_responses_per_session` responses per session: past that the lowest
   seq's response is dropped and `lowest_seq` rises above it (a client that never
   acknowledges loses exactly-once for its oldest commands but keeps at-most-once). At most
   `max_sessions` sessions: registering one more first evicts the least recently used, the
   one with the smallest (stamp, client_id). A stamp is a logical time every replica agrees
   on, normally the index of the entry being applied (or the state machine clock); a session's
   stamp is the largest it was given. Ties break by client id, so eviction never depends on
   dict order or wall time and every replica evicts the same session (§6.3: "servers must agree
   on when a client's session expires").

`snapshot()` returns plain lists of ints and bytes (msgpack-able) in a canonical order, so two
tables fed the same calls give equal snapshots; `SessionTable.restore` rebuilds a table from
one and checks it, because it comes from disk or from the leader.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Final

from .errors import RaftError

SNAPSHOT_FORMAT_VERSION: Final = 1
DEFAULT_MAX_RESPONSES_PER_SESSION: Final = 64
# The eviction heap keeps stale (stamp, client_id) pairs until popped; rebuild it once it
# holds this many times more pairs than there are sessions, so it stays O(sessions).
_HEAP_SLACK_FACTOR: Final = 4


class SessionError(RaftError):
    """Base of the errors a client's session can cause."""


class SessionExpiredError(SessionError):
    """The client's session is not in the table: never registered, evicted or closed. The
    command is not applied; the client must register a new session."""

    def __init__(self, client_id: int, highest_client_id: int) -> None:
        if client_id > highest_client_id:
            why = "was never registered"
        else:
            why = "has expired (evicted as least recently used, or closed)"
        super().__init__(f"client session {client_id} {why}; register a new session")
        self.client_id = client_id


class StaleRequestError(SessionError):
    """The seq is below the session's lowest retained seq: its response was discarded after
    the client acknowledged it (or to bound the session), so a retry cannot be answered."""

    def __init__(self, client_id: int, seq: int, lowest_seq: int) -> None:
        super().__init__(
            f"client session {client_id}: seq {seq} is below the lowest retained seq "
            f"{lowest_seq}; its response is no longer kept"
        )
        self.client_id = client_id
        self.seq = seq
        self.lowest_seq = lowest_seq


class SessionSnapshotError(SessionError):
    """`SessionTable.restore` was given data that is not a valid session snapshot."""


@dataclass(frozen=True, slots=True)
class SessionHit:
    """The command (client_id, seq) was applied before; `response` is what it answered."""

    seq: int
    response: bytes


@dataclass(slots=True)
class _Session:
    stamp: int
    lowest_seq: int = 0  # every seq below it is refused as stale
    responses: dict[int, bytes] = field(default_factory=dict)  # seq -> response, seqs >= lowest


class SessionTable:
    """The sessions of one replicated state machine. Deterministic; no I/O, no clock."""

    __slots__ = (
        "_eviction_heap",
        "_highest_client_id",
        "_max_responses_per_session",
        "_max_sessions",
        "_sessions",
    )

    def __init__(
        self,
        max_sessions: int,
        max_responses_per_session: int = DEFAULT_MAX_RESPONSES_PER_SESSION,
    ) -> None:
        if max_sessions <= 0:
            raise ValueError(f"max_sessions must be positive, got {max_sessions}")
        if max_responses_per_session <= 0:
            raise ValueError(
                f"max_responses_per_session must be positive, got {max_responses_per_session}"
            )
        self._max_sessions = max_sessions
        self._max_responses_per_session = max_responses_per_session
        self._sessions: dict[int, _Session] = {}
        self._highest_client_id = 0
        # (stamp, client_id) pairs; a pair is live iff it matches the session's stamp.
        self._eviction_heap: list[tuple[int, int]] = []

    # --- queries -------------------------------------------------------------------------------

    @property
    def max_sessions(self) -> int:
        return self._max_sessions

    @property
    def max_responses_per_session(self) -> int:
        return self._max_responses_per_session

    @property
    def highest_client_id(self) -> int:
        """The largest client id ever registered (0 before the first registration)."""
        return self._highest_client_id

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._sessions

    def lowest_seq(self, client_id: int) -> int:
        """The lowest seq the session still answers; lower ones raise StaleRequestError."""
        return self._session(client_id).lowest_seq

    # --- the §6.3 protocol ---------------------------------------------------------------------

    def register(self, client_id: int, stamp: int) -> int | None:
        """Opens a session whose id is the log index of its register entry. Returns the id
        of the session evicted to make room, if any."""
        assert client_id > self._highest_client_id, (
            f"client ids are log indexes of register entries and only grow: {client_id} "
            f"after {self._highest_client_id}"
        )
        assert stamp >= 0, f"stamps are logical times, got {stamp}"
        evicted = None
        if len(self._sessions) >= self._max_sessions:
            evicted = self._evict_least_recently_used()
        self._highest_client_id = client_id
        self._sessions[client_id] = _Session(stamp=stamp)
        self._push_stamp(client_id, stamp)
        assert len(self._sessions) <= self._max_sessions
        return evicted

    def close(self, client_id: int) -> bool:
        """Ends a session (the client said goodbye). Its later commands are refused as
        expired. Returns False if there was no such session."""
        # The heap pair goes stale and is dropped lazily.
        return self._sessions.pop(client_id, None) is not None

    def lookup(self, client_id: int, seq: int) -> SessionHit | None:
        """The cached answer if (client_id, seq) was applied; None if it must be applied now.

        Raises SessionExpiredError (no such session) or StaleRequestError (seq below the
        session's lowest retained seq)."""
        session = self._session(client_id)
        if seq < session.lowest_seq:
            raise StaleRequestError(client_id, seq, session.lowest_seq)
        response = session.responses.get(seq)
        return None if response is None else SessionHit(seq, response)

    def record(
        self,
        client_id: int,
        seq: int,
        response: bytes,
        stamp: int,
        *,
        first_unacked_seq: int = 0,
    ) -> None:
        """Remembers the response of (client_id, seq), which was just applied, and discards
        the responses the client acknowledged: seqs below `first_unacked_seq` (§6.3). An
        acknowledgement never covers the command that carries it."""
        session = self._session(client_id)
        assert seq >= session.lowest_seq, (
            f"record({client_id}, {seq}) below the lowest seq {session.lowest_seq}: "
            "lookup() refuses such a command, so it must not have been applied"
        )
        assert seq not in session.responses, (
            f"({client_id}, {seq}) applied twice: lookup() must come before apply"
        )
        assert type(response) is bytes, "responses are bytes (they go into snapshots)"
        self._discard_below(session, min(first_unacked_seq, seq))
        session.responses[seq] = response
        if len(session.responses) > self._max_responses_per_session:
            self._discard_below(session, min(session.responses) + 1)
        assert len(session.responses) <= self._max_responses_per_session
        if stamp > session.stamp:
            session.stamp = stamp
            self._push_stamp(client_id, stamp)

    # --- snapshots -------------------------------------------------------------------------------

    def snapshot(self) -> list[object]:
        """Plain, canonical data (lists, ints, bytes): equal for equal histories.

        [version, max_sessions, max_responses_per_session, highest_client_id,
         [[client_id, stamp, lowest_seq, [[seq, response], ...by seq]], ...by client_id]]
        """
        sessions: list[object] = [
            [
                client_id,
                s.stamp,
                s.lowest_seq,
                [[seq, s.responses[seq]] for seq in sorted(s.responses)],
            ]
            for client_id, s in sorted(self._sessions.items())
        ]
        return [
            SNAPSHOT_FORMAT_VERSION,
            self._max_sessions,
            self._max_responses_per_session,
            self._highest_client_id,
            sessions,
        ]

    @classmethod
    def restore(cls, data: object) -> SessionTable:
        """The table a `snapshot()` describes. Lists may arrive as tuples (msgpack
        use_list=False). Raises SessionSnapshotError on anything invalid."""
        fields = _sequence(data, "snapshot", 5)
        version, max_sessions, max_responses, highest, sessions = fields
        if _int(version, "version") != SNAPSHOT_FORMAT_VERSION:
            raise SessionSnapshotError(f"unsupported session snapshot version {version}")
        max_sessions = _int(max_sessions, "max_sessions", minimum=1)
        max_responses = _int(max_responses, "max_responses_per_session", minimum=1)
        table = cls(max_sessions, max_responses)
        table._highest_client_id = _int(highest, "highest_client_id")
        session_rows = _sequence(sessions, "sessions")
        if len(session_rows) > max_sessions:
            raise SessionSnapshotError(
                f"{len(session_rows)} sessions exceed max_sessions {max_sessions}"
            )
        previous_id = 0
        for row in session_rows:
            client_id, stamp, lowest_seq, responses = _sequence(row, "session", 4)
            where = f"session {client_id!r}"
            client_id = _int(client_id, "client_id", minimum=1)
            if not previous_id < client_id <= table._highest_client_id:
                raise SessionSnapshotError(
                    f"{where}: ids must ascend and not exceed highest_client_id"
                )
            previous_id = client_id
            session = _Session(_int(stamp, f"{where} stamp"), _int(lowest_seq, f"{where} seq"))
            response_rows = _sequence(responses, f"{where} responses")
            if len(response_rows) > max_responses:
                raise SessionSnapshotError(f"{where}: more than {max_responses} responses")
            previous_seq = session.lowest_seq - 1
            for response_row in response_rows:
                seq, response = _sequence(response_row, f"{where} response", 2)
                seq = _int(seq, f"{where} seq", minimum=previous_seq + 1)
                if type(response) is not bytes:
                    raise SessionSnapshotError(f"{where} seq {seq}: response must be bytes")
                session.responses[seq] = response
                previous_seq = seq
            table._sessions[client_id] = session
            table._push_stamp(client_id, session.stamp)
        return table

    # --- internals -------------------------------------------------------------------------------

    def _session(self, client_id: int) -> _Session:
        session = self._sessions.get(client_id)
        if session is None:
            raise SessionExpiredError(client_id, self._highest_client_id)
        return session

    @staticmethod
    def _discard_below(session: _Session, seq: int) -> None:
        if seq <= session.lowest_seq:
            return
        session.lowest_seq = seq
        for old in [s for s in session.responses if s < seq]:
            del session.responses[old]

    def _push_stamp(self, client_id: int, stamp: int) -> None:
        heap = self._eviction_heap
        heapq.heappush(heap, (stamp, client_id))
        if len(heap) > _HEAP_SLACK_FACTOR * (len(self._sessions) + 4):
            self._eviction_heap = [(s.stamp, cid) for cid, s in self._sessions.items()]
            heapq.heapify(self._eviction_heap)

    def _evict_least_recently_used(self) -> int:
        heap = self._eviction_heap
        while heap:
            stamp, client_id = heapq.heappop(heap)
            session = self._sessions.get(client_id)
            if session is not None and session.stamp == stamp:
                del self._sessions[client_id]
                return client_id
        raise AssertionError("the eviction heap holds a live pair for every session")


def _sequence(
    value: object, what: str, length: int | None = None
) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise SessionSnapshotError(f"{what}: expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise SessionSnapshotError(f"{what}: expected {length} elements, got {len(value)}")
    return value


def _int(value: object, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise SessionSnapshotError(f"{what}: expected an int >= {minimum}, got {value!r}"[:200])
    return value

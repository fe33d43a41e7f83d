"""`Ready`: everything the runtime must do after driving the core, with its ordering rules.

The driver loop (the runtime's whole job; raftsched/sim and raftsched/server both do this):

    while True:
        wait for a tick, an incoming message, a proposal or a read request
        node.tick() / node.step(msg) / node.propose(data) / node.read_index(ctx)
        if node.has_ready():
            rd = node.ready()
            send(rd.eager_messages)             # may overlap with the fsync below
            persist_ready(storage, rd)          # storage.py: snapshot, then entries (truncating
                                                # any conflicting suffix), then hard state;
            restore the application from rd.snapshot if there is one
            fsync if rd.must_sync               # one fsync covers all of it (group commit)
            send(rd.messages)                   # only now: they promise what was just synced
            apply(rd.committed_entries)         # in order; answer clients whose entries these are
            serve(rd.read_states) once applied >= read_state.index
            fail(rd.dropped_reads)              # reads that will never be served
            node.advance(rd)                    # tells the core all of the above is done

OVERLAPPING READYS (the contract the networked runtime relies on; etcd's async storage
writes model). A runtime may call `ready()` again before it advanced the previous Ready,
e.g. while a storage thread still fsyncs the previous one. Then:
- Readys are persisted in the order they were handed out, and advanced in that order.
- A Ready's `messages` leave only once its own writes AND every earlier Ready's writes
  are durable. The core makes this checkable locally: a Ready whose messages could
  acknowledge writes of an earlier, not yet advanced Ready has `must_sync=True`, so the
  runtime fsyncs it (after the earlier writes, by the in-order rule) before sending.
  `must_sync=False` therefore means "nothing unsynced is promised by these messages".
- `eager_messages` depend on nothing unpersisted, in this Ready or any earlier one: the
  core puts messages there only while the current term and vote are already durable
  (advanced); otherwise they move to `messages` (§5.1: no term leaves before it is
  durable). They carry no acknowledgement of local writes.
- `committed_entries` are always durable already, so applying may overlap the next fsync.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message
from .types import Entry, HardState, ReadState, Snapshot


@dataclass(frozen=True, slots=True)
class Ready:
    # Persist before sending `messages` (§5.1: a vote or term must survive a crash before
    # anyone learns of it). None when unchanged since the last Ready.
    hard_state: HardState | None
    # Append to stable storage before sending `messages`: a follower's AppendEntriesResponse
    # and the leader's own commit count promise these are durable. Entries that conflict
    # with ones already stored replace them and everything after them.
    entries: tuple[Entry, ...]
    # A snapshot received from the leader: install in storage (replacing the log up to its
    # index) and restore the application from it, before applying `committed_entries`.
    snapshot: Snapshot | None
    # Send only after hard_state, entries and snapshot above are durable, and those of
    # every earlier Ready (overlapping Readys, above).
    messages: tuple[Message, ...]
    # Depend on nothing unpersisted (this Ready or an earlier one): the leader's
    # AppendEntries, heartbeats and snapshot chunks, only while its term and vote are
    # durable (node.py `_may_send_eagerly`). Sending them before or while fsyncing lets the
    # leader write its disk in parallel with replication (dissertation §10.2.1); the
    # leader counts itself towards a commit only after `advance`, i.e. after its fsync.
    eager_messages: tuple[Message, ...]
    # Committed entries to apply to the state machine, in index order. They are always
    # already durable locally (they came from an earlier Ready or from storage).
    committed_entries: tuple[Entry, ...]
    # Confirmed linearizable reads (§6.4): serve each once applied >= its index.
    read_states: tuple[ReadState, ...]
    # True when hard_state, entries or snapshot must reach the disk before `messages` go
    # out, or when `messages` may acknowledge an earlier Ready's writes that were not
    # advanced yet. False allows skipping the fsync (e.g. a Ready that only carries commits).
    must_sync: bool
    # Contexts of this node's read_index() requests that will never produce a ReadState:
    # the leader lost leadership before confirming them, or refused a forwarded one. Fail
    # them at once (the caller may retry elsewhere). A read whose request or answer is
    # lost on the network appears in neither field: callers still need a timeout. A
    # duplicated forwarded request may come back both served and refused: the first
    # outcome for a context counts.
    dropped_reads: tuple[int, ...] = ()

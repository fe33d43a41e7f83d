"""One readable line per message and per Ready: the core's decisions, made visible.

Theory of operation. Tests (tests/raft/testdata/*.txt, golden files) and the simulator's
verbose trace print what the core decided instead of only the end state: who voted for
whom, which entries an append carries (by index range), why a follower rejected one
(with its hint), what a Ready persists, commits and applies. The format is stable enough
for golden files: change it and rewrite them (RAFTSCHED_REWRITE_GOLDEN=1), then review
the diff.

Notation: `5@t2` is the entry (or position) at index 5 of term 2; `a->b` is a message
from node a to node b; `t3` is the sender's term (in a PreVote, the term it would
campaign in; nobody adopts it). Entry data is shown quoted when it is
short printable ASCII, otherwise by its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .membership import change_from_entry_data
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from .ready import Ready
from .types import Entry, EntryKind, HardState, Membership, NodeId, Snapshot

DATA_SHOWN_BYTES_MAX = 16
"""Longer (or non-printable) entry data is shown by its size only."""
ENTRIES_LISTED_MAX = 4
"""Longer entry lists show the first two and the last one."""


def describe_data(data: bytes) -> str:
    if len(data) <= DATA_SHOWN_BYTES_MAX and all(0x20 <= b < 0x7F and b != 0x22 for b in data):
        return f'"{data.decode("ascii")}"'
    return f"<{len(data)} bytes>"


def describe_entry(entry: Entry) -> str:
    where = f"{entry.index}@t{entry.term}"
    if entry.kind is EntryKind.NOOP:
        return f"{where} noop"
    if entry.kind is EntryKind.CONFIG:
        change = change_from_entry_data(entry.data)
        if change is None:
            return f"{where} config <undecodable: a no-op>"
        return f"{where} config {change.kind.name.lower()} {change.node_id}"
    return f"{where} {describe_data(entry.data)}"


def describe_entries(entries: Sequence[Entry]) -> str:
    """`entries 3..5 [3@t1 "a", 4@t1 "b", 5@t2 noop]`, abbreviated when long."""
    if not entries:
        return "no entries"
    span = f"{entries[0].index}..{entries[-1].index}"
    if len(entries) <= ENTRIES_LISTED_MAX:
        listed = ", ".join(describe_entry(entry) for entry in entries)
    else:
        more = len(entries) - 3
        head = ", ".join(describe_entry(entry) for entry in entries[:2])
        listed = f"{head}, ... {more} more ..., {describe_entry(entries[-1])}"
    return f"entries {span} [{listed}]"


def describe_ids(ids: Iterable[NodeId]) -> str:
    return ",".join(str(node_id) for node_id in sorted(ids)) or "-"


def describe_membership(membership: Membership) -> str:
    text = f"voters {describe_ids(membership.voters)}"
    if membership.learners:
        text += f" learners {describe_ids(membership.learners)}"
    if membership.removed:
        text += f" removed {describe_ids(membership.removed)}"
    return text


def describe_hard_state(hard_state: HardState) -> str:
    return f"term {hard_state.term} vote {hard_state.vote} commit {hard_state.commit}"


def describe_snapshot(snapshot: Snapshot) -> str:
    meta = snapshot.meta
    return (
        f"snapshot {meta.index}@t{meta.term} ({len(snapshot.data)} bytes,"
        f" {describe_membership(meta.membership)})"
    )


def _describe_append_response(m: AppendEntriesResponse) -> str:
    if m.success:
        return f"accept, match {m.match_index}"
    if m.needs_snapshot:
        return "reject: no configuration yet, needs a snapshot"
    if m.stale_term_notice:
        return "reject: the receiver's term is stale"
    if m.hint_term == 0:
        return f"reject prev {m.rejected_index}: log ends at {m.hint_index}"
    return f"reject prev {m.rejected_index}: terms differ, hint {m.hint_index}@t{m.hint_term}"


def _describe_body(m: Message) -> str:
    match m:
        case AppendEntries():
            commit = f"commit {m.commit}"
            prev = f"prev {m.prev_index}@t{m.prev_term}"
            return f"AppendEntries {prev} {describe_entries(m.entries)} {commit}"
        case AppendEntriesResponse():
            return f"AppendEntriesResponse {_describe_append_response(m)}"
        case RequestVote():
            kind = "PreVote" if m.pre_vote else "RequestVote"
            transfer = " (transfer)" if m.transfer else ""
            return f"{kind} last {m.last_index}@t{m.last_term}{transfer}"
        case RequestVoteResponse():
            kind = "PreVoteResponse" if m.pre_vote else "RequestVoteResponse"
            return f"{kind} {'granted' if m.granted else 'rejected'}"
        case Heartbeat():
            read_round = f" read-round {m.context}" if m.context else ""
            return f"Heartbeat commit {m.commit}{read_round}"
        case HeartbeatResponse():
            read_round = f" read-round {m.context}" if m.context else ""
            return f"HeartbeatResponse{read_round}"
        case InstallSnapshot():
            end = m.offset + len(m.data)
            done = ", done" if m.done else ""
            return (
                f"InstallSnapshot {m.snapshot_index}@t{m.snapshot_term} bytes"
                f" {m.offset}..{end}{done} ({describe_membership(m.membership)})"
            )
        case InstallSnapshotResponse():
            outcome = f"next offset {m.next_offset}" if m.success else "restart from 0"
            return f"InstallSnapshotResponse {m.snapshot_index}: {outcome}"
        case TimeoutNow():
            return "TimeoutNow"
        case ReadIndexRequest():
            return f"ReadIndexRequest context {m.context}"
        case ReadIndexResponse():
            outcome = f"index {m.index}" if m.index else "refused"
            return f"ReadIndexResponse context {m.context} {outcome}"


def describe_message(m: Message) -> str:
    """`1->2 t3 AppendEntries prev 4@t2 entries 5..5 [5@t3 noop] commit 4`"""
    return f"{m.src}->{m.dst} t{m.term} {_describe_body(m)}"


def describe_ready(rd: Ready) -> str:
    """One line: what to persist, apply and serve, and whether to fsync. The messages are
    counted here; `describe_ready_lines` lists them."""
    parts: list[str] = []
    if rd.hard_state is not None:
        parts.append(f"hard state {describe_hard_state(rd.hard_state)}")
    if rd.snapshot is not None:
        parts.append(describe_snapshot(rd.snapshot))
    if rd.entries:
        parts.append(f"persist {describe_entries(rd.entries)}")
    if rd.committed_entries:
        first, last = rd.committed_entries[0].index, rd.committed_entries[-1].index
        parts.append(f"apply {first}..{last}")
    if rd.read_states:
        reads = ", ".join(f"context {r.context} at {r.index}" for r in rd.read_states)
        parts.append(f"serve reads [{reads}]")
    if rd.dropped_reads:
        parts.append(f"drop reads {list(rd.dropped_reads)}")
    if rd.eager_messages:
        parts.append(f"{len(rd.eager_messages)} eager")
    if rd.messages:
        parts.append(f"{len(rd.messages)} after sync")
    parts.append("must sync" if rd.must_sync else "no sync")
    return "Ready: " + "; ".join(parts)


def describe_ready_lines(rd: Ready) -> list[str]:
    """The Ready's line, then one line per message in send order: `eager` ones may leave
    before the fsync, `synced` ones only after it."""
    lines = [describe_ready(rd)]
    lines += [f"  eager  {describe_message(m)}" for m in rd.eager_messages]
    lines += [f"  synced {describe_message(m)}" for m in rd.messages]
    return lines

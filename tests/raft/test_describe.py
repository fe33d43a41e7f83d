"""describe.py: one line per message and per Ready, naming what a reader needs."""

from __future__ import annotations

from raftsched.raft import encode_conf_change
from raftsched.raft.describe import (
    describe_data,
    describe_entries,
    describe_message,
    describe_ready,
    describe_ready_lines,
)
from raftsched.raft.messages import (
    MESSAGE_TYPES,
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
from raftsched.raft.ready import Ready
from raftsched.raft.types import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    ReadState,
)

NOOP = Entry(2, 5, EntryKind.NOOP, b"")
CMD = Entry(2, 6, EntryKind.NORMAL, b"set x")
CONF = Entry(2, 7, EntryKind.CONFIG, encode_conf_change(ConfChange(ConfChangeKind.REMOVE, 3)))
ONE_OF_EACH: list[tuple[Message, str]] = [
    (
        AppendEntries(
            term=2, src=1, dst=2, prev_index=4, prev_term=1, entries=(NOOP, CMD, CONF), commit=4
        ),
        '1->2 t2 AppendEntries prev 4@t1 entries 5..7 [5@t2 noop, 6@t2 "set x",'
        " 7@t2 config remove 3] commit 4",
    ),
    (
        AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=7),
        "2->1 t2 AppendEntriesResponse accept, match 7",
    ),
    (
        AppendEntriesResponse(
            term=2, src=2, dst=1, success=False, rejected_index=9, hint_index=6, hint_term=1
        ),
        "2->1 t2 AppendEntriesResponse reject prev 9: terms differ, hint 6@t1",
    ),
    (
        AppendEntriesResponse(
            term=2, src=2, dst=1, success=False, rejected_index=9, hint_index=4, hint_term=0
        ),
        "2->1 t2 AppendEntriesResponse reject prev 9: log ends at 4",
    ),
    (
        RequestVote(term=3, src=1, dst=2, last_index=7, last_term=2, pre_vote=True),
        "1->2 t3 PreVote last 7@t2",
    ),
    (
        RequestVote(term=3, src=1, dst=2, last_index=7, last_term=2, transfer=True),
        "1->2 t3 RequestVote last 7@t2 (transfer)",
    ),
    (
        RequestVoteResponse(term=3, src=2, dst=1, granted=False),
        "2->1 t3 RequestVoteResponse rejected",
    ),
    (
        Heartbeat(term=2, src=1, dst=2, commit=6, context=4),
        "1->2 t2 Heartbeat commit 6 read-round 4",
    ),
    (HeartbeatResponse(term=2, src=2, dst=1, context=4), "2->1 t2 HeartbeatResponse read-round 4"),
    (
        InstallSnapshot(
            term=2,
            src=1,
            dst=3,
            snapshot_index=9,
            snapshot_term=2,
            membership=Membership(frozenset({1, 2, 3})),
            offset=4,
            data=b"abcd",
            done=True,
        ),
        "1->3 t2 InstallSnapshot 9@t2 bytes 4..8, done (voters 1,2,3)",
    ),
    (
        InstallSnapshotResponse(
            term=2, src=3, dst=1, snapshot_index=9, next_offset=0, success=False
        ),
        "3->1 t2 InstallSnapshotResponse 9: restart from 0",
    ),
    (TimeoutNow(term=2, src=1, dst=3), "1->3 t2 TimeoutNow"),
    (ReadIndexRequest(term=2, src=3, dst=1, context=11), "3->1 t2 ReadIndexRequest context 11"),
    (
        ReadIndexResponse(term=2, src=1, dst=3, context=11, index=0),
        "1->3 t2 ReadIndexResponse context 11 refused",
    ),
]


def test_every_message_type_has_one_line() -> None:
    assert {type(m) for m, _ in ONE_OF_EACH} == set(MESSAGE_TYPES)
    for m, line in ONE_OF_EACH:
        assert describe_message(m) == line


def test_data_is_quoted_only_when_short_and_printable() -> None:
    assert describe_data(b"abc") == '"abc"'
    assert describe_data(b'a"b') == "<3 bytes>"
    assert describe_data(b"\x00\x01") == "<2 bytes>"
    assert describe_data(b"x" * 17) == "<17 bytes>"


def test_long_entry_lists_are_abbreviated() -> None:
    entries = [Entry(1, i, EntryKind.NORMAL, b"c%d" % i) for i in range(1, 11)]
    assert describe_entries(entries) == (
        'entries 1..10 [1@t1 "c1", 2@t1 "c2", ... 7 more ..., 10@t1 "c10"]'
    )
    assert describe_entries([]) == "no entries"


def test_ready_line_and_its_messages() -> None:
    rd = Ready(
        hard_state=HardState(2, 1, 5),
        entries=(CMD,),
        snapshot=None,
        messages=(AppendEntriesResponse(term=2, src=1, dst=2, success=True, match_index=6),),
        eager_messages=(Heartbeat(term=2, src=1, dst=3, commit=5),),
        committed_entries=(NOOP,),
        read_states=(ReadState(8, 5),),
        must_sync=True,
    )
    assert describe_ready(rd) == (
        'Ready: hard state term 2 vote 1 commit 5; persist entries 6..6 [6@t2 "set x"];'
        " apply 5..5; serve reads [context 8 at 5]; 1 eager; 1 after sync; must sync"
    )
    assert describe_ready_lines(rd)[1:] == [
        "  eager  1->3 t2 Heartbeat commit 5",
        "  synced 1->2 t2 AppendEntriesResponse accept, match 6",
    ]

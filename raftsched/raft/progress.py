"""What the leader knows about one follower's log, and how fast it may send to it.

Theory of operation (the etcd-raft model). Each follower is in one of three states:

- PROBE: the leader does not know where the follower's log matches its own. It sends one
  AppendEntries at a time and waits for the answer (or a heartbeat response) before the
  next; rejections move `next_index` back using the follower's hint (§5.3).
- REPLICATE: the logs match up to `match_index`. The leader streams appends optimistically
  (`next_index` runs ahead of `match_index`), at most `max_inflight_appends` unacknowledged
  messages at a time (pipelining with a bounded window).
- SNAPSHOT: the follower needs entries the leader has compacted away; the leader streams
  the chunks of one snapshot (`snapshot`), flow-controlled by the follower's next_offset.

`match_index` only grows: it is what the follower has durably stored in agreement with the
leader. `next_index` is always > `match_index`.

Ownership: the fields are public for reading only. Every change goes through a method here
(the "NB" etcd's tracker/progress.go leaves for the future): node.py says what happened
(`sent_entries`, `update_match`, `decrease_to`, `unblock_after_heartbeat`, ...) and this
class decides the transition. tests/raft/test_units.py checks that node.py writes no field.

Stale answers. Links may reorder and duplicate (UDP-like), so an answer may be about an
append sent long ago, before the leader last changed its mind. Every state change therefore
needs an answer that is about the current state or is news: a success moves PROBE to
REPLICATE only if it advances `match_index` (the node's rule); a rejection counts in
REPLICATE only for an append of the current window (`match_index < prev < next_index`) and
in PROBE only for the outstanding probe (`prev == next_index - 1`). An answer that is
neither changes nothing, so duplicates cannot make the leader resend windows without bound
(the simulator once found that livelock with unordered links).
"""

from __future__ import annotations

import enum
from collections import deque

from .types import Snapshot


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "inflight",
        "match_index",
        "max_inflight",
        "next_index",
        "probe_sent",
        "read_ack_round",
        "recent_active",
        "sent_commit",
        "snapshot",
        "snapshot_offset",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        assert next_index >= 1 and max_inflight >= 1
        self.match_index = 0
        self.next_index = next_index
        self.state = ProgressState.PROBE
        # PROBE: an append is out, wait for its answer. SNAPSHOT: a chunk was answered
        # since the last heartbeat response (no need to resend the current chunk).
        self.probe_sent = False
        # REPLICATE: last index of each unacknowledged append, oldest first.
        self.inflight: deque[int] = deque()
        self.max_inflight = max_inflight
        self.recent_active = True  # heard from within this election timeout (CheckQuorum)
        self.read_ack_round = 0  # highest read-index round this follower echoed (§6.4)
        self.sent_commit = 0  # highest commit index sent to this follower
        self.snapshot: Snapshot | None = None  # SNAPSHOT: the one being sent
        self.snapshot_offset = 0  # SNAPSHOT: byte offset the follower expects next

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value} match={self.match_index} next={self.next_index}"
            f" inflight={len(self.inflight)})"
        )

    @property
    def paused(self) -> bool:
        """True when the leader must not send another append now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def become_probe(self) -> None:
        # After a snapshot the follower holds at least the snapshot index.
        if self.state is ProgressState.SNAPSHOT and self.snapshot is not None:
            self.next_index = max(self.match_index, self.snapshot.meta.index) + 1
        else:
            self.next_index = self.match_index + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next_index = self.match_index + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.snapshot = snapshot
        self.snapshot_offset = 0

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot = None
        self.snapshot_offset = 0

    def update_match(self, index: int) -> bool:
        """The follower acknowledged `index`. Returns True if that is news."""
        if index <= self.match_index:
            return False
        self.match_index = index
        self.next_index = max(self.next_index, index + 1)
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        assert self.next_index > self.match_index and (not inflight or inflight[0] > index)
        return True

    def sent_entries(self, last_index: int) -> None:
        """An append carrying entries up to `last_index` went out."""
        if self.state is ProgressState.REPLICATE:
            self.next_index = last_index + 1
            self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def sent_probe(self) -> None:
        """An append without entries went out; in PROBE it is the outstanding probe."""
        if self.state is ProgressState.PROBE:
            self.probe_sent = True

    def sent_commit_index(self, commit: int) -> None:
        """An append or heartbeat told the follower the commit index `commit`."""
        self.sent_commit = max(self.sent_commit, commit)

    def missed_commit(self, commit: int) -> bool:
        """True when the follower has no append in flight that will bring it `commit`, and
        was never told it: the leader must send an (empty) append."""
        return self.sent_commit < commit and not self.inflight

    def mark_active(self) -> None:
        """The follower answered something (CheckQuorum counts it for this period)."""
        self.recent_active = True

    def start_activity_period(self) -> None:
        """A new CheckQuorum period (an election timeout) begins."""
        self.recent_active = False

    def ack_read_round(self, read_round: int) -> bool:
        """The follower echoed read round `read_round` (§6.4). Returns True if that is news."""
        if read_round <= self.read_ack_round:
            return False
        self.read_ack_round = read_round
        return True

    def unblock_after_heartbeat(self) -> None:
        """A heartbeat answer arrived in PROBE or REPLICATE: the follower is alive, so an
        answer that never came was lost. Allow another probe; with a full window, free one
        slot (the window's answers may all be lost)."""
        assert self.state is not ProgressState.SNAPSHOT
        self.probe_sent = False
        if self.state is ProgressState.REPLICATE and self.paused:
            self.inflight.popleft()

    def snapshot_chunk_stalled(self) -> bool:
        """A heartbeat answer arrived in SNAPSHOT. True when no chunk was answered during the
        whole heartbeat round before it: the current chunk (or its answer) is lost, resend.
        `probe_sent` marks "a chunk was answered since the last heartbeat answer"."""
        assert self.state is ProgressState.SNAPSHOT
        answered = self.probe_sent
        self.probe_sent = False
        return not answered

    def snapshot_acked(self, next_offset: int) -> bool:
        """The follower expects `next_offset` next. Returns True when that moves the
        transfer (usually forward; backward when the follower lost chunks by restarting),
        so the chunk at the new offset is to be sent."""
        assert self.state is ProgressState.SNAPSHOT and next_offset >= 0
        if next_offset == self.snapshot_offset:
            return False
        self.snapshot_offset = next_offset
        self.probe_sent = True
        return True

    def restart_snapshot(self) -> None:
        """The follower refused a chunk (e.g. it lost the earlier ones): start over."""
        assert self.state is ProgressState.SNAPSHOT
        self.snapshot_offset = 0

    def decrease_to(self, rejected_prev_index: int, hint_next_index: int) -> bool:
        """The follower rejected an append whose prev index was `rejected_prev_index`;
        `hint_next_index` is where the follower's hint says to resume. Moves back to PROBE.
        Returns False for a stale rejection (one about an append no longer outstanding)."""
        if self.state is ProgressState.REPLICATE:
            # The logs are known to match at or below match_index; and every append of
            # this window had prev < next_index, so a larger prev belongs to a window the
            # leader abandoned since (a late or duplicated answer under reordering).
            if not self.match_index < rejected_prev_index < self.next_index:
                return False
        elif self.state is ProgressState.PROBE:
            if rejected_prev_index != self.next_index - 1:
                return False
        else:
            return False
        next_index = max(self.match_index + 1, min(rejected_prev_index, hint_next_index))
        self._reset(ProgressState.PROBE)
        self.next_index = next_index
        assert self.match_index < self.next_index <= max(rejected_prev_index, self.match_index + 1)
        return True

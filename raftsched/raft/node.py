"""RaftNode: the Raft algorithm as a pure state machine.

API CONTRACT (shared by raftsched/sim, raftsched/server and the tests; keep it stable):

    node = RaftNode(config: RaftConfig, storage: Storage, rng: random.Random)
    node.tick() -> None                      # one logical clock tick
    node.step(msg: Message) -> None          # an incoming message (any term, any sender)
    node.propose(data: bytes) -> tuple[int, int]
        # leader only: appends a NORMAL entry, returns (index, term). The command is
        # committed iff the entry applied at that index has that term.
        # raises NotLeaderError / ProposalDroppedError
    node.propose_batch(datas: Sequence[bytes]) -> tuple[int, int]
        # many entries at once, returns (first_index, term); indexes are consecutive
    node.propose_conf_change(change: ConfChange) -> tuple[int, int]
        # raises NotLeaderError / MembershipChangeError (also for a PROMOTE of a learner
        # more than config.max_promote_lag_entries behind the leader's last index)
    node.read_index(context: int) -> None
        # request a linearizable read; a ReadState(context, index) appears in a later Ready.
        # On a follower it is forwarded to the leader. Raises NotLeaderError when no leader
        # is known, ProposalDroppedError when too many reads are already waiting, and
        # ValueError for a context that is not positive. Contexts are chosen by the caller
        # and must be positive and unique.
    node.transfer_leadership(to: NodeId) -> None   # raises NotLeaderError / TransferError
    node.campaign() -> None                  # start an election now (tests, bootstrap)
    node.has_ready() -> bool
    node.ready() -> Ready                    # see ready.py for the ordering rules
    node.advance(rd: Ready) -> None          # the runtime finished everything in rd
    node.status() -> Status
    node.snapshot_taken(index: int) -> None  # app stored a snapshot at `index` via storage;
                                             # the core may now send it to slow followers

Overridable hooks (raftsched/sim/bugs.py subclasses RaftNode to seed bugs; the product never
does). Each is a small method so a bug is a one-method override:
    _log_up_to_date(last_index, last_term) -> bool      # §5.4.1 vote restriction
    _commit_term_ok(index) -> bool                      # §5.4.2: only current-term entries
                                                        #   are committed by counting
    _confirm_read(context, index, requester) -> None    # §6.4: heartbeat round before reads
    _may_send_eagerly() -> bool                         # §5.1: no term leaves before it is
                                                        #   durable (eager messages wait)
    _restart_election_timer(m) -> None                  # a message from the current leader
                                                        #   (AppendEntries, Heartbeat, chunk)

Additions beyond the contract (backward compatible):
    node.membership_at(index) -> Membership  # the configuration to store with a snapshot
    node.node_id, node.term, node.leader, node.role   # read-only views used by tests/sims

THEORY OF OPERATION

The node is a deterministic function of its inputs: the storage it starts from, the calls
above, and the injected rng (used only to randomise election timeouts in [T, 2T)). It never
performs I/O; everything it wants done comes out of `ready()`:

- Inputs change state and queue outputs: unstable log entries (RaftLog), messages in two
  queues, committed entries, read states. `ready()` hands out everything new since the last
  `ready()`, O(new stuff); `advance(rd)` records that the runtime persisted and applied it.
  After `advance`, `has_ready()` may be true again (e.g. the leader's own fsync completed a
  commit), so drivers loop until it is false.
- Messages that promise something durable (votes, vote requests carrying a new term,
  AppendEntries/Heartbeat/snapshot responses, read-index traffic) go in `Ready.messages`,
  sent after the fsync. The leader's AppendEntries, Heartbeats and snapshot chunks go in
  `Ready.eager_messages`: they depend on nothing unpersisted (dissertation §10.2.1); the
  leader counts its own log towards a commit only once `advance` says it is durable.
- Proposals between two `ready()` calls are batched: the leader appends them to its log at
  once and sends one AppendEntries per follower when `ready()` (or `has_ready()`) runs.
  Concurrent read-index requests likewise share one heartbeat round (read_only.py).

Roles. Followers (and learners, which never campaign) reset their election timer on every
message from the current leader; when it expires a voter starts a PreVote round (§9.6),
which changes no term, and only on winning a real election (§5.2). A candidate that wins
appends a NOOP (§8) and starts replicating (progress.py: probe / replicate / snapshot).
CheckQuorum: a leader that did not hear from a majority within an election timeout steps
down; a follower that heard from a leader within the election timeout ignores (pre)vote
requests unless they come from a leadership transfer (the leader lease).

Term rules (§5.1). A message with a higher term makes the node a follower of that term
first, except a PreVote request (nobody adopts its term), a granted PreVote response (it
carries the term the pre-candidate asked for), and vote requests inside the leader lease
(ignored entirely). Messages with a lower term are dropped; a stale AppendEntries or
Heartbeat and a stale PreVote request are answered with the current term so that the
stale sender steps down.

Membership: the latest configuration in the log is in force, committed or not
(membership.py). Only voters vote, count towards quorums and campaign (one exception
below). Messages from ids whose removal is committed here are ignored, except leader
messages (our latest configuration may be an uncommitted one that the legitimate leader
of the term must be able to truncate); any other id is heard, as our configuration may be
stale (a new node waits for its leader and learns its first configuration from a
snapshot; a voter must vote for members it has not heard of yet). A voter removed by an
uncommitted change keeps campaigning until the removal commits (dissertation §4.2.2): it
may still be needed.
Bootstrapping: every node of a new cluster starts over a storage whose (empty) snapshot
carries the initial configuration (`MemoryStorage(membership)`); a node joining later
starts with no configuration (`MemoryStorage()`) and is added with ADD_LEARNER.

Reads (§6.4). `read_index(ctx)` on the leader records the commit index once an entry of
the leader's term is committed, then waits for a heartbeat round; on a follower it is
forwarded. A read whose leader loses leadership before confirming it, and a forwarded
read the leader refuses, come out in `Ready.dropped_reads` (a forwarded one is refused
back to its node first), so the caller fails at once and may retry elsewhere; a read
whose request or answer is lost on the network needs the caller's timeout.

Failure model. Any message from any term or sender, duplicated, reordered or stale, is
answered or ignored. Broken invariants - e.g. a "leader" asking a follower to overwrite a
committed entry, which only a buggy peer can do - raise AssertionError rather than
corrupt the log.

Hooks. The overridable methods below (`_log_up_to_date`, `_commit_term_ok`,
`_confirm_read`, `_may_send_eagerly`, `_restart_election_timer`) each hold exactly one
rule so that the simulator can seed a bug by overriding one method;
`_emit_read_state(requester, context, index)` is the helper a `_confirm_read` override
calls to release a read.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .config import RaftConfig
from .errors import (
    CompactedError,
    MembershipChangeError,
    NotLeaderError,
    ProposalDroppedError,
    TransferError,
)
from .log import RaftLog
from .membership import ConfigTracker, encode_conf_change, validate_change
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
from .progress import Progress, ProgressState
from .quorum import VoteResult, quorum_size, quorum_value, vote_result
from .read_only import MAX_PENDING_READS, ReadOnlyQueue
from .ready import Ready
from .snapshot_receiver import SnapshotReceiver
from .storage import UNLIMITED_BYTES, Storage
from .types import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    Status,
)

_NORMAL = EntryKind.NORMAL
_CONFIG = EntryKind.CONFIG
# Messages only a leader sends; they establish who leads a term.
_LEADER_MESSAGES = (AppendEntries, Heartbeat, InstallSnapshot)


class RaftNode:
    def __init__(self, config: RaftConfig, storage: Storage, rng: random.Random) -> None:
        self.config = config
        self._id = config.node_id
        self._rng = rng
        self._storage = storage
        hard_state, snapshot = storage.initial_state()
        applied = snapshot.meta.index
        # Restart: resume term, vote and commit; the application restarts from the
        # snapshot, so committed entries after it are handed out again to be re-applied.
        commit = min(max(hard_state.commit, applied), storage.last_index())
        self.log = RaftLog(storage, commit, applied)
        self._configs = ConfigTracker(snapshot.meta.membership)
        first = snapshot.meta.index + 1
        if first <= storage.last_index():
            for entry in storage.entries(first, storage.last_index() + 1, UNLIMITED_BYTES):
                if entry.kind is _CONFIG:
                    self._configs.append(entry.index, entry.data)
        self._term = hard_state.term
        self._vote = hard_state.vote
        self._leader: NodeId = 0
        self._role = Role.FOLLOWER
        self._prev_hard_state = HardState(hard_state.term, hard_state.vote, commit)
        # The (term, vote) known durable: from storage, then from each advanced Ready.
        self._durable_term_vote = (hard_state.term, hard_state.vote)
        # Readys handed out with must_sync whose `advance` has not come yet (overlapping
        # Readys, ready.py): a later Ready's messages may acknowledge their writes.
        self._unsynced_readys = 0

        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._voters: tuple[NodeId, ...] = ()
        self._peers: tuple[NodeId, ...] = ()  # members other than this node, sorted
        self._transferee: NodeId = 0
        self._transfer_elapsed = 0
        self._append_pending = False
        self._reads = ReadOnlyQueue()
        self._waiting_reads: list[tuple[NodeId, int]] = []  # until an entry of this term commits
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[int] = []  # contexts of local reads that will never be served
        self._snapshot_receiver = SnapshotReceiver()
        self._msgs: list[Message] = []
        self._eager: list[Message] = []
        self._on_membership_changed()
        self._reset_election_timer()

    def __repr__(self) -> str:
        return (
            f"RaftNode(id={self._id} {self._role.value} term={self._term}"
            f" leader={self._leader} {self.log})"
        )

    # ------------------------------------------------------------------ read-only views

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def leader(self) -> NodeId:
        return self._leader

    @property
    def role(self) -> Role:
        return self._role

    @property
    def membership(self) -> Membership:
        return self._configs.current

    def membership_at(self, index: int) -> Membership:
        """The configuration in force at `index`, to store with a snapshot taken there."""
        return self._configs.at(index)

    def status(self) -> Status:
        log = self.log
        match = {}
        if self._role is Role.LEADER:
            match = {peer: self._progress[peer].match_index for peer in self._peers}
        return Status(
            node_id=self._id,
            role=self._role,
            term=self._term,
            leader=self._leader,
            commit=log.committed,
            applied=log.applied,
            last_index=log.last_index(),
            membership=self._configs.current,
            match=match,
            transferee=self._transferee,
        )

    # ------------------------------------------------------------------ overridable hooks

    def _log_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: grant a vote only to a candidate whose log is at least as up to date."""
        return self.log.is_up_to_date(last_index, last_term)

    def _commit_term_ok(self, index: int) -> bool:
        """§5.4.2: a leader commits by counting replicas only entries of its current term
        (earlier entries commit indirectly). Overriding this to return True reproduces
        the Figure 8 bug."""
        return self.log.term_or_none(index) == self._term

    def _confirm_read(self, context: int, index: int, requester: NodeId) -> None:
        """§6.4: confirm leadership with a heartbeat round before serving the read at
        `index`. The default queues it for the next round (a single voter needs none);
        `_emit_read_state` releases it. Skipping the round gives stale reads."""
        if self._voters == (self._id,):
            self._emit_read_state(requester, context, index)
        else:
            self._reads.add(requester, context, index)

    def _may_send_eagerly(self) -> bool:
        """§5.1: no message carrying a term may leave before that term and our vote are
        durable. Eager messages (ready.py) leave before the Ready's fsync, so they are
        allowed only once the HardState with the current term and vote was advanced; until
        then they go out with `Ready.messages`. A leader elected by other voters already
        synced its term before asking them; one elected on its own vote (a single voter)
        has not, and sending its new-term appends early lets a crash reuse the term."""
        return self._durable_term_vote == (self._term, self._vote)

    def _restart_election_timer(self, m: Message) -> None:
        """Any message from the leader of the current term (AppendEntries, Heartbeat,
        InstallSnapshot) restarts the election timer: a follower that hears from a live
        leader never campaigns. Skipping it for heartbeats causes needless elections."""
        del m
        self._election_elapsed = 0

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._promotable() and self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                self._campaign(pre_vote=self.config.pre_vote, transfer=False)

    def campaign(self) -> None:
        if self._role is Role.LEADER or not self._promotable():
            return
        self._campaign(pre_vote=self.config.pre_vote, transfer=False)

    def propose(self, data: bytes) -> tuple[int, int]:
        return self.propose_batch((data,))

    def propose_batch(self, datas: Sequence[bytes]) -> tuple[int, int]:
        if not datas:
            raise ValueError("propose_batch needs at least one command")
        self._check_can_propose(len(datas))
        term = self._term
        first = self.log.last_index() + 1
        self.log.append([Entry(term, first + i, _NORMAL, data) for i, data in enumerate(datas)])
        self._append_pending = True
        return first, term

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader, self._term)
        if self._transferee:
            raise MembershipChangeError(f"leadership transfer to {self._transferee} is in progress")
        pending = self._configs.last_change_index
        if pending > self.log.committed:
            raise MembershipChangeError(
                f"the membership change at index {pending} is not committed yet"
            )
        if not self._committed_in_term():
            # Ongaro 2015: a new leader must commit an entry of its term before changing
            # the configuration, or two single-server changes can form disjoint majorities.
            raise MembershipChangeError(
                "the leader has not committed an entry of its term yet; retry shortly"
            )
        validate_change(self._configs.current, change)
        if change.kind is ConfChangeKind.PROMOTE:
            self._check_caught_up(change.node_id)
        index = self.log.last_index() + 1
        data = encode_conf_change(change)
        self.log.append([Entry(self._term, index, _CONFIG, data)])
        self._configs.append(index, data)
        self._on_membership_changed()
        self._append_pending = True
        return index, self._term

    def _check_caught_up(self, learner: NodeId) -> None:
        """Dissertation §4.2.1: a new server joins as a learner and becomes a voter only
        once it has caught up; a far-behind voter counts towards the quorum while it
        catches up, so promoting it early can stall commits (e.g. 2 of 4 voters
        needed, one of them far behind). The caller retries after more replication."""
        match_index = self._progress[learner].match_index
        last_index = self.log.last_index()
        lag_entries = last_index - match_index
        if lag_entries > self.config.max_promote_lag_entries:
            raise MembershipChangeError(
                f"learner {learner} has not caught up: match index {match_index}, leader's"
                f" commit index {self.log.committed}, last index {last_index}"
                f" ({lag_entries} entries behind, at most"
                f" {self.config.max_promote_lag_entries} allowed); retry later"
            )

    def read_index(self, context: int) -> None:
        if context <= 0:
            raise ValueError(f"read context must be positive, got {context}")
        if self._role is Role.LEADER:
            if len(self._reads) + len(self._waiting_reads) >= MAX_PENDING_READS:
                raise ProposalDroppedError("too many reads are waiting for confirmation")
            self._leader_read(self._id, context)
        elif self._leader:
            self._send(
                ReadIndexRequest(term=self._term, src=self._id, dst=self._leader, context=context)
            )
        else:
            raise NotLeaderError(0, self._term)

    def transfer_leadership(self, to: NodeId) -> None:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader, self._term)
        if to == self._id:
            return
        if to not in self._configs.current.voters:
            raise TransferError(f"node {to} is not a voter, cannot lead")
        if self._transferee:
            if self._transferee == to:
                return
            raise TransferError(f"a transfer to {self._transferee} is already in progress")
        # Dissertation §3.10: stop accepting proposals, catch the target up, TimeoutNow.
        self._transferee = to
        self._transfer_elapsed = 0
        if self._progress[to].match_index == self.log.last_index():
            self._send(TimeoutNow(term=self._term, src=self._id, dst=to))
        else:
            self._send_append(to, send_if_empty=True)

    def snapshot_taken(self, index: int) -> None:
        """The application stored a snapshot at `index`. The core fetches
        `storage.snapshot()` lazily, when a follower needs entries below the first index,
        so it always sends the newest one; here it only checks the call is sane."""
        # `applying`: the runtime may snapshot after applying a Ready, before `advance`.
        if index > self.log.applying:
            raise ValueError(f"snapshot at {index} is beyond the applied index {self.log.applying}")

    def step(self, m: Message) -> None:
        if m.dst != self._id or m.src == self._id or m.src <= 0:
            return
        if not isinstance(m, _LEADER_MESSAGES) and not self._is_member(m.src):
            # Ignore non-members (e.g. removed servers). Leader messages are exempt: our
            # latest configuration may be an uncommitted one that removed the legitimate
            # leader of this term, which must be able to truncate it; term rules suffice.
            return
        if m.term > self._term:
            if isinstance(m, RequestVote):
                if not m.transfer and self._in_leader_lease():
                    return  # the leader lease: a live leader is not deposed (CheckQuorum)
                if not m.pre_vote:
                    self._become_follower(m.term, 0)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # carries the term the pre-candidate asked for; nobody adopts it
            else:
                self._become_follower(m.term, m.src if isinstance(m, _LEADER_MESSAGES) else 0)
        elif m.term < self._term:
            self._step_stale(m)
            return
        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self._role is Role.LEADER:
            self._step_leader(m)
        elif self._role is Role.CANDIDATE or self._role is Role.PRE_CANDIDATE:
            self._step_candidate(m)
        else:
            self._step_follower(m)

    # ------------------------------------------------------------------ the Ready cycle

    def has_ready(self) -> bool:
        self._flush()
        log = self.log
        hard_state = self._prev_hard_state
        return bool(
            self._msgs
            or self._eager
            or self._read_states
            or self._dropped_reads
            or log.has_unhanded_entries()
            or (log.pending_snapshot is not None and not log.snapshot_handed)
            or log.has_committed_to_apply()
            or hard_state.term != self._term
            or hard_state.vote != self._vote
            or hard_state.commit != min(log.committed, log.handed_index)
        )

    def ready(self) -> Ready:
        self._flush()
        log = self.log
        snapshot: Snapshot | None = None
        entries: tuple[Entry, ...] = ()
        if log.pending_snapshot is not None and not log.snapshot_handed:
            # `_handle_append` accepts no entries until the snapshot is handed out: the
            # runtime appends entries before installing a snapshot, which would wipe them.
            assert not log.has_unhanded_entries()
            snapshot = log.pending_snapshot
            log.snapshot_handed = True
        elif log.has_unhanded_entries():
            entries = tuple(log.take_unhanded_entries())
        previous = self._prev_hard_state
        # Never persist a commit index beyond the entries persisted with it.
        commit = min(log.committed, log.handed_index)
        hard_state: HardState | None = None
        term_or_vote_changed = previous.term != self._term or previous.vote != self._vote
        if term_or_vote_changed or previous.commit != commit:
            hard_state = HardState(self._term, self._vote, commit)
            self._prev_hard_state = hard_state
        committed_entries = tuple(log.take_committed_to_apply())
        if self._may_send_eagerly():
            messages = tuple(self._msgs)
            eager = tuple(self._eager)
        else:
            # The term (or vote) is not durable yet: everything waits for the fsync.
            messages = (*self._eager, *self._msgs)
            eager = ()
        # Overlapping Readys (ready.py): messages may acknowledge what an earlier Ready,
        # not advanced yet, writes; require a sync so they wait for those writes too. A
        # commit-only hard state promises nothing (the commit index is recomputed).
        must_sync = (
            bool(entries)
            or snapshot is not None
            or term_or_vote_changed
            or (self._unsynced_readys > 0 and bool(messages))
        )
        if must_sync:
            self._unsynced_readys += 1
        read_states = tuple(self._read_states)
        dropped_reads = tuple(self._dropped_reads)
        self._msgs = []
        self._eager = []
        self._read_states = []
        self._dropped_reads = []
        return Ready(
            hard_state=hard_state,
            entries=entries,
            snapshot=snapshot,
            messages=messages,
            eager_messages=eager,
            committed_entries=committed_entries,
            read_states=read_states,
            must_sync=must_sync,
            dropped_reads=dropped_reads,
        )

    def advance(self, rd: Ready) -> None:
        log = self.log
        if rd.must_sync:
            assert self._unsynced_readys > 0, "advance of a Ready that was not handed out"
            self._unsynced_readys -= 1
        if rd.hard_state is not None:
            # Readys are advanced in the order they were handed out (ready.py).
            self._durable_term_vote = (rd.hard_state.term, rd.hard_state.vote)
        if rd.snapshot is not None:
            log.stable_snapshot(rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            if self._role is Role.LEADER:
                self._commit_and_broadcast()  # the leader's own fsync counts now
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)

    # ------------------------------------------------------------------ roles

    def _is_member(self, node_id: NodeId) -> bool:
        """Whether to listen to `node_id`. Only a removal committed here is final
        (dissertation §4.2.3: removed servers must not disrupt). Anyone else may matter:
        an id our latest configuration does not know may be a member added in entries we
        have not received (our configuration can be stale: a voter that cannot learn of a
        new voter's existence must still vote for it), and a node whose removal is not
        committed may still be needed to elect a leader (§4.2.2)."""
        membership = self._configs.current
        if node_id in membership.voters or node_id in membership.learners:
            return True
        if node_id not in membership.removed:
            return True
        return node_id not in self._configs.at(self.log.committed).removed

    def _has_config(self) -> bool:
        """False on a new node that has not learned the configuration yet (every real
        configuration has a voter). Its first configuration arrives in a snapshot."""
        return bool(self._configs.current.voters)

    def _promotable(self) -> bool:
        """May campaign: a voter of the latest configuration, or a voter whose removal is
        not committed yet. Dissertation §4.2.2: until then it may be needed, e.g. when it
        alone holds the entry that removes it and the other voters, still in the old
        configuration, need its vote (which it refuses: its log is longer)."""
        if self._id in self._configs.current.voters:
            return True
        return self._id in self._configs.at(self.log.committed).voters

    def _in_leader_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self._leader != 0
            and self._election_elapsed < self.config.election_timeout_ticks
        )

    def _reset_election_timer(self) -> None:
        timeout = self.config.election_timeout_ticks
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._rng.randrange(timeout, 2 * timeout)

    def _reset_role_state(self) -> None:
        self._reset_election_timer()
        self._votes.clear()
        self._progress.clear()
        self._transferee = 0
        self._append_pending = False
        self._drop_pending_reads()

    def _drop_pending_reads(self) -> None:
        """Leadership ended (or never confirmed): the reads waiting here will never be
        served. Say so explicitly, so callers fail at once instead of timing out: local
        ones in `Ready.dropped_reads`, forwarded ones with a refusal (index 0)."""
        pending = [(read.requester, read.context) for read in self._reads.clear()]
        pending += self._waiting_reads
        self._waiting_reads = []
        for requester, context in pending:
            if requester == self._id:
                self._dropped_reads.append(context)
            else:
                self._send(
                    ReadIndexResponse(
                        term=self._term, src=self._id, dst=requester, context=context, index=0
                    )
                )

    def _become_follower(self, term: int, leader: NodeId) -> None:
        assert term >= self._term
        if term > self._term:
            self._term = term
            self._vote = 0
        self._role = Role.LEARNER if self._id in self._configs.current.learners else Role.FOLLOWER
        self._leader = leader
        self._reset_role_state()

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        assert self._promotable()
        self._reset_role_state()
        self._leader = 0
        if pre_vote:
            # §9.6: ask whether we could win, without touching anyone's term.
            self._role = Role.PRE_CANDIDATE
            request_term = self._term + 1
        else:
            self._role = Role.CANDIDATE
            self._term += 1
            self._vote = self._id
            request_term = self._term
        self._votes[self._id] = True
        if vote_result(self._voters, self._votes) is VoteResult.WON:
            self._won_election()
            return
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for voter in self._voters:
            if voter != self._id:
                self._send(
                    RequestVote(
                        term=request_term,
                        src=self._id,
                        dst=voter,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _won_election(self) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        assert self._role is Role.CANDIDATE
        self._reset_role_state()
        self._role = Role.LEADER
        self._leader = self._id
        next_index = self.log.last_index() + 1
        limit = self.config.max_inflight_appends
        self._progress = {peer: Progress(next_index, limit) for peer in self._peers}
        # §8 / §5.4.2: a NOOP of the new term commits the previous terms' entries.
        self.log.append([Entry(self._term, next_index, EntryKind.NOOP, b"")])
        self._broadcast_append(send_if_empty=True)

    # ------------------------------------------------------------------ message handling

    def _step_stale(self, m: Message) -> None:
        """A message from an older term. Answer the ones whose sender must learn that it
        is stale; drop the rest."""
        if isinstance(m, _LEADER_MESSAGES):
            # A deposed leader (e.g. after a partition) learns the new term and steps down.
            self._send(
                AppendEntriesResponse(term=self._term, src=self._id, dst=m.src, success=False)
            )
        elif isinstance(m, RequestVote) and m.pre_vote:
            self._send(
                RequestVoteResponse(
                    term=self._term, src=self._id, dst=m.src, granted=False, pre_vote=True
                )
            )

    def _handle_vote_request(self, m: RequestVote) -> None:
        if m.pre_vote:
            can_vote = (
                m.term > self._term
                or self._vote == m.src
                or (self._vote == 0 and self._leader == 0)
            )
        else:
            can_vote = self._vote == m.src or (self._vote == 0 and self._leader == 0)
        if can_vote and self._log_up_to_date(m.last_index, m.last_term):
            if m.pre_vote:
                self._send(
                    RequestVoteResponse(
                        term=m.term, src=self._id, dst=m.src, granted=True, pre_vote=True
                    )
                )
            else:
                self._vote = m.src
                self._election_elapsed = 0
                self._send(
                    RequestVoteResponse(term=self._term, src=self._id, dst=m.src, granted=True)
                )
        else:
            self._send(
                RequestVoteResponse(
                    term=self._term, src=self._id, dst=m.src, granted=False, pre_vote=m.pre_vote
                )
            )

    def _step_leader(self, m: Message) -> None:
        match m:
            case AppendEntriesResponse():
                self._handle_append_response(m)
            case HeartbeatResponse():
                self._handle_heartbeat_response(m)
            case InstallSnapshotResponse():
                self._handle_snapshot_response(m)
            case ReadIndexRequest():
                if len(self._reads) + len(self._waiting_reads) >= MAX_PENDING_READS:
                    self._refuse_read(m)
                else:
                    self._leader_read(m.src, m.context)
            case _:
                pass  # votes are handled in step(); nothing else concerns a leader

    def _step_candidate(self, m: Message) -> None:
        match m:
            case AppendEntries() | Heartbeat() | InstallSnapshot():
                # Someone won this term (§5.2): recognise it.
                self._become_follower(self._term, m.src)
                self._step_follower(m)
            case RequestVoteResponse():
                if self._role is Role.PRE_CANDIDATE:
                    if not m.pre_vote or (m.granted and m.term != self._term + 1):
                        return
                elif m.pre_vote:
                    return
                self._votes[m.src] = m.granted
                result = vote_result(self._voters, self._votes)
                if result is VoteResult.WON:
                    self._won_election()
                elif result is VoteResult.LOST:
                    self._become_follower(self._term, 0)
            case _:
                pass

    def _step_follower(self, m: Message) -> None:
        match m:
            case AppendEntries():
                self._heard_from_leader(m)
                self._handle_append(m)
            case Heartbeat():
                self._heard_from_leader(m)
                self._handle_heartbeat(m)
            case InstallSnapshot():
                self._heard_from_leader(m)
                self._handle_snapshot_chunk(m)
            case TimeoutNow():
                if self._promotable() and m.src == self._leader:
                    # §3.10: the leader handed over; skip PreVote and the lease.
                    self._campaign(pre_vote=False, transfer=True)
            case ReadIndexRequest():
                self._refuse_read(m)
            case ReadIndexResponse():
                if m.index > 0:
                    self._read_states.append(ReadState(m.context, m.index))
                else:
                    self._dropped_reads.append(m.context)  # refused by the leader
            case _:
                pass

    def _heard_from_leader(self, m: Message) -> None:
        self._leader = m.src
        self._restart_election_timer(m)

    # ------------------------------------------------------------------ follower side

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        entries = m.entries
        prev_index = m.prev_index
        if entries and (
            entries[0].index != prev_index + 1 or entries[-1].index != prev_index + len(entries)
        ):
            return  # malformed: indexes must follow prev_index without gaps
        if log.pending_snapshot is not None and not log.snapshot_handed:
            # A received snapshot has not gone out in a Ready yet. Entries after it would
            # be acknowledged in the same Ready, before the runtime persisted them (it
            # installs snapshots after appending entries): drop; the leader will resend.
            return
        if not self._has_config():
            # A new node knows no configuration yet: it must start from a snapshot, which
            # carries one. Rejecting prev index 0 (which always matches) asks for it.
            self._send(
                AppendEntriesResponse(
                    term=self._term, src=self._id, dst=m.src, success=False, needs_snapshot=True
                )
            )
            return
        if prev_index < log.committed:
            # Everything up to commit matches any leader's log (§5.4, Leader Completeness).
            self._accept_append(m.src, log.committed)
            return
        if not log.match_term(prev_index, m.prev_term):
            # §5.3 consistency check failed: reject with a hint for fast backtracking.
            hint_index, hint_term = self._reject_hint(prev_index, m.prev_term)
            self._send(
                AppendEntriesResponse(
                    term=self._term,
                    src=self._id,
                    dst=m.src,
                    success=False,
                    rejected_index=prev_index,
                    hint_index=hint_index,
                    hint_term=hint_term,
                )
            )
            return
        last_new = prev_index + len(entries)
        if entries:
            self._append_from_leader(prev_index, entries)
        log.commit_to(min(m.commit, last_new))
        self._accept_append(m.src, last_new)

    def _accept_append(self, leader: NodeId, match_index: int) -> None:
        self._send(
            AppendEntriesResponse(
                term=self._term, src=self._id, dst=leader, success=True, match_index=match_index
            )
        )

    def _reject_hint(self, prev_index: int, prev_term: int) -> tuple[int, int]:
        """Where the leader should probe next, and our term there (§5.3 optimisation).

        A shorter log answers (last index, 0). Otherwise the answer is the last index
        <= prev_index whose term is <= the leader's prev_term: every entry after it
        certainly conflicts. Terms never decrease along a log, so binary search finds it.
        """
        log = self.log
        last = log.last_index()
        if prev_index > last:
            return last, 0
        lo, hi = log.committed, prev_index  # term(lo) <= prev_term: committed entries match
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if log.term(mid) <= prev_term:
                lo = mid
            else:
                hi = mid - 1
        return lo, log.term(lo)

    def _append_from_leader(self, prev_index: int, entries: tuple[Entry, ...]) -> None:
        log = self.log
        last = log.last_index()
        new: tuple[Entry, ...] = entries
        if prev_index != last:
            final = entries[-1]
            if final.index <= last and log.term(final.index) == final.term:
                return  # Log Matching: we already hold all of them
            k = 0
            count = len(entries)
            while (
                k < count
                and entries[k].index <= last
                and (log.term(entries[k].index) == entries[k].term)
            ):
                k += 1
            if k == count:
                return
            new = entries[k:]
        first = new[0].index
        assert first > log.committed, (
            f"node {self._id}: leader {self._leader} overwrites committed entry {first}"
        )
        config_changed = first <= last and self._configs.truncate_from(first)
        log.truncate_and_append(new)
        configs = [entry for entry in new if entry.kind is _CONFIG]
        for entry in configs:
            self._configs.append(entry.index, entry.data)
        if configs or config_changed:
            self._on_membership_changed()

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        log = self.log
        log.commit_to(min(m.commit, log.last_index()))
        self._send(HeartbeatResponse(term=self._term, src=self._id, dst=m.src, context=m.context))

    def _handle_snapshot_chunk(self, m: InstallSnapshot) -> None:
        log = self.log
        if m.snapshot_index <= log.committed and self._has_config():
            # Already hold everything it covers: tell the leader where we are instead.
            self._accept_append(m.src, log.committed)
            return
        outcome = self._snapshot_receiver.receive(m)
        if outcome.snapshot is not None:
            self._restore(outcome.snapshot)
        self._send(
            InstallSnapshotResponse(
                term=self._term,
                src=self._id,
                dst=m.src,
                snapshot_index=m.snapshot_index,
                next_offset=outcome.next_offset,
                success=outcome.success,
            )
        )

    def _restore(self, snapshot: Snapshot) -> None:
        """§7: keep our log if it holds the snapshot's last entry, else discard it all."""
        meta = snapshot.meta
        log = self.log
        if not self._has_config():
            # A new node learns its first configuration. It accepted no entries without
            # one, so its log is empty (the snapshot is then persisted, even at index 0,
            # so that a restart remembers the configuration) or behind the snapshot.
            if not (meta.index > log.committed or meta.index == log.last_index()):
                self._adopt_configuration(meta)
                return
        elif log.match_term(meta.index, meta.term):
            log.commit_to(meta.index)
            return
        log.restore(snapshot)
        self._configs.reset(meta.membership)
        self._on_membership_changed()

    def _adopt_configuration(self, meta: SnapshotMeta) -> None:
        """A new node that restarted before its first configuration reached its disk
        (storage may ignore a snapshot at an index it already has) holds entries but no
        configuration: take the snapshot's and replay the CONFIG entries after it."""
        log = self.log
        if not log.match_term(meta.index, meta.term):
            return  # cannot place the snapshot in our log; wait for a newer one
        try:
            tail = log.slice(meta.index + 1, log.last_index() + 1, UNLIMITED_BYTES, UNLIMITED_BYTES)
        except CompactedError:
            return
        self._configs.reset(meta.membership)
        for entry in tail:
            if entry.kind is _CONFIG:
                self._configs.append(entry.index, entry.data)
        self._on_membership_changed()

    # ------------------------------------------------------------------ leader side

    def _tick_leader(self) -> None:
        timeout = self.config.election_timeout_ticks
        self._election_elapsed += 1
        if self._election_elapsed >= timeout:
            self._election_elapsed = 0
            if self.config.check_quorum:
                active = sum(
                    1
                    for voter in self._voters
                    if voter == self._id or self._progress[voter].recent_active
                )
                if active < quorum_size(len(self._voters)):
                    self._become_follower(self._term, 0)  # cannot reach a majority: step down
                    return
                for progress in self._progress.values():
                    progress.start_activity_period()
        if self._transferee:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= timeout:
                self._transferee = 0  # §3.10: abort; accept proposals again
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self.config.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _check_can_propose(self, count: int) -> None:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader, self._term)
        if self._transferee:
            raise ProposalDroppedError(f"leadership transfer to {self._transferee} is in progress")
        if len(self.log.unstable) + count > self.config.max_unpersisted_proposals:
            raise ProposalDroppedError(
                f"{len(self.log.unstable)} proposals are waiting for the leader's disk"
            )

    def _committed_in_term(self) -> bool:
        return self.log.term_or_none(self.log.committed) == self._term

    def _flush(self) -> None:
        """Send what batched inputs left pending: new entries and a read round."""
        if self._role is not Role.LEADER:
            return
        if self._append_pending:
            self._append_pending = False
            for peer in self._peers:
                while self._send_append(peer, send_if_empty=False):
                    pass
        if self._reads.unsent:
            self._broadcast_heartbeat()

    def _broadcast_append(self, send_if_empty: bool) -> None:
        for peer in self._peers:
            self._send_append(peer, send_if_empty)

    def _broadcast_heartbeat(self) -> None:
        reads = self._reads
        context = reads.round if len(reads) else 0
        reads.unsent = False
        commit = self.log.committed
        for peer in self._peers:
            progress = self._progress[peer]
            peer_commit = min(commit, progress.match_index)
            progress.sent_commit_index(peer_commit)
            self._eager.append(
                Heartbeat(
                    term=self._term, src=self._id, dst=peer, commit=peer_commit, context=context
                )
            )

    def _send_append(self, peer: NodeId, send_if_empty: bool) -> bool:
        """Send `peer` the entries from its next index (or a snapshot if they are
        compacted). Returns True if an append with entries went out."""
        progress = self._progress[peer]
        if progress.paused:
            return False
        log = self.log
        prev_index = progress.next_index - 1
        try:
            prev_term = log.term(prev_index)
            entries = log.slice(
                progress.next_index,
                log.last_index() + 1,
                self.config.max_entries_per_append,
                self.config.max_bytes_per_append,
            )
        except CompactedError:
            self._send_snapshot(peer, progress)
            return False
        if not entries and not send_if_empty:
            return False
        self._eager.append(
            AppendEntries(
                term=self._term,
                src=self._id,
                dst=peer,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=tuple(entries),
                commit=log.committed,
            )
        )
        progress.sent_commit_index(log.committed)
        if entries:
            progress.sent_entries(entries[-1].index)
            return True
        progress.sent_probe()
        return False

    def _send_snapshot(self, peer: NodeId, progress: Progress) -> None:
        snapshot = self._storage.snapshot()
        assert snapshot.meta.index >= self.log.first_index() - 1, "snapshot must cover the gap"
        progress.become_snapshot(snapshot)
        self._send_snapshot_chunk(peer, progress)

    def _send_snapshot_chunk(self, peer: NodeId, progress: Progress) -> None:
        snapshot = progress.snapshot
        assert snapshot is not None
        offset = progress.snapshot_offset
        chunk = snapshot.data[offset : offset + self.config.snapshot_chunk_bytes]
        meta = snapshot.meta
        self._eager.append(
            InstallSnapshot(
                term=self._term,
                src=self._id,
                dst=peer,
                snapshot_index=meta.index,
                snapshot_term=meta.term,
                membership=meta.membership,
                offset=offset,
                data=chunk,
                done=offset + len(chunk) >= len(snapshot.data),
            )
        )

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        progress = self._progress.get(m.src)
        if progress is None:
            return
        progress.mark_active()
        log = self.log
        if not m.success:
            if m.needs_snapshot:
                # The follower has no configuration yet; a snapshot carries one.
                if progress.state is not ProgressState.SNAPSHOT:
                    self._send_snapshot(m.src, progress)
                return
            if m.stale_term_notice:
                return  # meant for a leader of an older term (this node, earlier)
            hint_next = self._next_index_from_hint(m.hint_index, m.hint_term)
            if progress.decrease_to(m.rejected_index, hint_next):
                self._send_append(m.src, send_if_empty=True)
            return
        if m.match_index > log.last_index():
            return  # cannot be an answer to this leader's appends
        updated = progress.update_match(m.match_index)
        if progress.state is ProgressState.PROBE and (
            updated or progress.match_index == log.last_index()
        ):
            # §5.3: the logs match up to match_index, so stream from there. Only news (or a
            # follower holding our whole log, where there is nothing to resend) may end the
            # probe: under reordering an old success that is not news arrives after the
            # rejection that started the probe, and flipping on it re-pipelined the same
            # window once per rejection/success pair, without bound (progress.py).
            progress.become_replicate()
        elif progress.state is ProgressState.SNAPSHOT:
            assert progress.snapshot is not None
            if progress.match_index >= progress.snapshot.meta.index:
                progress.become_replicate()
        if updated:
            self._commit_and_broadcast()
            if self._role is not Role.LEADER:
                return
        while self._send_append(m.src, send_if_empty=False):
            pass
        if progress.missed_commit(log.committed):
            self._send_append(m.src, send_if_empty=True)
        self._maybe_send_timeout_now(m.src)

    def _maybe_send_timeout_now(self, peer: NodeId) -> None:
        """Dissertation §3.10: once the transfer target holds our whole log, tell it to
        campaign now. Checked wherever its match index grows: append answers and the end
        of an InstallSnapshot (a snapshot may cover the whole log, so no append follows)."""
        if peer == self._transferee and self._progress[peer].match_index == self.log.last_index():
            self._send(TimeoutNow(term=self._term, src=self._id, dst=peer))

    def _next_index_from_hint(self, hint_index: int, hint_term: int) -> int:
        """The follower's entry at hint_index has hint_term (0: its log ends there).
        Resume after the last index <= hint_index whose term is <= hint_term in our log."""
        log = self.log
        hint_index = min(hint_index, log.last_index())
        if hint_term == 0 or hint_index <= 0:
            return max(hint_index, 0) + 1
        lo = log.first_index() - 1
        if hint_index <= lo:
            return hint_index + 1
        if log.term(lo) > hint_term:
            return lo + 1
        hi = hint_index
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if log.term(mid) <= hint_term:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def _handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        progress = self._progress.get(m.src)
        if progress is None:
            return
        progress.mark_active()
        if progress.state is ProgressState.SNAPSHOT:
            if progress.snapshot_chunk_stalled():
                self._send_snapshot_chunk(m.src, progress)
        else:
            progress.unblock_after_heartbeat()
            if progress.match_index < self.log.last_index():
                self._send_append(m.src, send_if_empty=True)
        if progress.ack_read_round(m.context):
            self._release_confirmed_reads()

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        progress = self._progress.get(m.src)
        if progress is None:
            return
        progress.mark_active()
        snapshot = progress.snapshot
        if progress.state is not ProgressState.SNAPSHOT or snapshot is None:
            return
        if snapshot.meta.index != m.snapshot_index or m.next_offset < 0:
            return
        if not m.success:
            progress.restart_snapshot()
            self._send_snapshot_chunk(m.src, progress)
        elif m.next_offset >= len(snapshot.data):
            # Installed (the answer to the last chunk goes out after the follower's fsync).
            progress.update_match(snapshot.meta.index)
            progress.become_replicate()
            self._commit_and_broadcast()
            if self._role is Role.LEADER:
                while self._send_append(m.src, send_if_empty=False):
                    pass
                self._maybe_send_timeout_now(m.src)
        elif progress.snapshot_acked(m.next_offset):
            # A stale answer only costs a resent chunk: the follower knows best.
            self._send_snapshot_chunk(m.src, progress)

    def _commit_and_broadcast(self) -> None:
        """Advance commit if a quorum allows it; tell the followers (and step down if the
        committed configuration no longer includes this leader, dissertation §4.2.2)."""
        if not self._maybe_commit():
            return
        # Tell the followers. One with appends in flight learns it from their answers'
        # follow-ups, so only idle ones get an (empty) append now.
        committed = self.log.committed
        for peer in self._peers:
            progress = self._progress[peer]
            if progress.missed_commit(committed):
                self._send_append(peer, send_if_empty=True)
        membership = self._configs.current
        if self._id not in membership.voters and self._configs.last_change_index <= (
            self.log.committed
        ):
            self._become_follower(self._term, 0)

    def _maybe_commit(self) -> bool:
        log = self.log
        progress = self._progress
        own = log.persisted_index()
        index = quorum_value(
            (own if voter == self._id else progress[voter].match_index for voter in self._voters),
            len(self._voters),
        )
        if index <= log.committed or not self._commit_term_ok(index):
            return False
        first_in_term = not self._committed_in_term()
        log.commit_to(index)
        if first_in_term and self._waiting_reads:
            waiting = self._waiting_reads
            self._waiting_reads = []
            for requester, context in waiting:
                self._confirm_read(context, log.committed, requester)
        return True

    def _leader_read(self, requester: NodeId, context: int) -> None:
        if not self._committed_in_term():
            # §6.4: the commit index is only known to be current once an entry of this
            # term is committed; wait for the NOOP.
            self._waiting_reads.append((requester, context))
            return
        self._confirm_read(context, self.log.committed, requester)

    def _release_confirmed_reads(self) -> None:
        reads = self._reads
        if not len(reads):
            return
        progress = self._progress
        confirmed = quorum_value(
            (
                reads.round if voter == self._id else progress[voter].read_ack_round
                for voter in self._voters
            ),
            len(self._voters),
        )
        for read in reads.confirm(confirmed):
            self._emit_read_state(read.requester, read.context, read.index)

    def _emit_read_state(self, requester: NodeId, context: int, index: int) -> None:
        """A read is confirmed: serve it here, or answer the follower that forwarded it."""
        if requester == self._id:
            self._read_states.append(ReadState(context, index))
        else:
            self._send(
                ReadIndexResponse(
                    term=self._term, src=self._id, dst=requester, context=context, index=index
                )
            )

    def _refuse_read(self, m: ReadIndexRequest) -> None:
        """Index 0: refused (not the leader, or too many reads wait); the requester
        produces no ReadState and its caller retries."""
        self._send(
            ReadIndexResponse(term=self._term, src=self._id, dst=m.src, context=m.context, index=0)
        )

    # ------------------------------------------------------------------ membership

    def _on_membership_changed(self) -> None:
        membership = self._configs.current
        self._voters = tuple(sorted(membership.voters))
        self._peers = tuple(sorted(membership.members - {self._id}))
        role = self._role
        if role is Role.LEADER:
            progress = self._progress
            next_index = self.log.last_index() + 1
            for peer in self._peers:
                if peer not in progress:
                    progress[peer] = Progress(next_index, self.config.max_inflight_appends)
            for peer in [peer for peer in progress if peer not in membership.members]:
                del progress[peer]
                if self._transferee == peer:
                    self._transferee = 0
            # A smaller quorum may confirm reads already acknowledged (or, as the only
            # voter, all of them): nothing else would re-check them if the remaining
            # acknowledgements never come (e.g. the removed voters were unreachable).
            self._release_confirmed_reads()
        elif role is Role.FOLLOWER or role is Role.LEARNER:
            self._role = Role.LEARNER if self._id in membership.learners else Role.FOLLOWER
        elif not self._promotable():
            self._become_follower(self._term, 0)

    # ------------------------------------------------------------------ output

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

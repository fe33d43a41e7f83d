"""Raft's safety properties, checked continuously while a simulation runs (Raft paper Fig. 3).

Theory of operation: the checker hears every host's persisted Readys, applied entries and
status (the `HostObserver` protocol) and keeps a global ledger:
  - election safety: the first node seen leading a term owns it; a second one is a violation;
    and no node persists votes for two different candidates in one term;
  - log matching: an (index, term) pair names one entry cluster-wide, and periodically every
    pair of logs is compared: if they agree on an (index, term), they agree on all before it;
  - leader completeness: a node that becomes leader holds every entry known committed;
  - state machine safety: every node that applies index i has the same chained hash of the
    applied prefix there (hashicorp/raft fuzzy/);
  - commit index never decreases on a node, and after a restart it starts no lower than the
    commit that node had durably persisted;
  - no acknowledged write lost (checked at the end against the surviving logs);
  - nothing leaves before it is durable (`on_send`): a message carrying term T leaves only
    once T is in the sender's durable hard state (pre-votes carry a term they only ask
    for and are exempt); a granted vote only once the vote is durable; a successful
    append response only once the entries it acknowledges are in the durable log
    (unless a later Ready of a later term has truncated them since: ready.py allows it);
  - an acknowledged entry stays in the follower's durable log (across crashes, which may
    keep any prefix of the unsynced writes) until a leader of a later term than the one
    it was acknowledged to overwrites it (`before_persist`, `on_restart`);
  - a leader only appends to its log: within one term, the entries it hands out start
    after the last ones it handed out (`on_handed`);
  - membership (dissertation §4.1, §4.2.1 bug fix): a leader hands out a CONFIG entry of
    its term only once an entry of its term is committed and its previous CONFIG entry of
    the term is committed (at most one change in flight);
  - campaigns per phase (`phase`): RequestVotes and pre-votes sent are counted per run
    phase; in a quiet phase (healed, healthy, leader alive) any campaign is churn.
Violations are collected as readable strings; the run fails if there is any.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.messages import (
    AppendEntriesResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from raftsched.raft.ready import Ready
from raftsched.raft.types import Entry, EntryKind, NodeId, Role, Status

from .disk import LogImage, SimDisk

MAX_VIOLATIONS = 50
"""Stop recording after this many: the first ones tell the story."""

MAX_ACKS_PER_NODE = 512
"""Acknowledgements remembered per node (the newest): enough to cover every crash window."""


class InvariantChecker:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.leader_of_term: dict[int, NodeId] = {}
        self._entries: dict[tuple[int, int], Entry] = {}
        self._votes: dict[tuple[NodeId, int], NodeId] = {}  # (voter, term) -> candidate
        self._applied: dict[int, tuple[int, bytes, NodeId]] = {}  # index -> (term, hash, by)
        self._commit: dict[NodeId, int] = {}
        self.max_applied_index = 0
        # (up to index, term): indexes first seen committed by a node in that term, i.e.
        # committed no later than that term. Ascending by index.
        self._commit_terms: list[tuple[int, int]] = []
        self._disks: dict[NodeId, SimDisk] = {}
        # node -> {acknowledged match index: (its entry's term, term of the ack)}
        self._acks: dict[NodeId, dict[int, tuple[int, int]]] = {}
        self._handed_term: dict[NodeId, int] = {}  # the term of each node's last Ready
        self._synced_votes: set[tuple[NodeId, int, NodeId]] = set()  # (voter, term, for)
        # Leaders: node -> (term, last index handed out in it, first index of the term,
        # last CONFIG index of the term handed out).
        self._leading: dict[NodeId, tuple[int, int, int, int]] = {}
        self.phase = "safety"
        # phase -> {"votes": n, "pre-votes": n}: campaigns started, counted per (node, term)
        self.campaigns: dict[str, dict[str, int]] = {}
        self._campaign_seen: set[tuple[str, NodeId, int, bool]] = set()
        self.quiet_phases = frozenset({"quiet"})

    def violation(self, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text)

    def register_disk(self, node_id: NodeId, disk: SimDisk) -> None:
        self._disks[node_id] = disk

    # -- HostObserver -------------------------------------------------------------------

    def on_handed(self, node_id: NodeId, rd: Ready, status: Status) -> None:
        self._handed_term[node_id] = status.term
        if status.role is not Role.LEADER:
            self._leading.pop(node_id, None)
            return
        term = status.term
        known = self._leading.get(node_id)
        own = [e for e in rd.entries if e.term == term]
        if known is None or known[0] != term:
            # First Ready as leader of `term`: it may still carry entries appended as a
            # follower; the term's own entries start with the no-op.
            first = own[0].index if own else status.last_index + 1
            known = (term, rd.entries[-1].index if rd.entries else status.last_index, first, 0)
        elif rd.entries:
            if rd.entries[0].index <= known[1]:
                self.violation(
                    f"leader append-only: node {node_id} leading term {term} handed out "
                    f"entries from index {rd.entries[0].index} after it had handed out up "
                    f"to {known[1]}"
                )
            known = (term, rd.entries[-1].index, known[2], known[3])
        last_config = known[3]
        for entry in own:
            if entry.kind != EntryKind.CONFIG:
                continue
            if status.commit < known[2]:
                self.violation(
                    f"membership: node {node_id} leading term {term} proposed a change at "
                    f"index {entry.index} before any entry of its term committed (commit "
                    f"{status.commit}, the term starts at {known[2]})"
                )
            if last_config and status.commit < last_config:
                self.violation(
                    f"membership: node {node_id} leading term {term} proposed a change at "
                    f"index {entry.index} while the change at {last_config} is uncommitted "
                    f"(commit {status.commit})"
                )
            last_config = entry.index
        self._leading[node_id] = (known[0], known[1], known[2], last_config)

    def on_send(self, node_id: NodeId, msg: Message) -> None:
        disk = self._disks.get(node_id)
        if disk is None or not disk.track_durability:
            return
        durable = disk.durable
        pre_vote = isinstance(msg, RequestVote | RequestVoteResponse) and msg.pre_vote
        if isinstance(msg, RequestVote):
            self._count_campaign(node_id, msg)
        name = type(msg).__name__
        if not pre_vote and msg.term > durable.hard_state.term:
            self.violation(
                f"durability: node {node_id} sent {name} of term {msg.term} to node "
                f"{msg.dst} before the term was durable (durable term "
                f"{durable.hard_state.term})"
            )
        if isinstance(msg, RequestVoteResponse) and msg.granted and not pre_vote:
            hs = durable.hard_state
            # Durable now, or synced earlier: with overlapping Readys a later Ready of a
            # later term may already be durable when this one's response leaves.
            if (hs.term, hs.vote) != (msg.term, msg.dst) and (
                (node_id, msg.term, msg.dst) not in self._synced_votes
            ):
                self.violation(
                    f"durability: node {node_id} granted its vote in term {msg.term} to node "
                    f"{msg.dst} before the vote was durable (durable term {hs.term} vote "
                    f"{hs.vote})"
                )
        # Overlapping Readys (ready.py): a response leaves once its own and every earlier
        # Ready's writes are durable, and a later Ready of a later term may already have
        # truncated what it acknowledges, as if the response had been sent first and
        # overtaken. Within its own term it must still hold.
        if (
            isinstance(msg, AppendEntriesResponse)
            and msg.success
            and msg.term >= self._handed_term.get(node_id, 0)
        ):
            self._record_ack(node_id, msg, durable)

    def _record_ack(self, node_id: NodeId, msg: AppendEntriesResponse, durable: LogImage) -> None:
        index = msg.match_index
        if index < durable.snapshot.meta.index:
            return  # covered by the durable snapshot
        term = _term_or_none(durable, index)
        if term is None:
            self.violation(
                f"durability: node {node_id} acknowledged entries up to {index} to node "
                f"{msg.dst} (term {msg.term}) but its durable log ends at "
                f"{durable.last_index()}"
            )
            return
        acks = self._acks.setdefault(node_id, {})
        acks[index] = (term, msg.term)
        if len(acks) > MAX_ACKS_PER_NODE:
            del acks[min(acks)]

    def _count_campaign(self, node_id: NodeId, msg: RequestVote) -> None:
        key = (self.phase, node_id, msg.term, msg.pre_vote)
        if key in self._campaign_seen:
            return
        self._campaign_seen.add(key)
        counts = self.campaigns.setdefault(self.phase, {"votes": 0, "pre-votes": 0})
        counts["pre-votes" if msg.pre_vote else "votes"] += 1
        if self.phase in self.quiet_phases and not msg.transfer:
            # (A transfer's election was asked for by the leader: not churn.)
            kind = "pre-vote" if msg.pre_vote else "election"
            self.violation(
                f"churn: node {node_id} started a {kind} for term {msg.term} in the "
                f"{self.phase} phase (network healthy, leader alive)"
            )

    def before_persist(self, node_id: NodeId, rd: Ready) -> None:
        """An overwrite of acknowledged entries needs a leader of a later term."""
        acks = self._acks.get(node_id)
        if not acks:
            return
        term_now = self._handed_term.get(node_id, 0)
        disk = self._disks[node_id]
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            kept = _term_or_none(disk.current, meta.index) == meta.term
            for index in [i for i in acks if i > meta.index]:
                entry_term, ack_term = acks[index]
                if not kept and term_now <= ack_term:
                    self.violation(
                        f"acknowledged entry dropped: node {node_id} acknowledged index "
                        f"{index} in term {ack_term} and a snapshot at {meta.index} "
                        f"replaced it in term {term_now}"
                    )
                if not kept:
                    del acks[index]
            for index in [i for i in acks if i <= meta.index]:
                del acks[index]  # covered by the snapshot
        if not rd.entries:
            return
        cut = rd.entries[0].index
        for index in [i for i in acks if i >= cut]:
            entry_term, ack_term = acks[index]
            new_term = _entry_term(rd.entries, index)
            if new_term == entry_term:
                continue  # rewritten identically (log matching holds it the same)
            if term_now <= ack_term:
                self.violation(
                    f"acknowledged entry overwritten: node {node_id} acknowledged index "
                    f"{index} (entry term {entry_term}) in term {ack_term} and overwrote it "
                    f"in term {term_now} (log ends at {disk.current.last_index()})"
                )
            del acks[index]

    def on_persist(self, node_id: NodeId, rd: Ready) -> None:
        entries = self._entries
        for entry in rd.entries:
            key = (entry.index, entry.term)
            seen = entries.get(key)
            if seen is None:
                entries[key] = entry
            elif seen is not entry and (seen.data != entry.data or seen.kind != entry.kind):
                self.violation(
                    f"log matching: node {node_id} stored a different entry at index "
                    f"{entry.index} term {entry.term} than another node"
                )

    def on_synced(self, node_id: NodeId, rd: Ready) -> None:
        """`rd`'s writes are durable and its messages about to leave."""
        hs = rd.hard_state
        if hs is not None and hs.vote:
            self._synced_votes.add((node_id, hs.term, hs.vote))
            # §5.2: each server votes for at most one candidate in a given term.
            key = (node_id, hs.term)
            voted = self._votes.get(key)
            if voted is None:
                self._votes[key] = hs.vote
            elif voted != hs.vote:
                self.violation(
                    f"vote safety: node {node_id} voted for {voted} and then {hs.vote} "
                    f"in term {hs.term}"
                )

    def on_apply(self, node_id: NodeId, entry: Entry, chain_hash: bytes) -> None:
        seen = self._applied.get(entry.index)
        if seen is None:
            self._applied[entry.index] = (entry.term, chain_hash, node_id)
            self.max_applied_index = max(self.max_applied_index, entry.index)
        elif seen[1] != chain_hash:
            self.violation(
                f"state machine safety: node {node_id} applied index {entry.index} "
                f"(term {entry.term}) with a different applied-prefix hash than node "
                f"{seen[2]} (term {seen[0]})"
            )

    def on_status(self, node_id: NodeId, status: Status) -> None:
        last = self._commit.get(node_id, 0)
        if status.commit < last:
            self.violation(
                f"commit index went backwards on node {node_id}: {last} -> {status.commit}"
            )
        self._commit[node_id] = status.commit
        frontier = self._commit_terms[-1][0] if self._commit_terms else 0
        if status.commit > frontier:
            self._commit_terms.append((status.commit, status.term))
        if status.role is Role.LEADER:
            owner = self.leader_of_term.get(status.term)
            if owner is None:
                self.leader_of_term[status.term] = node_id
                self._check_leader_completeness(node_id, status)
            elif owner != node_id:
                self.violation(
                    f"election safety: nodes {owner} and {node_id} both led term {status.term}"
                )

    def on_restart(self, node_id: NodeId, durable_commit: int) -> None:
        # After a restart the commit may restart from what was persisted, never below it.
        self._commit[node_id] = durable_commit
        self._leading.pop(node_id, None)
        disk = self._disks.get(node_id)
        acks = self._acks.get(node_id)
        if disk is None or not acks:
            return
        image = disk.current
        for index, (entry_term, ack_term) in sorted(acks.items()):
            if index <= image.snapshot.meta.index:
                continue
            term = _term_or_none(image, index)
            if term != entry_term:
                self.violation(
                    f"acknowledged entry lost: node {node_id} acknowledged index {index} "
                    f"(entry term {entry_term}) in term {ack_term}, and after a crash its "
                    f"durable log has term {term} there"
                )
                return

    # -- checks -------------------------------------------------------------------------

    def _check_leader_completeness(self, node_id: NodeId, status: Status) -> None:
        disk = self._disks.get(node_id)
        if disk is None:
            return
        log = disk.current
        # Only entries committed in an earlier term must be in this leader's log (§5.4).
        must_hold = 0
        for upto, term in self._commit_terms:
            if term < status.term:
                must_hold = max(must_hold, upto)
        if status.last_index < must_hold:
            self.violation(
                f"leader completeness: node {node_id} leads term {status.term} with last "
                f"index {status.last_index} < index {must_hold} committed in an earlier term"
            )
            return
        for index in range(log.first_index(), must_hold + 1):
            committed = self._applied.get(index)
            if committed is not None and _term_or_none(log, index) != committed[0]:
                self.violation(
                    f"leader completeness: node {node_id} leads term {status.term} without "
                    f"committed entry {index} (term {committed[0]})"
                )
                return

    def check_log_matching(self, images: dict[NodeId, LogImage]) -> None:
        """For every pair of logs: where they agree on a term, they agree on all before."""
        ids = sorted(images)
        for i, a_id in enumerate(ids):
            for b_id in ids[i + 1 :]:
                self._match_pair(a_id, images[a_id], b_id, images[b_id])

    def _match_pair(self, a_id: NodeId, a: LogImage, b_id: NodeId, b: LogImage) -> None:
        lo = max(a.first_index(), b.first_index())
        hi = min(a.last_index(), b.last_index())
        agree = 0
        for index in range(hi, lo - 1, -1):
            if a.term(index) == b.term(index):
                agree = index
                break
        for index in range(lo, agree + 1):
            ea = a.slice(index, index + 1, 0)[0]
            eb = b.slice(index, index + 1, 0)[0]
            if ea.term != eb.term or ea.data != eb.data or ea.kind != eb.kind:
                self.violation(
                    f"log matching: nodes {a_id} and {b_id} agree at index {agree} but "
                    f"differ at {index}"
                )
                return

    def check_acknowledged(
        self, acked: Iterable[tuple[int, int]], images: dict[NodeId, LogImage]
    ) -> None:
        """Every acknowledged write's entry is still in every surviving log (or its
        snapshot, whose chained hash the applied-prefix check already covers)."""
        for index, client_id in acked:
            committed = self._applied.get(index)
            if committed is None:
                self.violation(
                    f"acknowledged write at index {index} (client {client_id}) "
                    "was never recorded as applied"
                )
                continue
            for node_id, log in images.items():
                if index < log.first_index():
                    continue
                term = _term_or_none(log, index)
                if term != committed[0]:
                    self.violation(
                        f"acknowledged write lost: index {index} (term {committed[0]}, client "
                        f"{client_id}) is term {term} on node {node_id}"
                    )
                    return


def _entry_term(entries: tuple[Entry, ...], index: int) -> int | None:
    first = entries[0].index
    if first <= index < first + len(entries):
        return entries[index - first].term
    return None


def _term_or_none(log: LogImage, index: int) -> int | None:
    try:
        return log.term(index)
    except (CompactedError, UnavailableError):
        return None

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
  - no acknowledged write lost (checked at the end against the surviving logs).
Violations are collected as readable strings; the run fails if there is any.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftsched.raft.errors import CompactedError, UnavailableError
from raftsched.raft.ready import Ready
from raftsched.raft.types import Entry, NodeId, Role, Status

from .disk import LogImage, SimDisk

MAX_VIOLATIONS = 50
"""Stop recording after this many: the first ones tell the story."""


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

    def violation(self, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text)

    def register_disk(self, node_id: NodeId, disk: SimDisk) -> None:
        self._disks[node_id] = disk

    # -- HostObserver -------------------------------------------------------------------

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


def _term_or_none(log: LogImage, index: int) -> int | None:
    try:
        return log.term(index)
    except (CompactedError, UnavailableError):
        return None

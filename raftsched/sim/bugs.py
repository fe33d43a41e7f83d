"""Deliberately broken variants of the core and the runtime, to prove the simulator can fail.

Theory of operation: each bug is the smallest change that breaks one Raft rule, made here
and only here, by overriding one hook of RaftNode (raftsched/raft/node.py documents them),
one method of the simulated disk, or one method of the node host. `--bug NAME` swaps the
variant in; without it nothing in this module is used. A bug that the simulator does not
catch within a couple of hundred seeds means the fault schedules are too gentle
(tests/sim/test_bugs_are_caught.py holds us to that).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TypeVar

from raftsched.raft.config import RaftConfig
from raftsched.raft.messages import Heartbeat, Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.types import HardState, Membership, NodeId
from raftsched.sched import Command, Complete, Fail, HeartbeatLease, ReportBatch, Result

from .cluster import DiskFactory, default_disk, real_core_factory
from .disk import SimDisk
from .node_host import CoreFactory, NodeHost, RaftCore
from .sched_app import SimSchedApp


class UnknownBugError(ValueError):
    """--bug named a bug this simulator does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown bug {name!r}; known bugs: {', '.join(sorted(BUGS))}")
        self.name = name


# -- core variants (one hook each) ----------------------------------------------------------


class CommitOldTermNode(RaftNode):
    """Commits an older term's entry by counting replicas, breaking §5.4.2 (Figure 8)."""

    def _commit_term_ok(self, index: int) -> bool:
        return True


class VoteWithoutLogCheckNode(RaftNode):
    """Grants (pre-)votes to any candidate, however stale its log (breaks §5.4.1)."""

    def _log_up_to_date(self, last_index: int, last_term: int) -> bool:
        return True


class ReadWithoutQuorumNode(RaftNode):
    """Confirms a read index at once, without the heartbeat round proving it still leads
    (breaks §6.4: a deposed leader serves stale reads)."""

    def _confirm_read(self, context: int, index: int, requester: NodeId) -> None:
        self._emit_read_state(requester, context, index)


class EagerBeforeDurableNode(RaftNode):
    """Sends eager messages (the leader's appends and heartbeats) even while its term and
    vote are not durable yet (issue 6 defect 1): a single voter that elects itself tells
    its learners about a term a power loss can make it reuse."""

    def _may_send_eagerly(self) -> bool:
        return True


class HeartbeatIgnoredNode(RaftNode):
    """Does not restart the election timer on heartbeats (issue 6 defect 5): a follower
    that only hears heartbeats from a live leader campaigns anyway."""

    def _restart_election_timer(self, m: Message) -> None:
        if isinstance(m, Heartbeat):
            return
        super()._restart_election_timer(m)


def _factory(cls: type[RaftNode]) -> CoreFactory:
    def make(config: RaftConfig, disk: SimDisk, rng: random.Random) -> RaftCore:
        return cls(config, disk, rng)

    return make


# -- disk variant -------------------------------------------------------------------------


class ForgetfulVoteDisk(SimDisk):
    """Loses the persisted vote on every crash (PySyncObj #84/#201): a restarted node may
    vote twice in one term."""

    def crash(self, keep_ops: int = 0, torn_entries: int | None = None) -> None:
        super().crash(keep_ops, torn_entries)
        for image in (self.current, self.durable):
            hs = image.hard_state
            image.hard_state = HardState(term=hs.term, vote=0, commit=hs.commit)


def _forgetful_disk(membership: Membership, track_durability: bool) -> SimDisk:
    return ForgetfulVoteDisk(membership, track_durability=track_durability)


# -- host variant -------------------------------------------------------------------------


class AckBeforeSyncHost(NodeHost):
    """Sends every message of a Ready before its fsync: a follower acknowledges entries it
    has not made durable, the leader counts them, and a crash then loses them."""

    def _early_messages(self, rd: Ready) -> tuple[Message, ...]:
        return rd.eager_messages + rd.messages

    def _late_messages(self, rd: Ready) -> tuple[Message, ...]:
        return ()


# -- scheduler variant (the sched workload) ----------------------------------------------------


_TokenCmd = TypeVar("_TokenCmd", bound=HeartbeatLease | Complete | Fail)


class AnyTokenSchedApp(SimSchedApp):
    """Accepts a heartbeat/complete/fail with any token, as a scheduler without fencing
    would: the command is applied as if it quoted the job's current token."""

    def _apply_command(self, command: Command, index: int, stamp_ms: int) -> Result:
        if isinstance(command, HeartbeatLease | Complete | Fail):
            command = self._current_token(command)
        elif isinstance(command, ReportBatch):
            reports = tuple(self._current_token(item) for item in command.reports)
            command = dataclasses.replace(command, reports=reports)
        return super()._apply_command(command, index, stamp_ms)

    def _current_token(self, command: _TokenCmd) -> _TokenCmd:
        job = self.state.jobs.get(command.job_id)
        if job is not None and job.token != command.token:
            return dataclasses.replace(command, token=job.token)
        return command


class LocalClockSchedApp(SimSchedApp):
    """Each replica adds its own clock offset to the stamp, as a state machine that read
    its node's clock would (SPEC §4 forbids it): replicas drift apart in state, not in log."""

    def _apply_command(self, command: Command, index: int, stamp_ms: int) -> Result:
        return super()._apply_command(command, index, stamp_ms + (self.replica % 3) * 1_000)


# -- the registry -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bug:
    name: str
    description: str
    core_factory: CoreFactory = real_core_factory
    host_class: type[NodeHost] = NodeHost
    disk_factory: DiskFactory = default_disk
    workload: str = "kv"  # the workload that exposes it (run.py uses it unless told otherwise)
    sched_app_class: type[SimSchedApp] | None = None
    hook: str = ""  # the RaftNode hook the bug overrides (the core must have it)

    def available(self) -> bool:
        """False when the core lacks the hook this bug overrides (an older core)."""
        return not self.hook or hasattr(RaftNode, self.hook)


BUGS: dict[str, Bug] = {
    bug.name: bug
    for bug in (
        Bug(
            "commit-old-term",
            "commit an older term's entry by counting replicas (§5.4.2, Figure 8)",
            core_factory=_factory(CommitOldTermNode),
        ),
        Bug(
            "forget-vote",
            "a restarted node forgets whom it voted for in its current term",
            disk_factory=_forgetful_disk,
        ),
        Bug(
            "vote-without-log-check",
            "grant votes without the up-to-date log check (§5.4.1)",
            core_factory=_factory(VoteWithoutLogCheckNode),
        ),
        Bug(
            "read-without-quorum",
            "confirm ReadIndex reads without a heartbeat round (§6.4)",
            core_factory=_factory(ReadWithoutQuorumNode),
        ),
        Bug(
            "eager-before-durable",
            "the leader sends its appends before its new term is durable (issue 6 defect 1; "
            "reachable with a single voter)",
            core_factory=_factory(EagerBeforeDurableNode),
            hook="_may_send_eagerly",
        ),
        Bug(
            "heartbeat-ignored",
            "heartbeats do not restart a follower's election timer (issue 6 defect 5)",
            core_factory=_factory(HeartbeatIgnoredNode),
            hook="_restart_election_timer",
        ),
        Bug(
            "ack-before-sync",
            "send acknowledgements before the entries they promise are fsynced",
            host_class=AckBeforeSyncHost,
        ),
        Bug(
            "sched-any-token",
            "the scheduler accepts heartbeat/complete/fail with a stale fencing token "
            "(runs the sched workload)",
            workload="sched",
            sched_app_class=AnyTokenSchedApp,
        ),
        Bug(
            "sched-local-clock",
            "each scheduler replica applies with its own clock instead of the leader's stamp "
            "(runs the sched workload)",
            workload="sched",
            sched_app_class=LocalClockSchedApp,
        ),
    )
}


def get_bug(name: str) -> Bug:
    try:
        return BUGS[name]
    except KeyError:
        raise UnknownBugError(name) from None

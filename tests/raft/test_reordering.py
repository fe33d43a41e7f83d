"""Replication stays bounded when responses arrive late, out of order or twice (UDP-like
links). The simulator once found a livelock there: a leader and a catching-up follower
exchanging more than 100 messages per node and tick for ever.

The hazard (progress.py, `RaftNode._handle_append_response`): under reordering a follower
rejects the appends that overtake the gap, which drops the leader to PROBE; an old success
that is not news (its match index is the one the leader already knows) then flipped it back
to REPLICATE, and `become_replicate` re-pipelined a whole window of entries already in
flight. Every rejection/stale-success pair bought another window, so replayed (duplicated)
responses alone made the leader send without bound. The rule now: a response that does not
advance the match index never opens a window, so the leader answers it with at most a
probe (and a commit refresh); only news, which is finite, can open one.

Leader 1 and follower 3 are up to date; follower 2 is cut off while entries are proposed,
then its traffic with the leader is delivered in an order the test (or hypothesis) picks.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
)
from raftsched.raft.node import RaftNode
from raftsched.raft.progress import Progress, ProgressState

from .harness import Cluster

LEADER = 1
FOLLOWER = 2
WINDOW = 4  # max_inflight_appends
ENTRIES_PER_APPEND = 2  # like the simulator's cap
BEHIND = 24  # entries the follower misses while it is cut off
REPLAYS = 50
STEPS = 400  # deliveries and ticks per random schedule
MAX_QUEUE = 200  # bound on messages in flight (duplication adds some)


def behind_cluster() -> Cluster:
    """Leader 1 in REPLICATE towards follower 2 with a full window of appends that were
    lost; follower 2 is BEHIND entries behind; follower 3 is up to date."""
    c = Cluster(
        (1, 2, 3),
        max_entries_per_append=ENTRIES_PER_APPEND,
        max_inflight_appends=WINDOW,
        # Node 3's traffic is discarded below; the leader must not step down for it.
        check_quorum=False,
    )
    c.elect(LEADER)
    c.propose(LEADER, b"first")
    c.stabilize()
    c.isolate(FOLLOWER)
    for i in range(BEHIND):
        c.propose(LEADER, b"cmd%d" % i)
    c.stabilize()
    c.heal()
    assert c.node(LEADER).log.committed == c.node(LEADER).log.last_index()
    return c


def progress_of(c: Cluster) -> Progress:
    progress: Progress = c.node(LEADER)._progress[FOLLOWER]
    return progress


def state(progress: Progress) -> ProgressState:
    """The state, read through a call: mypy would keep an earlier assert's narrowing."""
    return progress.state


def step(c: Cluster, m: Message) -> list[Message]:
    """Deliver `m` now (whatever else is queued) and return what its receiver sent."""
    before = len(c.queue)
    c.node(m.dst).step(m)
    c.process(m.dst)
    sent = c.queue[before:]
    return list(sent)


def take_one(c: Cluster, kind: type[Message], src: int, dst: int) -> Message:
    taken = c.take(lambda m: isinstance(m, kind) and m.src == src and m.dst == dst)
    assert len(taken) == 1, taken
    return taken[0]


def appends_to_follower(messages: list[Message]) -> int:
    return sum(1 for m in messages if isinstance(m, AppendEntries) and m.dst == FOLLOWER)


def catch_up(c: Cluster) -> None:
    """Faults stop: deliver everything (held messages included) and tick until the
    follower holds the leader's whole log."""
    for _ in range(20):
        c.stabilize()
        leader = c.node(LEADER)
        if c.node(FOLLOWER).log.last_index() == leader.log.last_index():
            break
        c.tick()
    leader = c.node(LEADER)
    assert c.node(FOLLOWER).log.last_index() == leader.log.last_index()
    assert progress_of(c).match_index == leader.log.last_index()
    c.check_safety()


def test_replayed_stale_responses_never_reopen_the_window() -> None:
    c = behind_cluster()
    base = c.node(FOLLOWER).log.last_index()
    progress = progress_of(c)
    assert state(progress) is ProgressState.REPLICATE and progress.paused
    assert progress.match_index == base
    # A heartbeat round: the full window lets one append through, which overtakes the
    # lost ones and is rejected; the rejection drops the leader to PROBE at base + 1.
    c.node(LEADER).tick()
    c.process(LEADER)
    c.take(lambda m: FOLLOWER not in (m.src, m.dst))  # node 3 is not part of this test
    step(c, take_one(c, Heartbeat, LEADER, FOLLOWER))
    step(c, take_one(c, HeartbeatResponse, FOLLOWER, LEADER))
    overtaking = take_one(c, AppendEntries, LEADER, FOLLOWER)
    assert isinstance(overtaking, AppendEntries) and overtaking.prev_index > base
    step(c, overtaking)
    rejection = take_one(c, AppendEntriesResponse, FOLLOWER, LEADER)
    assert isinstance(rejection, AppendEntriesResponse) and not rejection.success
    step(c, rejection)
    assert state(progress) is ProgressState.PROBE and progress.next_index == base + 1
    # The probe succeeds: news, so the leader pipelines a window again, which the network
    # now holds back.
    step(c, take_one(c, AppendEntries, LEADER, FOLLOWER))
    success = take_one(c, AppendEntriesResponse, FOLLOWER, LEADER)
    assert isinstance(success, AppendEntriesResponse) and success.success
    window = step(c, success)
    assert appends_to_follower(window) == WINDOW
    assert state(progress) is ProgressState.REPLICATE
    assert progress.match_index == success.match_index
    held = c.take()
    # The network duplicates the two old responses and delivers them again and again.
    # The rejection is about an append the window resends (prev < next_index), so the
    # first replay may drop the leader to PROBE and probe once; the success is not news.
    # Neither may buy another window: the old code sent 1 + WINDOW appends per pair.
    resent = 0
    for _ in range(REPLAYS):
        resent += appends_to_follower(step(c, rejection))
        resent += appends_to_follower(step(c, success))
        assert progress.match_index == success.match_index  # never moves backwards
    assert resent <= 1, f"{resent} appends for {2 * REPLAYS} stale responses"
    c.queue.extend(held)
    catch_up(c)


def test_rejection_of_an_append_outside_the_current_window_is_stale() -> None:
    progress = Progress(next_index=1, max_inflight=8)
    progress.become_replicate()
    progress.update_match(5)
    progress.sent_entries(7)
    progress.sent_entries(9)
    assert progress.next_index == 10
    # prev 12 >= next_index: sent in an earlier REPLICATE period, since abandoned.
    assert not progress.decrease_to(rejected_prev_index=12, hint_next_index=6)
    assert state(progress) is ProgressState.REPLICATE and list(progress.inflight) == [7, 9]
    assert progress.decrease_to(rejected_prev_index=7, hint_next_index=6)
    assert state(progress) is ProgressState.PROBE and progress.next_index == 6


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), duplicate_rate=st.sampled_from([0.0, 0.2, 0.5]))
def test_reordered_and_duplicated_delivery_stays_bounded(seed: int, duplicate_rate: float) -> None:
    """Any delivery order of the leader/follower traffic, with duplicates and heartbeats:
    a response that does not advance the follower's match index makes the leader send it
    at most a probe and a commit refresh, and the follower catches up once faults stop."""
    rng = random.Random(seed)
    c = behind_cluster()
    leader: RaftNode = c.node(LEADER)
    progress = progress_of(c)
    for _ in range(STEPS):
        c.take(lambda m: FOLLOWER not in (m.src, m.dst))  # node 3 is not part of this test
        if not c.queue or rng.random() < 0.05:
            leader.tick()
            c.process(LEADER)
            continue
        m = c.queue.pop(rng.randrange(len(c.queue)))  # any message may overtake any other
        if rng.random() < duplicate_rate and len(c.queue) < MAX_QUEUE:
            c.queue.insert(rng.randrange(len(c.queue) + 1), m)
        match_before = progress.match_index
        sent = step(c, m)
        if isinstance(m, AppendEntriesResponse) and leader is c.node(LEADER):
            assert progress.match_index >= match_before  # never moves backwards
            if progress.match_index == match_before:
                assert appends_to_follower(sent) <= 2, (m, sent)
    assert len(c.sent) < 20 * STEPS
    catch_up(c)

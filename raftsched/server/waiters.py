"""Who waits for what on a node: proposals for their entry, reads for their index.

Theory of operation. A proposal is named by the (index, term) the core returned for its entry
(log matching: unique cluster-wide). It waits in `proposals[index]` until the entry at that
index is applied: the same term means it is ours and the state machine's answer is the
result; another term means a new leader overwrote it, so it was never committed
(OutcomeUnknown to the client, who retries with its idempotency key). Applying goes through
every index in order, so no waiter is skipped; a snapshot restored over our indexes fails
the waiters it covers the same way.

A read barrier (ReadIndex, §6.4) waits by its context until the core hands out a ReadState
for it, then until the applied index reaches the state's index (a heap by index). A read the
core drops (`Ready.dropped_reads`) fails at once unless it was confirmed first (a duplicated
forwarded request may come back both ways: the first outcome counts).

When this node stops leading, its pending proposals may or may not commit under the next
leader: they fail at once as OutcomeUnknown (`fail_proposals`) rather than at their timeout.

Both tables are bounded by the runtime's limits (it refuses new waiters past them); failing
every waiter at once serves shutdown and fatal errors.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass

from raftsched.raft.types import Entry, ReadState
from raftsched.sched import Command, Ok, Result

from .errors import OutcomeUnknown


@dataclass(slots=True)
class _Proposal:
    term: int
    future: asyncio.Future[Result]
    config_change: bool  # a CONFIG entry: the app answers nothing; Ok(None) once applied
    # The parsed command and the very bytes proposed for it: applying our own entry reuses
    # the command instead of decoding it again (SchedApp.apply).
    data: bytes | None = None
    command: Command | None = None


class Waiters:
    def __init__(self) -> None:
        self.proposals: dict[int, _Proposal] = {}  # log index -> the proposal there
        self.reads: dict[int, asyncio.Future[None]] = {}  # read context -> its barrier
        self._confirmed: list[tuple[int, int]] = []  # heap of (read index, context)
        self._confirmed_contexts: set[int] = set()  # contexts in the heap
        self._next_context = 1

    def __len__(self) -> int:
        return len(self.proposals) + len(self.reads)

    # -- proposals ------------------------------------------------------------------------

    def add_proposal(
        self,
        loop: asyncio.AbstractEventLoop,
        index: int,
        term: int,
        *,
        config_change: bool = False,
        data: bytes | None = None,
        command: Command | None = None,
    ) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = loop.create_future()
        old = self.proposals.get(index)
        if old is not None and not old.future.done():  # our older-term entry: overwritten
            old.future.set_exception(OutcomeUnknown())
        self.proposals[index] = _Proposal(term, future, config_change, data, command)
        return future

    def own_command(self, entry: Entry) -> Command | None:
        """Our parsed command if `entry` is the very entry we proposed (same term, same
        bytes object), else None (decode it)."""
        waiter = self.proposals.get(entry.index)
        if waiter is None or waiter.term != entry.term or waiter.data is not entry.data:
            return None
        return waiter.command

    def applied(self, entry: Entry, answer: Result | None) -> bool | None:
        """`entry` was applied with the state machine's `answer` (None: not a command).
        True: a proposal of ours got its answer; False: ours was overwritten; None: none."""
        waiter = self.proposals.pop(entry.index, None)
        if waiter is None or waiter.future.done():
            return None
        if waiter.term != entry.term:  # another leader's entry took this index
            waiter.future.set_exception(OutcomeUnknown())
            return False
        if answer is not None:
            waiter.future.set_result(answer)
        else:
            assert waiter.config_change, f"no answer for the entry at {entry.index}"
            waiter.future.set_result(Ok(None))
        return True

    def fail_proposals(self, exc: Exception) -> int:
        """Fail every pending proposal with `exc` (leadership lost); how many were failed."""
        failed = 0
        for waiter in self.proposals.values():
            if not waiter.future.done():
                waiter.future.set_exception(exc)
                failed += 1
        self.proposals.clear()
        return failed

    def fail_up_to(self, index: int) -> None:
        """A snapshot replaced the state up to `index`: our entries there are not ours."""
        for idx in [i for i in self.proposals if i <= index]:
            waiter = self.proposals.pop(idx)
            if not waiter.future.done():
                waiter.future.set_exception(OutcomeUnknown())

    # -- reads ----------------------------------------------------------------------------

    def new_read(self, loop: asyncio.AbstractEventLoop) -> tuple[int, asyncio.Future[None]]:
        """A fresh positive context for `RaftNode.read_index` and the future to await."""
        context = self._next_context
        self._next_context += 1
        future: asyncio.Future[None] = loop.create_future()
        self.reads[context] = future
        return context, future

    def drop_read(self, context: int) -> None:
        self.reads.pop(context, None)

    def dropped(self, context: int, exc: Exception) -> None:
        """The core will never confirm the read `context`: fail it now (if not confirmed)."""
        if context in self._confirmed_contexts:
            return
        future = self.reads.pop(context, None)
        if future is not None and not future.done():
            future.set_exception(exc)

    def confirmed(self, read_state: ReadState) -> None:
        context = read_state.context
        if context in self.reads and context not in self._confirmed_contexts:
            heapq.heappush(self._confirmed, (read_state.index, context))
            self._confirmed_contexts.add(context)

    def serve_reads(self, applied_index: int) -> None:
        heap = self._confirmed
        while heap and heap[0][0] <= applied_index:
            _, context = heapq.heappop(heap)
            self._confirmed_contexts.discard(context)
            future = self.reads.pop(context, None)
            if future is not None and not future.done():
                future.set_result(None)

    # -- all ------------------------------------------------------------------------------

    def fail_all(self, exc: Exception) -> None:
        for waiter in self.proposals.values():
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self.proposals.clear()
        for future in self.reads.values():
            if not future.done():
                future.set_exception(exc)
        self.reads.clear()
        self._confirmed.clear()
        self._confirmed_contexts.clear()

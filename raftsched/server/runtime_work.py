"""Lease long polls: wake the waiters of a queue when an applied entry may have made one of
its jobs leasable (edge-triggered; the API checks the level itself).

Theory of operation. `wait(queue, timeout_s)` registers the waiter synchronously (the lease
handler checks the state and then awaits with nothing in between) together with the queue's
signature at that moment: (pending count, leased count, config). As the app's observer, this
module then looks at the waited queues after every applied scheduler command (cheap: nothing
when nobody waits) and wakes a queue's waiters when its pending count grew (a submit, a
promotion, a release, a retry, a dead-letter requeue), its leased count fell (a complete, fail,
cancel or expiry frees max_in_flight room and worker capacity) or its configuration changed
(resume, max_in_flight). A lease alone (pending down, leased up) wakes nobody. Comparing per
command, not per batch, means a submit and a lease in one batch cannot hide each other.
Capacity freed on another queue by the same worker moves only that queue's counts: the lease
route (api_routes_leases.py) also waits on those queues. A restored snapshot wakes everyone.

`lease_expirations` is the state machine's count of leases ended by expiry (by any entry, or
when a command met a dead lease), kept monotonic across snapshot restores for /metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from raftsched.app import SchedApp
from raftsched.raft.types import Entry
from raftsched.sched import Command, Result
from raftsched.wire.envelope import SchedEntry

_Signature = tuple[int, int, object]


@dataclass(slots=True)
class _QueueWait:
    event: asyncio.Event
    signature: _Signature


class WorkWaiters:
    def __init__(self) -> None:
        self._waits: dict[str, _QueueWait] = {}
        self.app: SchedApp | None = None  # set by the runtime (the app's observer)
        self._expirations_before_restore = 0  # counted by states replaced by a restore
        self.wakeups = 0

    def __len__(self) -> int:
        return len(self._waits)

    @property
    def lease_expirations(self) -> int:
        """Leases ended by expiry on this replica since the process started."""
        assert self.app is not None
        return self._expirations_before_restore + self.app.state.lease_expirations

    def before_restore(self) -> None:
        """The app's state is about to be replaced: keep what it counted."""
        assert self.app is not None
        self._expirations_before_restore += self.app.state.lease_expirations

    def _signature(self, queue: str) -> _Signature:
        assert self.app is not None
        q = self.app.state.queues.get(queue)
        if q is None:
            return (0, 0, None)
        return (q.counts["pending"], q.counts["leased"], q.config)

    def register(self, queue: str) -> asyncio.Event:
        """The event the next relevant apply sets (shared by every waiter of the queue)."""
        wait = self._waits.get(queue)
        if wait is None:
            wait = self._waits[queue] = _QueueWait(asyncio.Event(), self._signature(queue))
        return wait.event

    async def wait(self, queue: str, timeout_s: float) -> None:
        event = self.register(queue)  # before the first suspension
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            pass

    def on_sched_apply(
        self,
        app: SchedApp,
        entry: Entry,
        *,
        envelope: SchedEntry,
        command: Command,
        result: Result,
        clock_before_ms: int,
    ) -> None:
        if not self._waits:
            return
        woken = []
        for name, wait in self._waits.items():
            now = self._signature(name)
            then = wait.signature
            if now[0] > then[0] or now[1] < then[1] or now[2] is not then[2]:
                woken.append(name)
            else:
                wait.signature = now  # a lease moved it: compare the next entry to this
        for name in woken:
            self._waits.pop(name).event.set()
            self.wakeups += 1

    def wake_all(self) -> None:
        """The state was replaced (snapshot restore): let every waiter look again."""
        waits, self._waits = self._waits, {}
        for wait in waits.values():
            wait.event.set()
        self.wakeups += len(waits)

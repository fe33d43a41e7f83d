"""The scheduler as the simulator's replicated application: raftsched/app's `SchedApp`
(the production apply path, unchanged) behind the simulator's `ReplicatedApp` protocol.

Theory of operation: `SimSchedApp` adds only what the simulator needs around the real app:
`apply_entry` turns its `AppliedResult` into the host's `AppAnswer` (the waiter's key is the
(index, term) of the entry the request was proposed as, unique cluster-wide by log
matching), `read` for ReadIndex reads, and a replica number (which build of its kind this is,
for bugs.py's nondeterminism). A retry is a new proposal; the scheduler's own idempotency
keys and job ids make it apply once. An answer is `Ok(result)` with the scheduler's
`Ok | Refused` as value: either way the command was applied. An undecodable entry answers
not-ok, definitely without effect.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from raftsched.app import ApplyObserver, SchedApp, encode_proposal
from raftsched.raft.types import Entry
from raftsched.sched import Command, Refused, Tick

from .app import AppAnswer, ReplicatedApp

SchedApplyObserver = ApplyObserver  # the checks (sched_checks.py) implement it


@dataclass(frozen=True, slots=True)
class SchedRequest:
    """A client's scheduler command, as handed to a host's `propose`."""

    command: Command


class SimSchedApp(SchedApp):
    """One replica's scheduler app, seen by a simulated node host."""

    def __init__(self, observer: ApplyObserver | None = None, replica: int = 0) -> None:
        super().__init__(observer=observer)
        self.replica = replica

    def apply_entry(self, entry: Entry) -> AppAnswer | None:
        applied = self.apply(entry)
        if applied is None:
            return None
        if not applied.decoded:
            assert isinstance(applied.result, Refused)
            return AppAnswer(applied.key, False, applied.result.error.message)
        return AppAnswer(applied.key, True, applied.result)

    def read(self, key: str) -> Any:
        """A local read of one job document (linearizable only after a ReadIndex, §6.4)."""
        return self.get_job(key)


class SchedAppKind:
    """Builds scheduler apps of one class, all reporting to one observer."""

    name = "sched"

    def __init__(
        self, observer: ApplyObserver | None = None, app_class: type[SimSchedApp] = SimSchedApp
    ) -> None:
        self.observer = observer
        self.app_class = app_class
        self._built = 0  # apps built so far: a deterministic replica number

    def restore(self, blob: bytes, index: int) -> ReplicatedApp:
        self._built += 1
        app = self.app_class(self.observer, replica=self._built)
        app.restore(blob)
        assert app.applied_index == index, (
            f"snapshot data at {app.applied_index} and metadata at {index} disagree"
        )
        return app

    def encode_proposal(self, request: object, stamp_ms: int, proposer_id: int) -> bytes:
        assert isinstance(request, SchedRequest)
        return encode_proposal(request.command, stamp_ms=stamp_ms, proposer_id=proposer_id)

    def proposal_key(self, request: object, index: int, term: int) -> Hashable:
        return (index, term)

    def filler(self, n: int) -> object:
        del n
        return SchedRequest(Tick())  # runs due work only; every replica does the same

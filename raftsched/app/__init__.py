"""The replicated application: the one apply path both raftsched/sim and raftsched/server run.

`SchedApp` (sched_app.py) turns committed log entries into scheduler state: it decodes the
entry envelope, applies the command to a `SchedulerState` with the leader's stamp, chains the
hash of the applied log (chain.py) and returns the answer for whoever waits on that entry.
Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from .chain import CHAIN_HASH_START, chain
from .sched_app import AppliedResult, ApplyObserver, SchedApp, encode_proposal

__all__ = [
    "CHAIN_HASH_START",
    "AppliedResult",
    "ApplyObserver",
    "SchedApp",
    "chain",
    "encode_proposal",
]

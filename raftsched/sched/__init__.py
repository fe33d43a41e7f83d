"""The scheduler state machine (SPEC §4): a pure, deterministic function of committed entries.

Public surface: the commands (commands.py) and their parsers (parse.py), the refusals
(errors.py), `Ok` / `Refused` (result.py), `Limits` (limits.py) and `SchedulerState`
(state.py). See state.py for the theory of operation.
"""

from .commands import (
    Backfill,
    Backoff,
    Cancel,
    Command,
    Complete,
    ConfigureQueue,
    DeleteSchedule,
    Fail,
    HeartbeatLease,
    JobSpec,
    JobTemplate,
    Lease,
    PutSchedule,
    SubmitJobs,
    SubmitWorkflow,
    Tick,
    WorkerHeartbeat,
    command_kind,
    to_plain,
)
from .errors import SchedError, ValidationError
from .limits import Limits
from .parse import parse_command
from .result import Ok, Refused, Result
from .state import SchedulerState

__all__ = [
    "Backfill",
    "Backoff",
    "Cancel",
    "Command",
    "Complete",
    "ConfigureQueue",
    "DeleteSchedule",
    "Fail",
    "HeartbeatLease",
    "JobSpec",
    "JobTemplate",
    "Lease",
    "Limits",
    "Ok",
    "PutSchedule",
    "Refused",
    "Result",
    "SchedError",
    "SchedulerState",
    "SubmitJobs",
    "SubmitWorkflow",
    "Tick",
    "ValidationError",
    "WorkerHeartbeat",
    "command_kind",
    "parse_command",
    "to_plain",
]

"""The scheduler state machine (SPEC §4): a pure, deterministic function of committed entries.

Public surface: the commands (commands.py) and their parsers (parse.py), the refusals
(errors.py), `Ok` / `Refused` (result.py), `Limits` (limits.py) and `SchedulerState`
(state.py). See state.py for the theory of operation.
"""

from .commands import (
    AcceptClockJump,
    Backfill,
    Backoff,
    Bootstrap,
    Cancel,
    CancelWorkflow,
    Command,
    Complete,
    ConfigureQueue,
    DeleteSchedule,
    Fail,
    HeartbeatLease,
    JobSpec,
    JobTemplate,
    Lease,
    PurgeDead,
    PutSchedule,
    ReportBatch,
    RequeueDead,
    SubmitJobs,
    SubmitWorkflow,
    Tick,
    UpdateSettings,
    WorkerHeartbeat,
    command_kind,
    to_plain,
)
from .errors import Overloaded, SchedError, ValidationError
from .limits import Limits, Settings
from .parse import parse_command
from .result import Ok, Refused, Result
from .state import SchedulerState

__all__ = [
    "AcceptClockJump",
    "Backfill",
    "Backoff",
    "Bootstrap",
    "Cancel",
    "CancelWorkflow",
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
    "Overloaded",
    "PurgeDead",
    "PutSchedule",
    "Refused",
    "ReportBatch",
    "RequeueDead",
    "Result",
    "SchedError",
    "SchedulerState",
    "Settings",
    "SubmitJobs",
    "SubmitWorkflow",
    "Tick",
    "UpdateSettings",
    "ValidationError",
    "WorkerHeartbeat",
    "command_kind",
    "parse_command",
    "to_plain",
]

"""Every bound and setting of the scheduler state machine, named in one place.

The limits are replicated state (SPEC §4; issue 7 defect 4): a replica that refused what the
others accepted, or removed jobs the others keep, would diverge. So a node never applies its own
configuration: `SchedulerState()` starts from these defaults (the genesis values, the same in
every build), the runtime proposes its configured values once as the `Bootstrap` command (the
first entry of a new cluster), and after that only a committed `UpdateSettings` changes them.
They travel in the snapshot. Input limits (payload bytes, batch size, dependencies) are enforced
by the parse functions before a command is proposed (the API reads them from the replicated
state too, so every node accepts the same requests); state limits by `apply`, with a named
refusal each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DAY_MS = 86_400_000
SETTING_MAX = 2**53  # JSON-safe: a setting travels in the log as a JSON-like number


@dataclass(frozen=True, slots=True)
class Limits:
    # input limits (parse time)
    max_payload_bytes: int = 64 * 1024
    max_batch_jobs: int = 1_000
    max_dependencies: int = 64
    max_tags: int = 16
    max_id_chars: int = 200
    max_lease_jobs: int = 1_000
    max_lease_ms: int = DAY_MS
    max_attempts_limit: int = 1_000
    max_backfill_fires: int = 250
    """Fires one Backfill may create: one backfill is one entry (all or none), and a fire
    costs a cron search plus a job (~25 us): 250 keeps the entry near 6 ms."""
    max_misfire_cap: int = 1_000
    # state limits (apply time)
    max_jobs_per_queue: int = 10_000_000
    max_queues: int = 10_000
    max_workers: int = 100_000
    max_schedules: int = 10_000
    event_history: int = 32
    idempotency_ttl_ms: int = 10 * 60_000
    """How long a key is remembered. Clients retry within seconds to minutes, and the window
    times the keyed rate must fit the table: 10 minutes at 1,666 keyed requests/s fills
    1,000,000 keys. Raise both with UpdateSettings for a longer window."""
    idempotency_max_entries: int = 1_000_000
    # defaults
    retention_ms: int = 7 * DAY_MS
    default_lease_ms: int = 30_000
    default_max_attempts: int = 3
    default_worker_capacity: int = 16
    default_worker_ttl_ms: int = 30_000
    default_misfire_grace_ms: int = 60_000
    # bounded work and time (issue 7 defects 1 and 5)
    due_work_per_entry: int = 256
    """Due-work items (fires, promotions, lease/worker expiries, retention removals, cascade
    steps, idempotency expiries) one entry may do; the leader proposes more Ticks while
    `SchedulerState.has_due_work` says some remain."""
    lease_grants_per_entry: int = 256
    """Jobs one Lease entry grants at most (a lease asks for "up to" max_jobs; the worker
    leases again for the rest), so a 1,000-job lease does not hold a replica for long."""
    max_clock_step_ms: int = 3_600_000
    """How far one entry's stamp may move the state-machine clock forward; a larger jump is
    clamped (and counted) unless an admin commits `AcceptClockJump`."""
    # admission control (refused with `overloaded`)
    max_live_jobs: int = 20_000_000
    max_retained_jobs: int = 20_000_000
    max_retained_bytes: int = 16 * 2**30
    """Approximate bytes of finished jobs kept for retention (payload, result, error)."""
    max_requeue_jobs: int = 1_000
    """Dead jobs one RequeueDead or PurgeDead may name."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            assert isinstance(value, int) and not isinstance(value, bool), f.name
            assert 0 < value <= SETTING_MAX, f"Limits.{f.name} must be positive, got {value}"

    @classmethod
    def permissive(cls) -> Limits:
        """Input limits far above any sane configuration, for decoding what was already
        accepted: a committed command or a snapshot must never fail to load because this
        node's configured limits are tighter than those of the node that accepted it."""
        big = 2**53
        return cls(
            max_payload_bytes=64 * 1024 * 1024,
            max_batch_jobs=big,
            max_dependencies=big,
            max_tags=big,
            max_id_chars=big,
            max_lease_jobs=big,
            max_lease_ms=big,
            max_attempts_limit=big,
            max_backfill_fires=big,
            max_misfire_cap=big,
            max_requeue_jobs=big,
        )

    def to_plain(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Limits:
        return cls(**data)


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Limits))
Settings = Limits  # the replicated settings are the limits; both names are public

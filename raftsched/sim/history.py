"""Client histories: what clients asked and what they were told, for the checkers.

A history is a list of `Event`s in the order they happened. Each client process issues one
operation at a time: an INVOKE followed by exactly one completion, OK (it took effect, with
its result), FAIL (it certainly did not take effect) or INFO (unknown: it may or may not have
taken effect, at any time after the invoke; the checker treats its return as never). A process
whose last operation was INFO never issues another (Jepsen's rule), so the simulator and the
jepsen harness give such a client a fresh process id.

The same records are written by the jepsen harness as JSON lines (see `to_json` / `from_json`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class EventType(enum.Enum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Event:
    process: int  # the client process; one outstanding operation per process
    type: EventType
    f: str  # the operation: "read", "write", "cas", "enqueue", ...
    key: str  # the object operated on; the unit of P-compositionality
    value: Any  # INVOKE: the argument; OK: the result; FAIL/INFO: whatever was known
    time: int  # when it happened (simulator ticks or monotonic ns); non-decreasing

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "type": self.type.value,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "time": self.time,
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Event:
        return Event(
            process=int(obj["process"]),
            type=EventType(obj["type"]),
            f=str(obj["f"]),
            key=str(obj["key"]),
            value=obj.get("value"),
            time=int(obj["time"]),
        )

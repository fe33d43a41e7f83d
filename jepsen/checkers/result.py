"""The answer of one checker, and how it is written into results.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckResult", "Verdict", "verdict_of"]

Verdict = Literal["valid", "invalid", "unknown"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """valid: True (the property holds on this history), False (violated: `details` names
    the operations, by history index), None (unknown: the check could not decide, e.g. the
    search hit its time limit or the history lacks the final reads it needs)."""

    valid: bool | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "verdict": verdict_of(self.valid),
            "message": self.message,
            "details": self.details,
        }


def verdict_of(valid: bool | None) -> Verdict:
    if valid is None:
        return "unknown"
    return "valid" if valid else "invalid"

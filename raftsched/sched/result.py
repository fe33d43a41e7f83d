"""What `apply` returns: `Ok(value)` or `Refused(error)`, never an exception for a user error.

`Ok.value` is plain data (dicts, lists, str, int, float, bool, None) ready for the API to render
as JSON; it is stored as is in the idempotency table and the snapshot, so callers must not
mutate it. (Not frozen dataclasses: a frozen __init__ goes through object.__setattr__, which
costs more than the rest of a typical apply's allocations; one is built per applied entry.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import SchedError

T = TypeVar("T")


@dataclass(slots=True)
class Ok(Generic[T]):
    """`value` is one of the TypedDicts of answers.py."""

    value: T


@dataclass(slots=True)
class Refused:
    error: SchedError

    @property
    def code(self) -> str:
        return self.error.code


Result = Ok[Any] | Refused

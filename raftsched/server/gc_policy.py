"""How a node runs Python's cyclic garbage collector: short pauses with millions of live objects.

A node's state machine holds a few long-lived objects per job (2 million tracked objects at
1M jobs). CPython 3.11's collector is generational, and with its default policy a full
collection, which walks every tracked object (0.9 s at 1M jobs on the bench machine, longer
than an election timeout), runs each time the old generation has grown by a quarter; the
middle generation collects up to 20 young collections' survivors at once (47 ms inside one
apply when every allocation is a new job).

The policy (measured in bench/sched_apply.py):
- a young collection every `young` container allocations, and after each collection, at the
  next safe point (`after_apply`, called by the runtime after each slice of applied
  entries), `gc.freeze()` moves the survivors to the permanent generation, which no
  collection walks. So every long-lived object is walked once, young and in cache, and no
  collection walks more than about `young` objects (a few ms). Freezing is O(1).
- Refcounting still frees frozen objects: state-machine records hold no reference cycles,
  so a deleted job is freed at once, frozen or not.
- The price: a reference cycle frozen while alive (a connection or handler that was in
  flight at a freeze and later dies in a cycle) is not collected until a thaw: unfreeze and
  one full collection. `maybe_thaw` does that on a timer, only while the full collection is
  predicted to stay under `thaw_budget_s` (from the cheapest thaw's cost per object and the
  state's growth in jobs since); a node whose state is too big for that skips it (counted, and
  logged once) and thaws only where it already pauses as long: loading a snapshot (`thaw`).
  What each thaw found is exported (/metrics), so the leak is measured, not assumed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

# Young collections every 20,000 container allocations: each walks at most that many
# survivors, ~2-4 ms on the bench machine. The middle and old thresholds are CPython's
# defaults: with survivors frozen, those generations stay nearly empty.
DEFAULT_THRESHOLDS: Final = (20_000, 10, 10)
# CPython counts allocations minus deallocations, so a burst that replaces old objects (a
# job's new event tuple for the old one) fills the young generation without triggering it
# (160,000 objects, 38 ms to collect, in the cron catch-up burst): the policy also collects
# after this much apply work since the last collection.
COLLECT_AFTER_APPLY_S: Final = 0.003
THAW_EVERY_S: Final = 300.0
THAW_BUDGET_S: Final = 0.05  # well under an election timeout (0.3 s by default)
# Tracked objects per job in the state machine (bench: 2.02M tracked objects at 1M jobs; a
# little over, so a prediction errs towards skipping).
OBJECTS_PER_JOB: Final = 3


@dataclass
class GcStats:
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # per generation
    max_pause_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    total_pause_s: float = 0.0
    freezes: int = 0
    frozen_since_thaw: int = 0  # objects moved to the permanent generation since the last thaw
    thaws: int = 0
    thaws_skipped: int = 0  # timer thaws not run: predicted over the budget
    last_thaw_s: float = 0.0
    last_thaw_objects: int = 0  # tracked objects the last thaw walked
    thaw_found_total: int = 0  # unreachable objects found by thaws: the leak freezing caused


class GcPolicy:
    """Installed once per process (the collector is process-wide). `after_apply` runs after
    each slice of applied entries and costs one attribute test unless a collection ran."""

    def __init__(
        self,
        thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS,
        *,
        thaw_every_s: float = THAW_EVERY_S,
        thaw_budget_s: float = THAW_BUDGET_S,
        collect_after_apply_s: float = COLLECT_AFTER_APPLY_S,
        clock: Callable[[], float] = time.monotonic,
        jobs: Callable[[], int] | None = None,
    ) -> None:
        """`jobs` counts the state machine's jobs (the runtime passes it): with it a thaw is
        predicted from the heap's growth in jobs since the last thaw; without it from every
        object frozen since, which overestimates (most frozen objects die young anyway)."""
        self.thresholds = thresholds
        self.thaw_every_s = thaw_every_s
        self.thaw_budget_s = thaw_budget_s
        self.collect_after_apply_s = collect_after_apply_s
        self._apply_s = 0.0  # apply work since the last collection
        self.clock = clock
        self.jobs = jobs
        self._jobs_at_thaw = 0
        self.stats = GcStats()
        # Told the predicted pause of the first thaw skipped since the last one that ran.
        self.on_skip: Callable[[float], None] | None = None
        self._skip_reported = False
        self._freeze_due = False
        self._started = 0.0
        self._installed = False
        self._saved_thresholds: tuple[int, int, int] | None = None
        self._next_thaw = clock() + thaw_every_s
        self._cost_per_object_s = 0.0  # from the last thaw; 0: not measured yet

    def install(self) -> None:
        assert not self._installed, "GcPolicy installed twice"
        self._saved_thresholds = gc.get_threshold()
        gc.set_threshold(*self.thresholds)
        gc.callbacks.append(self._on_gc)
        self._installed = True

    def uninstall(self) -> None:
        """Undo `install` (benchmarks and tests that run several policies in one process)."""
        if not self._installed:
            return
        gc.callbacks.remove(self._on_gc)
        if self._saved_thresholds is not None:
            gc.set_threshold(*self._saved_thresholds)
        self._installed = False

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        stats = self.stats
        stats.collections[generation] += 1
        stats.total_pause_s += pause
        stats.max_pause_s[generation] = max(stats.max_pause_s[generation], pause)
        # Freeze the survivors at the next safe point, not here: the collector is still
        # running its callbacks.
        self._freeze_due = True
        self._apply_s = 0.0

    def after_apply(self, apply_s: float) -> None:
        """Called by the runtime after a slice of applied entries that took `apply_s`."""
        self._apply_s += apply_s
        if not self._freeze_due and self._apply_s >= self.collect_after_apply_s:
            gc.collect(0)  # the callback sets _freeze_due
        if self._freeze_due:
            self._freeze()

    def _freeze(self) -> None:
        self._freeze_due = False
        # What is about to be frozen: the survivors just collected (a few thousand objects;
        # listing them costs a fraction of the collection that produced them).
        self.stats.frozen_since_thaw += sum(len(gc.get_objects(g)) for g in range(3))
        gc.freeze()
        self.stats.freezes += 1

    def predicted_thaw_s(self) -> float:
        """What a thaw would pause now: the lowest cost per object a thaw measured, times the
        objects the last thaw walked plus the growth since (in jobs when `jobs` is given, else
        every object frozen since). 0 before the first thaw (nothing measured)."""
        s = self.stats
        if self.jobs is not None:
            grown = OBJECTS_PER_JOB * max(0, self.jobs() - self._jobs_at_thaw)
        else:
            grown = s.frozen_since_thaw
        return self._cost_per_object_s * (s.last_thaw_objects + grown)

    def maybe_thaw(self) -> bool:
        """On the timer: thaw if due and predicted under the budget. True if it thawed."""
        now = self.clock()
        if now < self._next_thaw:
            return False
        self._next_thaw = now + self.thaw_every_s
        if self.stats.frozen_since_thaw == 0:
            return False  # nothing frozen since: nothing new to find
        predicted = self.predicted_thaw_s()
        if predicted > self.thaw_budget_s:
            self.stats.thaws_skipped += 1
            if self.on_skip is not None and not self._skip_reported:
                self._skip_reported = True
                self.on_skip(predicted)
            return False
        self.thaw()
        return True

    def thaw(self) -> int:
        """Unfreeze everything, collect it all once, freeze the survivors again: frees the
        cycles frozen while alive. Returns the unreachable objects found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        elapsed = time.perf_counter() - started
        objects = gc.get_freeze_count()  # a list walk: ~2% of the collection it follows
        stats = self.stats
        self._freeze_due = False
        self._skip_reported = False
        stats.thaws += 1
        stats.freezes += 1
        stats.last_thaw_s = elapsed
        stats.last_thaw_objects = objects
        stats.frozen_since_thaw = 0
        stats.thaw_found_total += found
        self._jobs_at_thaw = self.jobs() if self.jobs is not None else 0
        # The cheapest thaw seen so far: a thaw slowed by a busy machine must not stop all
        # later ones (the walk's own cost per object does not change much with the heap).
        cost = elapsed / max(objects, 1)
        if self._cost_per_object_s == 0.0 or cost < self._cost_per_object_s:
            self._cost_per_object_s = cost
        return found

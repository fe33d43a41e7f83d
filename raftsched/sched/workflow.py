"""Dependency graphs of a submission: unknown ids, cycles, and a topological order.

A submission (a batch or a workflow) may name as dependencies existing jobs or jobs of the same
submission. Edges to existing jobs cannot close a cycle (an existing job never depends on a job
that did not exist when it was created), so only edges inside the submission are searched.

The search is an iterative depth-first search in submission order, so the cycle it reports is
the same on every replica: the ids along the cycle, the first repeated at the end
(`["a", "b", "c", "a"]`: a depends on b, b on c, c on a). It also yields a topological order
(dependencies first) in which the state machine decides each new job's initial state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .commands import JobSpec
from .errors import CycleError, UnknownDependency

_WHITE, _GREY, _BLACK = 0, 1, 2


def plan_submission(
    specs: Sequence[JobSpec], ids: Sequence[str], exists: Callable[[str], bool]
) -> list[int]:
    """Positions of `specs` in dependency order. Raises UnknownDependency or CycleError.

    `ids[i]` is the id job i will have; `exists(id)` tells whether a job outside the
    submission has that id."""
    assert len(specs) == len(ids)
    position = {job_id: i for i, job_id in enumerate(ids)}
    for i, spec in enumerate(specs):
        for dep in spec.depends_on:
            if dep not in position and not exists(dep):
                raise UnknownDependency(
                    f"job {ids[i]!r} depends on {dep!r}, which does not exist",
                    {"job_id": ids[i], "dependency": dep},
                )
    color = [_WHITE] * len(specs)
    order: list[int] = []
    for root in range(len(specs)):
        if color[root] != _WHITE:
            continue
        # Stack of (node, index of the next dependency to visit); `path` mirrors the grey nodes.
        stack: list[tuple[int, int]] = [(root, 0)]
        color[root] = _GREY
        while stack:
            node, next_dep = stack[-1]
            deps = specs[node].depends_on
            if next_dep < len(deps):
                stack[-1] = (node, next_dep + 1)
                child = position.get(deps[next_dep])
                if child is None:
                    continue  # an existing job: no cycle through it
                if color[child] == _GREY:
                    grey = [n for n, _ in stack]
                    cycle = [ids[n] for n in grey[grey.index(child) :]] + [ids[child]]
                    raise CycleError(f"dependency cycle: {' -> '.join(cycle)}", {"cycle": cycle})
                if color[child] == _WHITE:
                    color[child] = _GREY
                    stack.append((child, 0))
            else:
                stack.pop()
                color[node] = _BLACK
                order.append(node)
    assert len(order) == len(specs)
    return order

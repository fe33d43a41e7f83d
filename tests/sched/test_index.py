"""SortedIndex against a plain sorted list: add, remove, first, pop_first, after, restore."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.sched import index as index_module
from raftsched.sched.index import SortedIndex

ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "pop"]), st.integers(0, 3_000)), max_size=400
)


@given(ops)
@settings(max_examples=60, deadline=None)
def test_matches_a_sorted_list(steps: list[tuple[str, int]]) -> None:
    index_module.CHUNK_LOAD = 4  # tiny chunks: splits and empty chunks happen constantly
    try:
        idx: SortedIndex[tuple[int, str]] = SortedIndex()
        model: list[tuple[int, str]] = []
        for op, n in steps:
            key = (n % 97, f"k{n}")
            if op == "add" and key not in model:
                idx.add(key)
                model.append(key)
                model.sort()
            elif op == "remove" and model:
                victim = model.pop(n % len(model))
                idx.remove(victim)
            elif op == "pop" and model:
                assert idx.pop_first() == model.pop(0)
            assert len(idx) == len(model)
            assert idx.first() == (model[0] if model else None)
        assert list(idx) == model
        for probe in model[::7]:
            assert list(idx.after(probe)) == [k for k in model if k > probe]
            assert probe in idx
        assert list(SortedIndex.from_sorted(list(model))) == model
    finally:
        index_module.CHUNK_LOAD = 512

"""jepsen/nemesis.py without processes: the --nemesis grammar and the partition shapes.

A shape is a set of blocked directed links; the tests check what each node can still
reach (its component), for every seed in a range, so a shape that only works for some
shuffles fails here.
"""

from __future__ import annotations

import random

import pytest

from jepsen.nemesis import (
    NemesisSpecError,
    all_pairs,
    bridge,
    cut_between,
    halves,
    isolate,
    majorities_ring,
    one_way,
    parse_nemesis,
)

FIVE = [1, 2, 3, 4, 5]
THREE = [1, 2, 3]
SEEDS = range(50)


def reachable(node: int, nodes: list[int], blocked: frozenset[tuple[int, int]]) -> set[int]:
    """Nodes `node` can send to directly (itself included)."""
    return {node} | {other for other in nodes if other != node and (node, other) not in blocked}


def test_parse_bare_kinds_pick_among_their_variants() -> None:
    specs = parse_nemesis("partition,kill,pause", nodes=5)
    assert [s.kind for s in specs] == ["partition", "kill", "pause"]
    assert "ring" in specs[0].variants
    assert "all" not in specs[1].variants, "kill:all must be asked for by name"


def test_parse_variant_and_none() -> None:
    (spec,) = parse_nemesis("kill:all", nodes=3)
    assert spec.variants == ("all",)
    assert parse_nemesis("none", nodes=3) == []
    assert parse_nemesis("", nodes=3) == []


def test_parse_drops_ring_on_three_nodes_and_refuses_it_by_name() -> None:
    (spec,) = parse_nemesis("partition", nodes=3)
    assert "ring" not in spec.variants
    with pytest.raises(NemesisSpecError, match="5 nodes"):
        parse_nemesis("partition:ring", nodes=3)


@pytest.mark.parametrize("bad", ["explode", "kill:everyone", "partition:moon"])
def test_parse_refuses_unknown(bad: str) -> None:
    with pytest.raises(NemesisSpecError, match="unknown"):
        parse_nemesis(bad, nodes=5)


def test_cut_between_blocks_exactly_the_crossing_links() -> None:
    blocked = cut_between([[1], [2, 3]])
    assert blocked == {(1, 2), (1, 3), (2, 1), (3, 1)}
    assert cut_between([[1, 2, 3]]) == frozenset()


@pytest.mark.parametrize("nodes", [THREE, FIVE])
def test_halves_leave_one_majority(nodes: list[int]) -> None:
    for seed in SEEDS:
        components, blocked = halves(nodes, random.Random(seed))
        small, big = components
        assert len(small) == len(nodes) // 2 and len(big) == len(nodes) - len(nodes) // 2
        for node in nodes:
            assert reachable(node, nodes, blocked) == set(small if node in small else big)


def test_isolate_cuts_one_node_both_ways() -> None:
    components, blocked = isolate(3, FIVE)
    assert components == [[3], [1, 2, 4, 5]]
    assert reachable(3, FIVE, blocked) == {3}
    assert all(reachable(n, FIVE, blocked) == {1, 2, 4, 5} for n in (1, 2, 4, 5))


def test_majorities_ring_each_node_sees_a_different_majority() -> None:
    for seed in SEEDS:
        blocked = majorities_ring(FIVE, random.Random(seed))
        views = [frozenset(reachable(n, FIVE, blocked)) for n in FIVE]
        assert all(len(v) == 3 for v in views), views
        assert len(set(views)) == 5, "no two nodes may see the same majority"
        assert all((b, a) in blocked for a, b in blocked), "a ring cut is symmetric"


@pytest.mark.parametrize("nodes", [THREE, FIVE])
def test_bridge_node_talks_to_both_sides_which_cannot_talk(nodes: list[int]) -> None:
    for seed in SEEDS:
        middle, blocked = bridge(nodes, random.Random(seed))
        assert reachable(middle, nodes, blocked) == set(nodes)
        others = [n for n in nodes if n != middle]
        sides = {frozenset(reachable(n, nodes, blocked) - {middle}) for n in others}
        assert len(sides) == 2 and frozenset.union(*sides) == set(others)


def test_one_way_cuts_one_direction_only() -> None:
    inbound = one_way(2, THREE, inbound=True)
    assert inbound == {(1, 2), (3, 2)}
    assert reachable(2, THREE, inbound) == {1, 2, 3}, "2 can still send"
    outbound = one_way(2, THREE, inbound=False)
    assert outbound == {(2, 1), (2, 3)}
    assert reachable(1, THREE, outbound) == {1, 2, 3}, "others can still send to 2"
    assert inbound | outbound == all_pairs(THREE) - {(1, 3), (3, 1)}

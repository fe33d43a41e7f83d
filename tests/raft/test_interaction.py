"""Script-driven interaction tests (in the spirit of etcd's testdata/*.txt): each scenario
is a short script of commands run against the in-memory cluster, with `expect` lines
checking roles, terms, commit indexes, applied commands and reads along the way.

Commands (node ids are integers; `nodes` is a comma-separated list):
    campaign N | stabilize | tick COUNT [nodes] | propose N DATA | read N CONTEXT
    isolate N | cut A B | heal | stop N | restart N | snapshot N | transfer N TO
    add-learner LEADER N | promote LEADER N | remove LEADER N
    expect role N ROLE | expect term N T | expect commit N INDEX | expect leader N
    expect commands N DATA,DATA,... (or -) | expect read N CONTEXT INDEX
    expect error ERRORNAME COMMAND...   (the command must raise that error)

These check end states only. Scenarios whose path matters (elections, replication,
backtracking, PreVote under a partition, transfer, reads) are golden files instead
(tests/raft/testdata/*.txt, golden.py), which show every Ready and message on the way.
"""

from __future__ import annotations

import pytest

from raftsched.raft import errors
from raftsched.raft.types import ConfChange, ConfChangeKind, ReadState, Role

from .harness import Cluster


def run_script(script: str, cluster: Cluster) -> None:
    for number, raw in enumerate(script.strip().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if line:
            try:
                execute(cluster, line.split())
            except AssertionError as failure:
                raise AssertionError(f"line {number}: {line}: {failure}") from None


def execute(cluster: Cluster, words: list[str]) -> None:
    command, args = words[0], words[1:]
    ints = [int(a) for a in args if a.lstrip("-").isdigit()]
    match command:
        case "campaign":
            cluster.node(ints[0]).campaign()
            cluster.stabilize()
        case "stabilize":
            cluster.stabilize()
        case "tick":
            nodes = [int(n) for n in args[1].split(",")] if len(args) > 1 else None
            cluster.tick(ints[0], nodes=nodes)
        case "propose":
            cluster.propose(ints[0], args[1].encode())
            cluster.stabilize()
        case "read":
            cluster.read_index(ints[0], ints[1])
            cluster.stabilize()
        case "isolate":
            cluster.isolate(ints[0])
        case "cut":
            cluster.cut(ints[0], ints[1])
        case "heal":
            cluster.heal()
        case "stop":
            cluster.stop(ints[0])
        case "restart":
            cluster.restart(ints[0])
            cluster.stabilize()
        case "snapshot":
            cluster.take_snapshot(ints[0])
        case "transfer":
            cluster.node(ints[0]).transfer_leadership(ints[1])
            cluster.stabilize()
        case "add-learner" | "promote" | "remove":
            kind = {
                "add-learner": ConfChangeKind.ADD_LEARNER,
                "promote": ConfChangeKind.PROMOTE,
                "remove": ConfChangeKind.REMOVE,
            }[command]
            if kind is ConfChangeKind.ADD_LEARNER and ints[1] not in cluster.nodes:
                cluster.add_node(ints[1])
            cluster.node(ints[0]).propose_conf_change(ConfChange(kind, ints[1]))
            cluster.stabilize()
        case "expect":
            expect(cluster, args)
        case _:
            raise AssertionError(f"unknown command {command!r}")


def expect(cluster: Cluster, args: list[str]) -> None:
    what, rest = args[0], args[1:]
    if what == "error":
        error_type = getattr(errors, rest[0])
        with pytest.raises(error_type):
            execute(cluster, rest[1:])
        return
    node = cluster.node(int(rest[0]))
    match what:
        case "role":
            assert node.role is Role(rest[1]), f"role {node.role.value}"
        case "term":
            assert node.term == int(rest[1]), f"term {node.term}"
        case "commit":
            assert node.status().commit == int(rest[1]), f"commit {node.status().commit}"
        case "leader":
            assert cluster.leader() == int(rest[0]), f"leader {cluster.leader()}"
        case "commands":
            wanted = [] if rest[1] == "-" else [c.encode() for c in rest[1].split(",")]
            got = cluster.commands(int(rest[0]))
            assert got == wanted, f"commands {got}"
        case "read":
            reads = cluster.apps[int(rest[0])].read_states
            assert ReadState(int(rest[1]), int(rest[2])) in reads, f"reads {reads}"
        case _:
            raise AssertionError(f"unknown expectation {what!r}")


SCENARIOS = {
    "leader_isolated_then_replaced": """
        campaign 1
        propose 1 a
        isolate 1
        tick 30 1,2,3
        expect role 1 follower     # CheckQuorum
        heal
        tick 5
        expect commands 1 a
    """,
    "failover_preserves_committed_entries": """
        campaign 1
        propose 1 a
        stop 1
        campaign 2                 # lease: 2 heard from 1 recently, so tick first
        tick 25 2,3
        restart 1
        tick 5
        expect commands 1 a
        expect commands 2 a
    """,
    "membership_grow_and_shrink": """
        campaign 1
        add-learner 1 4
        expect role 4 learner
        expect error MembershipChangeError add-learner 1 4
        promote 1 4
        expect role 4 follower
        propose 1 a
        expect commands 4 a
        remove 1 2
        expect error MembershipChangeError add-learner 1 2
        tick 3
        propose 1 b
        expect commands 4 a,b
        expect commands 3 a,b
    """,
    "snapshot_catch_up_after_restart": """
        campaign 1
        isolate 3
        propose 1 a
        propose 1 b
        snapshot 1
        heal
        tick 3
        expect commands 3 a,b
        restart 3
        expect commands 3 a,b
        propose 1 c
        expect commands 3 a,b,c
    """,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    run_script(SCENARIOS[name], Cluster())


def test_a_failing_expectation_names_its_line() -> None:
    """The script runner itself: a wrong expectation fails, naming the line."""
    with pytest.raises(AssertionError, match="line 2: expect role 1 follower"):
        run_script("campaign 1\nexpect role 1 follower", Cluster())

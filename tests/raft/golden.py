"""Golden-file interaction scripts (etcd-raft's datadriven tests are the model).

A file in tests/raft/testdata/ is a sequence of blocks separated by blank lines. A block
is optional `#` comment lines, one command, a `----` line, and the output the command must
produce: every Ready a node handled (raftsched/raft/describe.py, one line per Ready and per
message), every message the network dropped, and what `status`, `log` and `commands`
print. A test that checks only the end state hides the path that got there; these show
every vote, append, rejection and commit, and a change of behaviour shows up as a diff.

Rewrite the expected outputs after an intended change with

    RAFTSCHED_REWRITE_GOLDEN=1 .venv/bin/python -m pytest tests/raft/test_golden.py

and review the diff before committing.

Commands (each does exactly one thing; nothing is delivered unless asked):
    cluster VOTERS [learners=IDS] [CONFIG_FIELD=VALUE ...]   first command of every file
    campaign N | propose N DATA | read N CONTEXT | transfer N TO
    add-learner LEADER N | promote LEADER N | remove LEADER N
    tick N [COUNT]          tick node N COUNT times (default 1), handling its Readys
    deliver                 deliver the queued messages once (new ones wait)
    stabilize               deliver until the network is quiet
    drop-queued             the network loses every message in flight
    isolate N | cut A B | heal | stop N | restart N | snapshot N
    status N | log N | commands N
A RaftError raised by a command is printed as `error: Name: message`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftsched.raft.describe import describe_entries, describe_message, describe_ready_lines
from raftsched.raft.errors import RaftError
from raftsched.raft.messages import Message
from raftsched.raft.node import RaftNode
from raftsched.raft.ready import Ready
from raftsched.raft.types import ConfChange, ConfChangeKind, NodeId

from .harness import Cluster

REWRITE_ENV = "RAFTSCHED_REWRITE_GOLDEN"
SEPARATOR = "----"
NOTHING = "(nothing)"


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: list[str]


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    for number, chunk in enumerate(text.strip("\n").split("\n\n"), 1):
        lines = chunk.strip("\n").splitlines()
        comments = [line for line in lines if line.startswith("#")]
        rest = [line for line in lines if not line.startswith("#")]
        if not rest:
            blocks.append(Block(comments, "", []))  # a trailing comment
            continue
        assert len(rest) >= 2 and rest[1] == SEPARATOR, (
            f"block {number}: expected a command line and {SEPARATOR!r}, got {rest[:2]}"
        )
        blocks.append(Block(comments, rest[0], rest[2:]))
    return blocks


def render(blocks: Iterable[Block], outputs: Iterable[list[str]]) -> str:
    chunks = []
    for block, output in zip(blocks, outputs, strict=True):
        lines = [*block.comments]
        if block.command:
            lines += [block.command, SEPARATOR, *output]
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"


class TracingCluster(Cluster):
    """The harness cluster, writing what each node's Readys and the network do to `out`."""

    def __init__(self, ids: Iterable[NodeId], **kwargs: Any) -> None:
        self.out: list[str] = []
        super().__init__(ids, **kwargs)

    def _handle_ready(self, node_id: NodeId, node: RaftNode, rd: Ready) -> None:
        self.out += [f"n{node_id}: {line}" for line in describe_ready_lines(rd)]
        super()._handle_ready(node_id, node, rd)

    def can_deliver(self, m: Message) -> bool:
        delivered = super().can_deliver(m)
        if not delivered:
            self.out.append(f"dropped {describe_message(m)}")
        return delivered


def _ids(text: str) -> list[NodeId]:
    return [int(part) for part in text.split(",") if part]


def _config_value(text: str) -> bool | int:
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def new_cluster(args: list[str]) -> TracingCluster:
    learners: list[NodeId] = []
    config: dict[str, bool | int] = {}
    for arg in args[1:]:
        key, _, value = arg.partition("=")
        if key == "learners":
            learners = _ids(value)
        else:
            config[key] = _config_value(value)
    return TracingCluster(_ids(args[0]), learners=learners, **config)


_CHANGES = {
    "add-learner": ConfChangeKind.ADD_LEARNER,
    "promote": ConfChangeKind.PROMOTE,
    "remove": ConfChangeKind.REMOVE,
}


def execute(cluster: TracingCluster, command: str, args: list[str]) -> None:
    ints = [int(arg) for arg in args if arg.isdigit()]
    out = cluster.out
    match command:
        case "campaign":
            cluster.node(ints[0]).campaign()
            cluster.process(ints[0])
        case "propose":
            cluster.propose(ints[0], args[1].encode())
        case "read":
            cluster.read_index(ints[0], ints[1])
        case "transfer":
            cluster.node(ints[0]).transfer_leadership(ints[1])
            cluster.process(ints[0])
        case "add-learner" | "promote" | "remove":
            kind = _CHANGES[command]
            if kind is ConfChangeKind.ADD_LEARNER and ints[1] not in cluster.nodes:
                cluster.add_node(ints[1])
            cluster.node(ints[0]).propose_conf_change(ConfChange(kind, ints[1]))
            cluster.process(ints[0])
        case "tick":
            for _ in range(ints[1] if len(ints) > 1 else 1):
                cluster.node(ints[0]).tick()
                cluster.process(ints[0])
        case "deliver":
            cluster.deliver()
        case "stabilize":
            cluster.stabilize()
        case "drop-queued":
            for m in cluster.take():
                out.append(f"dropped {describe_message(m)}")
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
            cluster.process(ints[0])
        case "snapshot":
            index = cluster.take_snapshot(ints[0])
            out.append(f"n{ints[0]}: snapshot at {index}, log compacted")
        case "status":
            out.append(_describe_status(cluster, ints[0]))
        case "log":
            storage = cluster.storages[ints[0]]
            first, last = storage.first_index(), storage.last_index()
            entries = storage.entries(first, last + 1, 1 << 62) if first <= last else []
            hard_state, snapshot = storage.initial_state()
            out.append(
                f"n{ints[0]}: durable term {hard_state.term} vote {hard_state.vote}"
                f" commit {hard_state.commit}; snapshot at {snapshot.meta.index};"
                f" {describe_entries(entries)}"
            )
        case "commands":
            commands = [data.decode() for data in cluster.commands(ints[0])]
            out.append(f"n{ints[0]}: applied commands {commands}")
        case _:
            raise AssertionError(f"unknown command {command!r}")


def _describe_status(cluster: Cluster, node_id: NodeId) -> str:
    status = cluster.node(node_id).status()
    text = (
        f"n{node_id}: {status.role.value} term {status.term} leader {status.leader}"
        f" commit {status.commit} applied {status.applied} last {status.last_index}"
    )
    if status.match:
        text += " match " + " ".join(f"{peer}:{index}" for peer, index in status.match.items())
    return text


def run_file(path: Path) -> None:
    """Run the script in `path`; fail on the first block whose output differs (or rewrite
    all outputs when RAFTSCHED_REWRITE_GOLDEN=1)."""
    blocks = parse(path.read_text())
    rewrite = os.environ.get(REWRITE_ENV) == "1"
    cluster: TracingCluster | None = None
    outputs: list[list[str]] = []
    for block in blocks:
        if not block.command:
            outputs.append([])
            continue
        words = block.command.split()
        if words[0] == "cluster":
            cluster = new_cluster(words[1:])
            cluster.process_all()
        else:
            assert cluster is not None, f"{path.name}: the first command must be `cluster`"
            try:
                execute(cluster, words[0], words[1:])
            except RaftError as error:
                cluster.out.append(f"error: {type(error).__name__}: {error}")
        output = (cluster.out if cluster.out else [NOTHING]) if cluster else [NOTHING]
        outputs.append(output)
        if cluster is not None:
            cluster.out = []
        if not rewrite and output != block.expected:
            raise AssertionError(
                f"{path.name}: `{block.command}` printed\n"
                + "\n".join(output)
                + "\n\nexpected\n"
                + "\n".join(block.expected)
                + f"\n\n(after an intended change: {REWRITE_ENV}=1, then review the diff)"
            )
    if rewrite:
        path.write_text(render(blocks, outputs))

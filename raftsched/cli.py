"""The `raftsched` command.

This release ships the two pure halves of raftsched: the Raft core with its deterministic
simulator, and the scheduler state machine. The networked commands of SPEC §7 (`node`, `dev`,
`submit`, `status`, ...) arrive with the cluster runtime; until then `raftsched` offers the
simulator, which runs the real core under faults.
"""

from __future__ import annotations

import argparse
import sys

from raftsched import __version__
from raftsched.sim.cli import main as sim_main


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftsched",
        description=(
            "raftsched: a distributed job scheduler replicated by its own Raft log. "
            "This release contains the Raft core, its deterministic simulator and the "
            "scheduler state machine; the networked cluster commands (node, dev, submit, ...) "
            "come with the cluster runtime."
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "sim",
        help="run the deterministic Raft simulator (same flags as `python -m raftsched.sim`)",
        add_help=False,
    )
    sub.add_parser("demo", help="a short narrated simulated cluster run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if args_in[:1] == ["sim"]:
        return sim_main(args_in[1:])
    args = parser.parse_args(args_in)
    if args.version:
        print(f"raftsched {__version__}")
        return 0
    if args.command == "demo":
        return sim_main(["--demo"])
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `raftsched` command.

Subcommands that own their flags (`sim`, `node`, `dev`, `worker`) get the rest of argv and
are imported lazily, so a missing or broken part of the cluster never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from raftsched import __version__

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

# command -> (module, what it does). Each module has `main(argv: list[str]) -> int`.
DELEGATED: dict[str, tuple[str, str]] = {
    "sim": ("raftsched.sim.cli", "run the deterministic Raft simulator"),
    "node": ("raftsched.server.node_cmd", "run one cluster node (--config node.toml or flags)"),
    "dev": ("raftsched.server.dev_cmd", "a local 3-node cluster plus one worker on loopback"),
    "worker": ("raftsched.worker.cli", "the worker agent: lease jobs and run them"),
}


def _delegate(command: str, argv: list[str]) -> int:
    module_name, _ = DELEGATED[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            print(
                f"raftsched {command}: not available in this build ({module_name} is missing)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        raise
    entry: Callable[[list[str]], int] = module.main
    return int(entry(argv))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftsched",
        description="raftsched: a distributed job scheduler replicated by its own Raft log.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("demo", help="a short narrated simulated cluster run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] and args_in[0] in DELEGATED:
        return _delegate(args_in[0], args_in[1:])
    parser = _build_parser()
    args = parser.parse_args(args_in)
    if args.version:
        print(f"raftsched {__version__}")
        return EXIT_OK
    if args.command == "demo":
        return _delegate("sim", ["--demo"])
    parser.print_help()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

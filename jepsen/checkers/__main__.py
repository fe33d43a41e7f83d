"""Re-check a recorded history: `python -m jepsen.checkers HISTORY.jsonl [--out DIR]`.

Prints each check's verdict and message; with --out, writes the report directory
(results.json, index.html) for it. Exit codes: 0 every check valid; 1 a check invalid;
2 a check unknown (none invalid); 3 the history is malformed or unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from jepsen.history import HistoryError, read_history

from . import check_all

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_MALFORMED = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jepsen.checkers", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("history", type=Path, help="a history.jsonl")
    parser.add_argument("--out", type=Path, help="write results.json and index.html here")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    try:
        ops = read_history(args.history)
    except (OSError, HistoryError) as error:
        print(f"cannot check {args.history}: {error}", file=sys.stderr)
        return EXIT_MALFORMED
    report = check_all(ops)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for name, check in report["checks"].items():
            print(f"{check['verdict']:8} {name:22} {check['message']}")
        print(f"{report['verdict'].upper()}: {len(ops)} history lines")
    if args.out is not None:
        from jepsen.report import write_report  # noqa: PLC0415 - only with --out

        write_report(args.out, ops, report, {"history": str(args.history)})
        print(f"report: {args.out / 'index.html'}")
    return {"valid": EXIT_VALID, "invalid": EXIT_INVALID}.get(report["verdict"], EXIT_UNKNOWN)


if __name__ == "__main__":
    sys.exit(main())

"""One log format for every node process: UTC time, node, level, logger, message.

Lines look like `2026-12-02T14:03:11.482Z node1 INFO raftsched.node1: became leader in term 3`
so the logs of several nodes interleave readably (`raftsched dev`, tests) and grep by node.
docs/operations.md lists the lines an operator should know.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(*, node_label: str, level: str, log_file: Path | None = None) -> None:
    fmt = _UtcFormatter(f"%(asctime)s {node_label} %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log is one line per request: far too much at 5,000 requests/s.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

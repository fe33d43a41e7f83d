"""The node's wall clock in ms: where the server reads time.time() for entry stamps and for
the clock probes between peers (stamp.py, peer_conn.py, peer_link.py).

Failpoint (test-only): `RAFTSCHED_FAILPOINT_CLOCK_OFFSET_MS=N` adds N ms (either sign) to every
reading, as a node whose clock is off by that much would; the jepsen harness's clock nemesis
restarts a node with it (the harness cannot move the machine's clock). A malformed value is
logged and ignored.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Final

CLOCK_OFFSET_ENV: Final = "RAFTSCHED_FAILPOINT_CLOCK_OFFSET_MS"


def _offset_from_env() -> float:
    raw = os.environ.get(CLOCK_OFFSET_ENV, "")
    if not raw:
        return 0.0
    try:
        offset = int(raw)
    except ValueError:
        logging.getLogger("raftsched.clock").warning(
            "%s=%r is not an integer: ignored", CLOCK_OFFSET_ENV, raw
        )
        return 0.0
    logging.getLogger("raftsched.clock").warning(
        "UNSAFE test failpoint: this node's wall clock is offset by %d ms", offset
    )
    return float(offset)


_OFFSET_MS: Final = _offset_from_env()


def wall_ms() -> float:
    return time.time() * 1000.0 + _OFFSET_MS

"""A peer link stops even when its task once swallowed a cancellation.

Python 3.11's asyncio.wait_for can lose a cancellation that races the future it waits on
(fixed in 3.12). A link redialing a peer that had just shut down was in such a wait_for when
the node stopped: the old `stop()` awaited the task, which went on redialing forever, and the
node's process stayed up after logging "stopped cleanly" (seen twice by the jepsen harness)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from raftsched.server.peer_link import PeerLink
from raftsched.server.peer_settings import PeerSettings, TransportLimits


class SwallowsOneCancel(PeerLink):
    """Its connect attempt loses the first cancellation, as 3.11's wait_for can."""

    swallowed = 0

    async def _connect_and_serve(self) -> bool:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            type(self).swallowed += 1
        return False


@pytest.mark.asyncio
async def test_stop_ends_a_link_whose_task_swallowed_a_cancellation() -> None:
    limits = TransportLimits(backoff_initial_s=0.05, backoff_max_s=0.1)
    settings = PeerSettings(
        node_id=1, cluster_id=0, secret=b"x", limits=limits, log=logging.getLogger("t")
    )
    link = SwallowsOneCancel(
        settings=settings,
        peer_id=2,
        address=("127.0.0.1", 1),
        ssl_client=None,
        rng=random.Random(1),
    )
    link.start()
    task = link._task
    assert task is not None
    await asyncio.sleep(0.05)  # inside the connect attempt
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The old stop() awaited the task forever (here it would return only when this timeout's
    # own cancellation was swallowed by its suppress(CancelledError), task still running).
    async with asyncio.timeout(5):
        await link.stop()
    assert task.done(), "the link's task is still running after stop()"
    assert loop.time() - started < 2.0
    assert SwallowsOneCancel.swallowed == 1

"""PeerTransport micro-benchmark: two transports in one process over loopback TCP.

Theory of operation: node 1 and node 2 run real PeerTransports (handshake, framing, strict
decode) on one event loop (uvloop when importable, or `--loop asyncio`). Three figures:

- round trip: 1 sends a Heartbeat, 2's on_message answers with a HeartbeatResponse, 1's
  on_message sends the next: the latency one Raft exchange adds (p50, p99), one at a time;
- small messages/s: heartbeats in batches of 64 per loop iteration, at most `--window` in
  flight, counting what 2 receives (the batching path: one write per iteration);
- append MB/s: AppendEntries of 64 entries x 256 bytes, the replication hot path.

Both ends share the one process and its CPU, so the figures are a lower bound for two nodes
on two cores. `--profile` prints where the time goes (cProfile) for the small-message run.

    python -m bench.transport [--messages N] [--loop uvloop|asyncio] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from raftsched.raft.messages import AppendEntries, Heartbeat, HeartbeatResponse, Message
from raftsched.raft.types import Entry, EntryKind
from raftsched.server.transport import PeerTransport, TransportLimits
from raftsched.wire.raft_codec import encode_message

try:
    import uvloop

    HAVE_UVLOOP = True
except ImportError:  # optional: the stdlib loop works too
    HAVE_UVLOOP = False

SECRET = b"bench secret"
LIMITS = TransportLimits(max_queue_bytes_per_peer=64 << 20)


async def _pair(
    on_1: Callable[[Message], None], on_2: Callable[[Message], None]
) -> tuple[PeerTransport, PeerTransport]:
    t1 = PeerTransport(
        node_id=1,
        cluster_secret=SECRET,
        listen_host="127.0.0.1",
        listen_port=0,
        peers={},
        on_message=on_1,
        limits=LIMITS,
    )
    t2 = PeerTransport(node_id=2, cluster_secret=SECRET, listen_host="127.0.0.1", listen_port=0,
                       peers={}, on_message=on_2, limits=LIMITS)  # fmt: skip
    await t1.start()
    await t2.start()
    peers = {1: ("127.0.0.1", t1.listen_port), 2: ("127.0.0.1", t2.listen_port)}
    t1.set_peers(peers)
    t2.set_peers(peers)
    deadline = time.monotonic() + 10
    while not (t1.peer_stats()[2].connected and t2.peer_stats()[1].connected):
        if time.monotonic() > deadline:
            raise RuntimeError("transports did not connect within 10 s")
        await asyncio.sleep(0.01)
    return t1, t2


async def round_trips(count: int) -> dict[str, float]:
    done = asyncio.get_running_loop().create_future()
    rtts_us: list[float] = []
    sent_at = 0.0
    transports: list[PeerTransport] = []

    def send_next(i: int) -> None:
        nonlocal sent_at
        sent_at = time.perf_counter()
        transports[0].send([Heartbeat(term=1, src=1, dst=2, commit=0, context=i)])

    def on_1(msg: Message) -> None:
        rtts_us.append((time.perf_counter() - sent_at) * 1e6)
        if len(rtts_us) == count:
            done.set_result(None)
        else:
            send_next(len(rtts_us))

    def on_2(msg: Message) -> None:
        assert isinstance(msg, Heartbeat)
        transports[1].send([HeartbeatResponse(term=1, src=2, dst=1, context=msg.context)])

    transports.extend(await _pair(on_1, on_2))
    try:
        send_next(0)
        await asyncio.wait_for(done, 60)
    finally:
        for t in transports:
            await t.close()
    q = statistics.quantiles(rtts_us, n=100)
    return {"round_trip_p50_us": round(q[49], 1), "round_trip_p99_us": round(q[98], 1)}


async def stream(count: int, window: int, make: Callable[[int], Message]) -> dict[str, float]:
    received = 0
    bytes_in = 0

    def on_2(msg: Message) -> None:
        nonlocal received
        received += 1

    t1, t2 = await _pair(lambda m: None, on_2)
    try:
        bytes_in = len(encode_message(make(0)))
        started = time.perf_counter()
        sent = 0
        while received < count:
            if sent < count and sent - received < window:
                batch = min(64, count - sent)
                t1.send([make(sent + i) for i in range(batch)])
                sent += batch
            await asyncio.sleep(0)
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"only {received} of {count} delivered in 120 s")
        elapsed = time.perf_counter() - started
        dropped = t1.peer_stats()[2].dropped
    finally:
        await t1.close()
        await t2.close()
    return {
        "messages_per_s": round(count / elapsed),
        "mb_per_s": round(count * bytes_in / elapsed / 1e6, 1),
        "dropped": dropped,
    }


def _heartbeat(i: int) -> Message:
    return Heartbeat(term=1, src=1, dst=2, commit=i, context=i)


_ENTRIES = tuple(
    Entry(term=1, index=i, kind=EntryKind.NORMAL, data=bytes(256)) for i in range(1, 65)
)


def _append(i: int) -> Message:
    return AppendEntries(term=1, src=1, dst=2, prev_index=0, prev_term=0, entries=_ENTRIES,
                         commit=0)  # fmt: skip


def _run(main: Coroutine[Any, Any, dict[str, float]], loop_name: str) -> dict[str, float]:
    if loop_name == "uvloop":
        result: dict[str, float] = uvloop.run(main)
        return result
    return asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=8192)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=None)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.messages <= 0 or args.window <= 0:
        parser.error("--messages and --window must be positive")
    loop_name = args.loop
    if loop_name is None:
        loop_name = "uvloop" if HAVE_UVLOOP else "asyncio"
    elif loop_name == "uvloop" and not HAVE_UVLOOP:
        parser.error("uvloop is not installed")
    print(f"loop: {loop_name}")
    print("round trip:", _run(round_trips(min(args.messages, 5000)), loop_name))
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    print("heartbeats:", _run(stream(args.messages, args.window, _heartbeat), loop_name))
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())
    appends = max(1, args.messages // 20)
    print("appends (64 x 256 B):", _run(stream(appends, 256, _append), loop_name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

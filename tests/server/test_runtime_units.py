"""Unit tests of the runtime's small parts: quorum-median stamps, the ticker, the member
directory, backup files, the log mirror, config errors."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftsched.app import SchedApp, encode_proposal
from raftsched.raft.storage import MemoryStorage
from raftsched.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    ReadState,
    Snapshot,
    SnapshotMeta,
)
from raftsched.sched import JobSpec, Ok, SubmitJobs
from raftsched.server.api_runtime import max_long_polls
from raftsched.server.auth import hash_token
from raftsched.server.config import ConfigError, PeerInfo, build_config, internal_read_token
from raftsched.server.errors import OutcomeUnknown, ShuttingDown
from raftsched.server.membership import MemberDirectory
from raftsched.server.mirror import mirror_of
from raftsched.server.node_cmd import transport_limits
from raftsched.server.snapshots import (
    BackupFormatError,
    Snapshotter,
    decode_backup,
    encode_backup,
)
from raftsched.server.stamp import QuorumClock, median_low
from raftsched.server.storage_thread import StorageThread
from raftsched.server.ticker import Ticker
from raftsched.server.waiters import Waiters

LOG = logging.getLogger("test")


@dataclass(frozen=True)
class Sample:
    offset_ms: float
    rtt_ms: float = 1.0
    age_s: float = 0.5


class FakeWall:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms


def test_stamp_is_the_median_so_one_bad_clock_cannot_move_it() -> None:
    wall = FakeWall(1_000_000)
    clock = QuorumClock(node_id=1, max_sample_age_s=5, wall_ms=wall)
    # Peer 3's clock is an hour ahead: the median of (ours, +10, +3600000) is ours + 10.
    stamp = clock.stamp_ms({1, 2, 3}, {2: Sample(10), 3: Sample(3_600_000)})
    assert stamp == 1_000_010
    # Our own clock an hour ahead (the leader's clock is the bad one): peers outvote it.
    wall.ms = 1_000_000 + 3_600_000
    stamp = clock.stamp_ms({1, 2, 3}, {2: Sample(-3_600_000), 3: Sample(-3_599_990)})
    assert stamp == 1_000_010  # the median: peer 3's reading, not ours
    assert clock.skew_ms == 3_599_990  # the metric shows this node's clock is off


def test_stamp_never_goes_backwards_and_falls_back_without_a_quorum() -> None:
    wall = FakeWall(5_000)
    clock = QuorumClock(node_id=1, max_sample_age_s=5, wall_ms=wall)
    assert clock.stamp_ms({1, 2, 3}, {}) == 5_000  # no samples: our clock
    assert clock.fallbacks == 1
    wall.ms = 4_000  # our clock stepped back
    assert clock.stamp_ms({1, 2, 3}, {}) == 5_000
    stale = {2: Sample(100, age_s=60), 3: Sample(100, age_s=60)}
    wall.ms = 6_000
    assert clock.stamp_ms({1, 2, 3}, stale) == 6_000  # stale samples do not vote
    assert median_low([3.0, 1.0, 2.0, 4.0]) == 2.0


def test_ticker_does_not_catch_up_missed_ticks() -> None:
    async def run() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ticks: list[float] = []
        ticker = Ticker(loop=loop, interval_s=0.01, on_tick=lambda: ticks.append(loop.time()))
        ticker.start()
        await asyncio.sleep(0.05)
        before = len(ticks)
        time.sleep(0.2)  # the loop is blocked for 20 ticks
        await asyncio.sleep(0.015)
        after = len(ticks)
        ticker.stop()
        return after - before, ticker.late_ticks

    burst, late = asyncio.run(run())
    assert burst <= 3, f"{burst} ticks fired right after the stall: a catch-up burst"
    assert late >= 15


def test_member_directory_learns_persists_and_reads_cluster_docs(tmp_path: Path) -> None:
    own = PeerInfo(("127.0.0.1", 9101), "http://127.0.0.1:8101")
    d = MemberDirectory(node_id=1, own=own, initial={}, data_dir=tmp_path, log=LOG)
    assert d.missing({1, 2}) == [2]
    doc = {
        "members": [
            {"node_id": 2, "peer_addr": "127.0.0.1:9102", "http_url": "http://127.0.0.1:8102"},
            {"node_id": 3, "peer_addr": "bad"},
            "junk",
            {"node_id": True},
        ]
    }
    assert d.learn_from_cluster_doc(doc)
    assert d.peers_for({1, 2, 3}) == {2: ("127.0.0.1", 9102)}
    again = MemberDirectory(node_id=1, own=own, initial={}, data_dir=tmp_path, log=LOG)
    assert again.http_url(2) == "http://127.0.0.1:8102"
    (tmp_path / "members.json").write_text("{not json")
    broken = MemberDirectory(node_id=1, own=own, initial={}, data_dir=tmp_path, log=LOG)
    assert broken.missing({2}) == [2]


def test_backup_round_trip_and_refusals() -> None:
    meta = SnapshotMeta(
        index=42, term=3, membership=Membership(voters=frozenset({1, 2, 3}), removed=frozenset({4}))
    )
    blob = encode_backup(cluster_id=7, snapshot=Snapshot(meta, b"state"))
    cluster_id, snap = decode_backup(blob)
    assert cluster_id == 7 and snap.meta == meta and snap.data == b"state"
    for bad in (
        b"",
        b"\xc1",
        blob[:-3],
        encode_backup(
            cluster_id=1, snapshot=Snapshot(SnapshotMeta(1, 1, Membership(voters=frozenset())), b"")
        ),
    ):
        with pytest.raises(BackupFormatError):
            decode_backup(bad)


def test_mirror_matches_a_log_compacted_below_its_snapshot() -> None:
    disk = MemoryStorage(Membership(voters=frozenset({1})))
    disk.append([Entry(1, i, EntryKind.NORMAL, b"x%d" % i) for i in range(1, 21)])
    disk.set_hard_state(HardState(term=1, vote=1, commit=20))
    disk.create_snapshot(15, Membership(voters=frozenset({1})), b"snap")
    disk.compact(10)  # keep 5 entries below the snapshot
    mirror = mirror_of(disk)
    assert mirror.first_index() == 11 and mirror.last_index() == 20
    assert mirror.snapshot() == disk.snapshot()
    assert mirror.entries(11, 21, 1 << 30) == disk.entries(11, 21, 1 << 30)
    assert mirror.initial_state()[0] == HardState(term=1, vote=1, commit=20)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"node_id": 0}, "node_id"),
        ({"fsync": "sometimes"}, "fsync"),
        ({"raft": {"tick_ms": "fast"}}, "raft.tick_ms"),
        ({"raft": {"nope": 1}}, "raft.nope"),
        ({"peers": {"x": {}}}, "peers.x"),
        ({"peers": {"2": {"peer_addr": "h:1"}}}, "peers.2.http_url"),
        ({"tokens": {"abc": "admin"}}, "tokens.abc"),
        ({"secret": "short"}, "secret"),
        ({"http_url": "ftp://x"}, "http_url"),
        ({"limits": {"max_frame_bytes": 1 << 20}}, "limits.max_frame_bytes"),
        ({"limits": {"max_long_polls": 0}}, "limits.max_long_polls"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    base: dict[str, object] = {
        "node_id": 1,
        "data_dir": "d",
        "peer_addr": "127.0.0.1:1",
        "http_addr": "127.0.0.1:2",
        "secret": "0123456789abcdef",
    }
    with pytest.raises(ConfigError) as info:
        build_config({**base, **raw})
    assert info.value.key == key, info.value


def test_waiters_answer_their_own_entry_and_fail_overwritten_ones() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        w = Waiters()
        mine = w.add_proposal(loop, 5, 2)
        overwritten = w.add_proposal(loop, 6, 2)
        conf = w.add_proposal(loop, 7, 2, config_change=True)
        covered = w.add_proposal(loop, 9, 2)
        assert w.applied(Entry(2, 5, EntryKind.NORMAL, b""), Ok("answer")) is True
        assert w.applied(Entry(3, 6, EntryKind.NORMAL, b""), Ok("theirs")) is False
        assert w.applied(Entry(2, 7, EntryKind.CONFIG, b""), None) is True
        assert w.applied(Entry(2, 8, EntryKind.NORMAL, b""), Ok(1)) is None
        w.fail_up_to(9)  # a snapshot covered index 9
        answer = await mine
        assert isinstance(answer, Ok) and answer.value == "answer"
        assert isinstance(await conf, Ok)
        for future in (overwritten, covered):
            with pytest.raises(OutcomeUnknown):
                await future
        ctx_a, read_a = w.new_read(loop)
        ctx_b, read_b = w.new_read(loop)
        assert ctx_b > ctx_a > 0
        w.confirmed(ReadState(ctx_a, 10))
        w.confirmed(ReadState(ctx_b, 12))
        w.serve_reads(11)
        assert read_a.done() and not read_b.done()
        w.fail_all(ShuttingDown())
        with pytest.raises(ShuttingDown):
            await read_b
        assert len(w) == 0

    asyncio.run(run())


def test_nodes_derive_a_read_token_from_the_cluster_secret() -> None:
    raw = {
        "node_id": 1,
        "data_dir": "d",
        "peer_addr": "10.0.0.1:1",
        "http_addr": "10.0.0.1:2",
        "secret": "0123456789abcdef",
        "tokens": {hash_token("admin-token"): "admin"},
    }
    config = build_config(raw)
    assert config.auth  # not loopback
    internal = internal_read_token(b"0123456789abcdef")
    assert config.tokens[hash_token(internal)] == "read"
    assert internal != internal_read_token(b"another-secret-value")


def test_waiters_fail_dropped_reads_unless_confirmed_first() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        waiters = Waiters()
        c1, f1 = waiters.new_read(loop)
        c2, f2 = waiters.new_read(loop)
        waiters.confirmed(ReadState(index=5, context=c2))
        waiters.dropped(c1, ShuttingDown())
        waiters.dropped(c2, ShuttingDown())  # confirmed first: the first outcome counts
        assert f1.done() and isinstance(f1.exception(), ShuttingDown)
        assert not f2.done()
        waiters.serve_reads(5)
        assert f2.done() and f2.result() is None
        proposal = waiters.add_proposal(loop, 7, 2)
        assert waiters.fail_proposals(OutcomeUnknown()) == 1
        assert isinstance(proposal.exception(), OutcomeUnknown) and not waiters.proposals

    asyncio.run(run())


def test_frame_and_long_poll_limits_reach_the_transport_and_the_api() -> None:
    raw: dict[str, object] = {
        "node_id": 1,
        "data_dir": "d",
        "peer_addr": "127.0.0.1:1",
        "http_addr": "127.0.0.1:2",
        "secret": "0123456789abcdef",
        "limits": {"max_frame_bytes": 32 << 20, "max_long_polls": 7},
    }
    config = build_config(raw)
    assert transport_limits(config).max_frame_bytes == 32 << 20
    assert transport_limits(build_config({**raw, "limits": {}})).max_frame_bytes == 128 << 20

    class _Runtime:  # what api_runtime reads: runtime.config.limits
        pass

    rt = _Runtime()
    rt.config = config  # type: ignore[attr-defined]
    assert max_long_polls(rt) == 7  # type: ignore[arg-type]


class _SyncedMemory(MemoryStorage):
    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("off_loop", [False, True])
def test_snapshot_captures_the_state_at_its_index(tmp_path: Path, off_loop: bool) -> None:
    """Entries applied after `take` returns (the loop goes on applying before the snapshot
    task runs) must not leak into a snapshot whose meta names the earlier index."""

    def entry(index: int) -> Entry:
        data = encode_proposal(
            SubmitJobs(jobs=(JobSpec(id=f"j{index}", queue="q"),)),
            stamp_ms=1_700_000_000_000 + index,
            proposer_id=1,
        )
        return Entry(term=1, index=index, kind=EntryKind.NORMAL, data=data)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        membership = Membership(voters=frozenset({1}))
        storage, mirror, app = _SyncedMemory(), MemoryStorage(), SchedApp()
        for i in range(1, 6):
            storage.append([entry(i)])
            mirror.append([entry(i)])
        for i in range(1, 4):
            app.apply(entry(i))
        thread = StorageThread(storage, loop=loop, on_fatal=lambda exc: None, log=LOG)
        snapshotter = Snapshotter(
            storage=storage,
            mirror=mirror,
            thread=thread,
            every_entries=1,
            keep_entries=0,
            log=LOG,
        )
        future = snapshotter.take(
            index=3,
            membership=membership,
            serialize=app.snapshot,
            on_written=lambda _index: None,
            off_loop=off_loop,
            scratch=tmp_path / "scratch",
        )
        app.apply(entry(4))  # the loop applies on before the snapshot task first runs
        info = await future
        thread.stop()
        assert info.index == 3
        restored = SchedApp()
        restored.restore(storage.snapshot().data)
        assert restored.applied_index == 3 and restored.get_job("j4") is None
        assert mirror.snapshot().meta.index == 3

    asyncio.run(run())


@pytest.mark.parametrize("off_loop", [False, True])
def test_failed_snapshot_is_not_retried_at_once(tmp_path: Path, off_loop: bool) -> None:
    def broken() -> bytes:
        raise RuntimeError("serializer broke")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        storage, mirror = _SyncedMemory(), MemoryStorage()
        thread = StorageThread(storage, loop=loop, on_fatal=lambda exc: None, log=LOG)
        snapshotter = Snapshotter(
            storage=storage, mirror=mirror, thread=thread, every_entries=1, keep_entries=0, log=LOG
        )
        assert snapshotter.due(5)
        future = snapshotter.take(
            index=5,
            membership=Membership(voters=frozenset({1})),
            serialize=broken,
            on_written=lambda _index: None,
            off_loop=off_loop,
            scratch=tmp_path / "missing-dir" / "scratch",
        )
        with pytest.raises(RuntimeError):
            await future
        thread.stop()
        assert snapshotter.failed == 1 and snapshotter.in_flight is None
        assert not snapshotter.due(6)  # backs off instead of failing again on every drain

    asyncio.run(run())

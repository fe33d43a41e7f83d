"""What a crash or a damaged disk leaves behind, and what opening does with it.

Torn tails (a crash during the last write) are cut off with a log line; anything else
refuses with CorruptStorageError naming the file and offset; a failed write or fsync is
fatal for good and loses nothing that was acknowledged."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsched.raft.types import Entry, EntryKind, HardState, Membership
from raftsched.storage import (
    CorruptStorageError,
    DiskStorage,
    StorageFatalError,
    StorageIdentityError,
    StorageInUseError,
    records,
)
from raftsched.storage.files import DiskIO
from raftsched.storage.segment import SEGMENT_NAME

from .helpers import LOG, CountingIO, build, check_entries, entries, payload


def _segments(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if SEGMENT_NAME.match(p.name))


def _record_offsets(path: Path) -> list[int]:
    buf = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(buf):
        checked = records.check_at(buf, offset)
        assert not isinstance(checked, str), checked
        offsets.append(offset)
        offset = checked[1]
    return offsets


def test_torn_tail_is_truncated_at_every_cut_of_the_last_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "source"
    build(source, 12)
    storage = DiskStorage.open(source)
    storage.append(entries(13, 1))
    storage.sync()
    storage.close()
    (segment,) = _segments(source)
    size = segment.stat().st_size
    start = size - len(records.encode_entry(1, 13, 0, payload(13)))
    assert _record_offsets(segment)[-1] == start
    for cut in range(start, size):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(source, copy)
        os.truncate(copy / segment.name, cut)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="raftsched.storage"):
            reopened = DiskStorage.open(copy)
        assert reopened.last_index() == 12, cut
        check_entries(reopened, 12)
        assert (copy / segment.name).stat().st_size == start
        assert (cut == start) != any("torn tail" in r.message for r in caplog.records), cut
        if cut in (start + 1, size - 1):  # the log goes on from the cut
            reopened.append(entries(13, 2))
            reopened.sync()
            reopened.close()
            reopened = DiskStorage.open(copy)
            check_entries(reopened, 14)
        reopened.close()
        shutil.rmtree(copy)


def test_a_torn_entry_whose_payload_holds_a_valid_record_is_still_torn(tmp_path: Path) -> None:
    # A client may submit any bytes, including a well-formed log record: a crash while
    # writing that entry must not look like "a valid record after a bad one".
    source = tmp_path / "source"
    build(source, 5)
    forged = records.encode_entry(1, 6, 0, b"forged")
    storage = DiskStorage.open(source)
    storage.append([Entry(1, 6, EntryKind.NORMAL, b"x" * 8 + forged)])
    storage.sync()
    storage.close()
    (segment,) = _segments(source)
    size = segment.stat().st_size
    start = _record_offsets(segment)[-1]
    for cut in range(start + 1, size):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(source, copy)
        os.truncate(copy / segment.name, cut)
        reopened = DiskStorage.open(copy)
        assert reopened.last_index() == 5, cut
        reopened.close()
        shutil.rmtree(copy)


def test_zeroed_tail_is_a_torn_tail(tmp_path: Path) -> None:
    build(tmp_path, 10)
    (segment,) = _segments(tmp_path)
    with segment.open("ab") as f:
        f.write(b"\0" * 300)  # a file extended by a crash before its data landed
    storage = DiskStorage.open(tmp_path)
    assert storage.last_index() == 10
    storage.close()


@pytest.mark.parametrize("sealed", [False, True])
def test_flipped_byte_in_a_middle_record_refuses_naming_file_and_offset(
    tmp_path: Path, sealed: bool
) -> None:
    source = tmp_path / "source"
    build(source, 60 if sealed else 20, batch=3, segment_bytes=4096)
    target = _segments(source)[0]
    assert sealed == (len(_segments(source)) > 1)
    offsets = _record_offsets(target)
    victim = offsets[len(offsets) // 2]
    length = offsets[len(offsets) // 2 + 1] - victim
    for delta in range(length):
        copy = tmp_path / f"flip{delta}"
        shutil.copytree(source, copy)
        path = copy / target.name
        data = bytearray(path.read_bytes())
        data[victim + delta] ^= 0x40
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptStorageError) as caught:
            DiskStorage.open(copy)
        assert caught.value.path == path and caught.value.offset == victim, delta
        assert str(path) in str(caught.value) and f"offset {victim}" in str(caught.value)
        shutil.rmtree(copy)


def test_missing_middle_or_first_segment_refuses(tmp_path: Path) -> None:
    build(tmp_path / "a", 200, batch=4, segment_bytes=4096)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    segments = _segments(tmp_path / "a")
    assert len(segments) >= 3
    segments[1].unlink()
    with pytest.raises(CorruptStorageError, match="a segment is missing"):
        DiskStorage.open(tmp_path / "a")
    _segments(tmp_path / "b")[0].unlink()
    with pytest.raises(CorruptStorageError, match="holding entry 1 "):
        DiskStorage.open(tmp_path / "b")


def test_snapshot_checksum_is_verified_on_open(tmp_path: Path) -> None:
    build(tmp_path, 30)
    storage = DiskStorage.open(tmp_path)
    storage.create_snapshot(20, Membership(frozenset({1})), b"state" * 100)
    storage.compact(20)
    storage.sync()
    storage.close()
    (snap,) = tmp_path.glob("snap-*.snap")
    reopened = DiskStorage.open(tmp_path)
    assert reopened.snapshot().data == b"state" * 100
    reopened.close()
    data = bytearray(snap.read_bytes())
    data[-7] ^= 1
    snap.write_bytes(bytes(data))
    with pytest.raises(CorruptStorageError) as caught:
        DiskStorage.open(tmp_path)
    assert caught.value.path == snap
    snap.unlink()
    with pytest.raises(CorruptStorageError, match="missing"):
        DiskStorage.open(tmp_path)


def test_disk_full_is_fatal_loses_nothing_acknowledged_and_reopens(tmp_path: Path) -> None:
    io = CountingIO(enospc_after_bytes=20_000)
    storage = DiskStorage.open(tmp_path, io=io, segment_bytes=8192)
    acknowledged = 0
    with pytest.raises(StorageFatalError, match="No space left"):
        for first in range(1, 10_000, 5):
            storage.append(entries(first, 5))
            storage.set_hard_state(HardState(2, 1, first))
            storage.sync()
            acknowledged = first + 4
    assert acknowledged > 0
    with pytest.raises(StorageFatalError, match="accepts nothing more"):
        storage.sync()
    with pytest.raises(StorageFatalError, match="accepts nothing more"):
        storage.append(entries(1, 1))
    writes = io.writes
    storage.close()  # does not try to write again
    assert io.writes == writes
    reopened = DiskStorage.open(tmp_path)
    assert reopened.last_index() >= acknowledged
    check_entries(reopened, reopened.last_index())
    reopened.append(entries(reopened.last_index() + 1, 3))
    reopened.sync()
    reopened.close()


def test_failed_fsync_is_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = DiskStorage.open(tmp_path)
    calls = []

    def failing_fdatasync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    storage.append(entries(1, 3))
    with pytest.raises(StorageFatalError, match="Input/output error"):
        storage.sync()
    with pytest.raises(StorageFatalError):
        storage.sync()
    assert len(calls) == 1
    storage.close()


def test_group_commit_one_write_and_one_fsync_per_sync(tmp_path: Path) -> None:
    io = CountingIO()
    storage = DiskStorage.open(tmp_path, io=io, segment_bytes=1 << 20)
    before = (io.writes, io.file_fsyncs, io.dir_fsyncs)
    for first in range(1, 257, 16):  # 16 Readys persisted, then one sync covers them all
        storage.append(entries(first, 16))
        storage.set_hard_state(HardState(1, 1, first))
    storage.sync()
    assert (io.writes, io.file_fsyncs, io.dir_fsyncs) == (
        before[0] + 1,
        before[1] + 1,
        before[2],
    )
    storage.close()


def test_new_segment_fsyncs_the_directory(tmp_path: Path) -> None:
    io = CountingIO()
    storage = DiskStorage.open(tmp_path, io=io, segment_bytes=4096)
    storage.append(entries(1, 100))
    storage.sync()  # fills and seals the first segment
    dir_fsyncs = io.dir_fsyncs
    storage.append(entries(101, 1))
    storage.sync()  # creates the second
    assert io.dir_fsyncs == dir_fsyncs + 1
    assert len(_segments(tmp_path)) == 2
    storage.close()


def test_conflicting_append_truncates_across_segments_durably(tmp_path: Path) -> None:
    build(tmp_path, 300, batch=10, segment_bytes=4096)
    storage = DiskStorage.open(tmp_path, segment_bytes=4096)
    assert len(storage.segment_paths()) >= 3
    storage.append(entries(15, 2, term=2))  # replaces 15..300, held in older segments
    storage.sync()
    storage.close()
    reopened = DiskStorage.open(tmp_path, segment_bytes=4096)
    assert reopened.last_index() == 16
    assert [reopened.term(i) for i in (14, 15, 16)] == [1, 2, 2]
    reopened.close()


def test_compaction_deletes_dead_segments_after_the_snapshot_is_durable(tmp_path: Path) -> None:
    build(tmp_path, 200, batch=10, segment_bytes=4096)
    storage = DiskStorage.open(tmp_path, segment_bytes=4096)
    count = len(_segments(tmp_path))
    storage.create_snapshot(150, Membership(frozenset({1})), b"s")
    storage.compact(140)  # a trailing margin of 10 entries for slow followers
    assert len(_segments(tmp_path)) == count  # nothing deleted before the sync
    storage.sync()
    assert len(_segments(tmp_path)) < count
    assert storage.first_index() == 141
    storage.close()
    reopened = DiskStorage.open(tmp_path, segment_bytes=4096)
    assert reopened.first_index() == 141 and reopened.snapshot().meta.index == 150
    check_entries(reopened, 200)
    reopened.close()


def test_identity_is_recorded_and_checked_and_the_directory_is_locked(tmp_path: Path) -> None:
    storage = DiskStorage.open(tmp_path, identity=(5, 2))
    with pytest.raises(StorageInUseError):
        DiskStorage.open(tmp_path, identity=(5, 2))
    storage.close()
    with pytest.raises(StorageIdentityError, match="cluster 5 node 2"):
        DiskStorage.open(tmp_path, identity=(5, 3))
    DiskStorage.open(tmp_path, identity=(5, 2)).close()
    DiskStorage.open(tmp_path).close()  # no identity given: not checked
    with pytest.raises(ValueError, match="positive"):
        DiskStorage.open(tmp_path, identity=(0, 2))


def test_unsafe_policy_is_logged_as_unsafe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="raftsched.storage"):
        DiskStorage.open(tmp_path, fsync="never").close()
    assert any("unsafe" in r.message for r in caplog.records)


def test_power_loss_failpoint_holds_writes_until_fsync(tmp_path: Path) -> None:
    io = DiskIO(fsync=True, log=LOG, power_loss=True)
    path = tmp_path / "f"
    fd = io.open_append(path, create=True)
    io.write(fd, b"abc", "f")
    assert path.read_bytes() == b""  # a power cut now would lose it
    io.fsync(fd, "f")
    assert path.read_bytes() == b"abc"
    io.close(fd)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_real_full_file_system(small_tmpfs: Path, tmp_path: Path) -> None:
    storage = DiskStorage.open(small_tmpfs / "data", segment_bytes=32768)
    acknowledged = 0
    with pytest.raises(StorageFatalError, match="No space left"):
        for first in range(1, 1_000_000, 20):
            storage.append(entries(first, 20))
            storage.set_hard_state(HardState(2, 1, first))
            storage.sync()
            acknowledged = first + 19
    storage.close()
    assert acknowledged > 100
    reopened = DiskStorage.open(small_tmpfs / "data")  # repairs the torn tail in place
    assert reopened.last_index() >= acknowledged
    check_entries(reopened, reopened.last_index())
    reopened.close()
    shutil.copytree(small_tmpfs / "data", tmp_path / "copy")  # and goes on with more room
    moved = DiskStorage.open(tmp_path / "copy")
    moved.append(entries(moved.last_index() + 1, 5))
    moved.sync()
    check_entries(moved, moved.last_index())
    moved.close()


def test_a_new_segment_torn_in_its_header_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build(tmp_path, 100, batch=100, segment_bytes=4096)  # one sync: fills and seals it
    storage = DiskStorage.open(tmp_path, segment_bytes=4096)
    storage.append(entries(101, 1))
    storage.sync()  # creates the second segment
    storage.close()
    newest = _segments(tmp_path)[-1]
    assert len(_segments(tmp_path)) == 2
    os.truncate(newest, 7)  # the crash hit while its header was being written
    with caplog.at_level(logging.INFO, logger="raftsched.storage"):
        reopened = DiskStorage.open(tmp_path, segment_bytes=4096)
    assert not newest.exists() and reopened.last_index() == 100
    assert any("no complete header" in r.message for r in caplog.records)
    reopened.append(entries(101, 2))
    reopened.sync()
    reopened.close()
    again = DiskStorage.open(tmp_path)
    check_entries(again, 102)
    again.close()

"""Opening is lazy: sealed segments are checked with one CRC32C over the file and indexed
from their SEAL summaries; only the last (open) segment's records are replayed, and no
entry is decoded until it is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftsched.storage import CorruptStorageError, DiskStorage, disk, recovery
from raftsched.storage.segment import Segment

from .helpers import build, check_entries, entries


def test_only_the_open_segment_is_replayed_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, 3000, batch=100, segment_bytes=16384)
    storage = DiskStorage.open(tmp_path, segment_bytes=16384)
    storage.append(entries(3001, 5))  # an open (unsealed) last segment
    storage.sync()
    storage.close()
    scanned: list[str] = []
    replay_records = recovery._Replay._records

    def counting(
        self: recovery._Replay, seg: Segment, buf: bytes, offset: int, is_last: bool
    ) -> None:
        scanned.append(seg.path.name)
        replay_records(self, seg, buf, offset, is_last)

    monkeypatch.setattr(recovery._Replay, "_records", counting)
    storage = DiskStorage.open(tmp_path, segment_bytes=16384)
    paths = storage.segment_paths()
    assert len(paths) > 5
    assert scanned == [paths[-1].name]
    check_entries(storage, 3005)
    storage.close()


def test_a_sealed_segment_failing_its_file_crc_is_scanned_and_refused(tmp_path: Path) -> None:
    build(tmp_path, 600, batch=50, segment_bytes=8192)
    storage = DiskStorage.open(tmp_path)
    first = storage.segment_paths()[0]
    storage.close()
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptStorageError) as caught:
        DiskStorage.open(tmp_path)
    assert caught.value.path == first and 0 < caught.value.offset <= len(data) // 2


def test_segments_are_sealed_by_record_count_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small entries would otherwise leave up to 64 MiB of records to replay one by one.
    monkeypatch.setattr(disk, "SEGMENT_RECORDS_MAX", 100)
    build(tmp_path, 1000, batch=50, segment_bytes=1 << 20)
    storage = DiskStorage.open(tmp_path, segment_bytes=1 << 20)
    assert len(storage.segment_paths()) >= 9
    check_entries(storage, 1000)
    storage.close()

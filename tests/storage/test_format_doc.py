"""docs/storage.md is precise enough to write a reader: this one is written from the doc
alone (struct + crc32c, nothing from raftsched.storage) and must read back exactly what
DiskStorage holds after conflicts across segments, a snapshot install, a local snapshot
and compaction."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c

from raftsched.raft.types import Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta
from raftsched.storage import DiskStorage

from .helpers import entries


class DocReader:
    """The log as docs/storage.md says to read it, every record replayed in order."""

    def __init__(self, data_dir: Path) -> None:
        self.log: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.base = (0, 0)
        self.last = 0
        self.hard_state = (0, 0, 0)
        self.snapshot = (0, 0, 0)  # index, term, file number
        segments = sorted(data_dir.glob("*.wal"), key=lambda p: int(p.name.split("-")[0], 16))
        for number, path in enumerate(segments):
            self._segment(path.read_bytes(), first=number == 0)

    def _segment(self, buf: bytes, *, first: bool) -> None:
        offset = 0
        while offset < len(buf):
            crc, length, rtype = struct.unpack_from("<IIB", buf, offset)
            assert buf[offset + 9 : offset + 11] == b"RS"
            check = 0xA5 ^ rtype
            for byte in buf[offset + 4 : offset + 8]:
                check ^= byte
            assert buf[offset + 11] == check
            body = buf[offset + 12 : offset + 12 + length]
            assert crc32c.crc32c(buf[offset + 4 : offset + 12 + length]) == crc
            self._record(rtype, body, first)
            offset += 12 + length

    def _record(self, rtype: int, body: bytes, first: bool) -> None:
        if rtype == 1:  # ENTRY
            term, index, _kind = struct.unpack_from("<QQB", body)
            for stale in [i for i in self.log if i >= index]:
                del self.log[stale]
            self.log[index] = (term, body[17:])
            self.last = index
        elif rtype == 2:  # HARD_STATE
            self.hard_state = struct.unpack("<QQQ", body)
        elif rtype == 3:  # SNAPSHOT
            index, term, number, reset = struct.unpack("<QQQB", body)
            self.snapshot = (index, term, number)
            if reset:
                self.log.clear()
                self.base, self.last = (index, term), index
        elif rtype == 4:  # COMPACT
            index, term = struct.unpack("<QQ", body)
            self.log = {i: v for i, v in self.log.items() if i > index}
            self.base = (index, term)
        elif rtype == 5 and first:  # SEGMENT_HEADER of the first surviving segment
            fields = struct.unpack("<10Q", body)
            self.hard_state = fields[1:4]
            self.snapshot = fields[4:7]
            self.base, self.last = (fields[7], fields[8]), fields[9]
        else:
            assert rtype in (5, 6), rtype  # later headers repeat the state; SEAL: a summary


def test_a_reader_written_from_the_doc_agrees_with_disk_storage(tmp_path: Path) -> None:
    storage = DiskStorage.open(tmp_path, segment_bytes=4096)
    storage.append(entries(1, 150))
    storage.sync()
    storage.append(entries(40, 30, term=2))  # replaces 40..150, held in older segments
    storage.set_hard_state(HardState(2, 3, 45))
    storage.sync()
    storage.create_snapshot(60, Membership(frozenset({1})), b"local")
    storage.compact(50)
    storage.sync()
    storage.append(entries(70, 200, term=3))
    storage.sync()
    members = Membership(frozenset({1, 2}))
    storage.apply_snapshot(Snapshot(SnapshotMeta(300, 4, members), b"installed"))
    storage.append([Entry(4, 301 + i, EntryKind.NORMAL, b"after %d" % i) for i in range(90)])
    storage.compact(300)
    storage.sync()
    storage.append(entries(380, 3, term=5))
    storage.set_hard_state(HardState(5, 1, 382))
    storage.close()

    reader = DocReader(tmp_path)
    storage = DiskStorage.open(tmp_path)
    assert reader.base[0] + 1 == storage.first_index() and reader.last == storage.last_index()
    assert reader.base[1] == storage.term(storage.first_index() - 1)
    assert HardState(*reader.hard_state) == storage.hard_state()
    assert reader.snapshot[:2] == (storage.snapshot().meta.index, storage.snapshot().meta.term)
    got = storage.entries(storage.first_index(), storage.last_index() + 1, 1 << 62)
    assert [(e.index, e.term, e.data) for e in got] == [
        (i, *reader.log[i]) for i in range(storage.first_index(), storage.last_index() + 1)
    ]
    storage.close()

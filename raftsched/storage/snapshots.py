"""Snapshot files: one record holding the snapshot's metadata and data, checksummed.

File `snap-{index:016x}-{number:016x}.snap` holds ONE record (records.py framing) of type
SNAPSHOT_FILE whose body is: u32 length of the metadata, the metadata in the wire codec's
SnapshotMeta encoding (index, term, membership), then the application's data. `number`
grows with every snapshot written, so a snapshot replacing another at the same index gets a
new file and the write-ahead log's SNAPSHOT record says which file is current.
Files are written via temp file + fsync + rename + directory fsync (files.py).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Final

from ..raft.types import Snapshot
from ..wire.errors import WireDecodeError
from ..wire.raft_codec import decode_snapshot_meta, encode_snapshot_meta
from . import records
from .errors import CorruptStorageError
from .files import DiskIO

SNAPSHOT_NAME: Final = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_META_LEN: Final = struct.Struct("<I")


def snapshot_name(index: int, number: int) -> str:
    return f"snap-{index:016x}-{number:016x}.snap"


def write_snapshot(io: DiskIO, path: Path, snapshot: Snapshot) -> None:
    meta = encode_snapshot_meta(snapshot.meta)
    body = b"".join((_META_LEN.pack(len(meta)), meta, snapshot.data))
    io.write_file_atomically(path, records.encode(records.RecordType.SNAPSHOT_FILE, body))


def read_snapshot(path: Path, index: int, term: int) -> Snapshot:
    """Read and verify the snapshot file `path`, which must hold (index, term)."""
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise CorruptStorageError(
            path, 0, f"the snapshot file for index {index} term {term} (it is missing)"
        ) from None
    checked = records.check_at(buf, 0)
    if isinstance(checked, str):
        raise CorruptStorageError(path, 0, checked)
    rtype, end = checked
    if rtype is not records.RecordType.SNAPSHOT_FILE or end != len(buf):
        raise CorruptStorageError(path, 0, "exactly one SNAPSHOT_FILE record")
    body = memoryview(buf)[records.HEADER_BYTES :]
    (meta_len,) = _META_LEN.unpack_from(body, 0)
    try:
        meta = decode_snapshot_meta(bytes(body[4 : 4 + meta_len]))
    except WireDecodeError as exc:
        raise CorruptStorageError(
            path, records.HEADER_BYTES + 4, f"snapshot metadata: {exc}"
        ) from exc
    if (meta.index, meta.term) != (index, term):
        raise CorruptStorageError(
            path,
            records.HEADER_BYTES + 4,
            f"a snapshot at index {index} term {term}, found index {meta.index} term {meta.term}",
        )
    return Snapshot(meta, bytes(body[4 + meta_len :]))

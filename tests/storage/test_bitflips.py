"""Any single damaged byte, anywhere in any segment: opening either refuses with
CorruptStorageError naming that file, or (only when the byte is in the very last record,
which a torn write can also leave behind) drops exactly that record. Nothing else is ever
silently lost or changed."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.raft.types import HardState, Membership
from raftsched.storage import CorruptStorageError, DiskStorage, records
from raftsched.storage.segment import SEGMENT_NAME

from .helpers import build, entries

Log = tuple[int, int, HardState, list[tuple[int, int, bytes]]]


def _read(data_dir: Path) -> Log:
    storage = DiskStorage.open(data_dir)
    try:
        first, last = storage.first_index(), storage.last_index()
        got = storage.entries(first, last + 1, 1 << 62)
        return first, last, storage.hard_state(), [(e.index, e.term, e.data) for e in got]
    finally:
        storage.close()


@pytest.fixture(scope="module")
def source() -> Iterator[tuple[Path, Log, int]]:
    """A log over several sealed segments and an open one, ending with an ENTRY record."""
    path = Path(tempfile.mkdtemp(prefix="raftsched-bitflips-"))
    build(path, 400, batch=7, segment_bytes=4096)
    storage = DiskStorage.open(path, segment_bytes=4096)
    storage.create_snapshot(100, Membership(frozenset({1})), b"snap")
    storage.compact(90)
    storage.set_hard_state(HardState(3, 1, 400))
    storage.append(entries(401, 1, term=3))
    storage.sync()
    storage.close()
    last_segment = sorted(p for p in path.iterdir() if SEGMENT_NAME.match(p.name))[-1]
    buf, offset, starts = last_segment.read_bytes(), 0, []
    while offset < len(buf):
        checked = records.check_at(buf, offset)
        assert not isinstance(checked, str)
        starts.append(offset)
        offset = checked[1]
    yield path, _read(path), starts[-1]
    shutil.rmtree(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), mask=st.integers(1, 255))
def test_a_damaged_byte_is_refused_or_is_the_torn_last_record(
    source: tuple[Path, Log, int],
    data: st.DataObject,
    mask: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path, original, last_record = source
    copy = tmp_path_factory.mktemp("flip") / "data"
    shutil.copytree(path, copy)
    segments = sorted(p for p in copy.iterdir() if SEGMENT_NAME.match(p.name))
    victim = data.draw(st.sampled_from(segments))
    raw = bytearray(victim.read_bytes())
    size = len(raw)  # half the draws land in the last 64 bytes: the torn-record case
    offset = data.draw(
        st.one_of(st.integers(0, size - 1), st.integers(max(0, size - 64), size - 1))
    )
    raw[offset] ^= mask
    victim.write_bytes(bytes(raw))
    try:
        after = _read(copy)
    except CorruptStorageError as exc:
        assert exc.path == victim
        return
    finally:
        shutil.rmtree(copy.parent)
    assert victim == segments[-1] and offset >= last_record, (victim.name, offset)
    first, last, hard_state, log = original
    assert after == (first, last - 1, hard_state, log[:-1])

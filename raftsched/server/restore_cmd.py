"""`raftsched restore --backup FILE --data-dir D --node-id N`: seed a node's data dir from a backup.

Theory of operation. A backup (GET /v1/cluster/backup, `raftsched backup FILE`) is one file
holding the scheduler state at some applied index with its Raft metadata (snapshots.py). To
rebuild a cluster after losing it, restore the same backup into every new node's empty data
dir, then start the nodes: each starts from that snapshot (term 0, no log after it) and they
elect a leader as usual. The voters are the backup's unless `--voters 1,2,3` names new ones
(a cluster rebuilt with other ids); every node of the new cluster must be given the same
`--voters`. The checksum is verified first (`--sha256`, or a `FILE.sha256` beside it).

Refuses a data dir that already holds a log (it would mix two histories), a file that is not
a backup or does not match its checksum. Exit codes: 0 restored, 1 refused, 2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from raftsched.raft.types import HardState, Membership, Snapshot, SnapshotMeta

from .snapshots import BACKUP_MAX_BYTES, BackupFormatError, decode_backup

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftsched restore", description="Seed a new node's data dir from a backup file."
    )
    p.add_argument("--backup", type=Path, required=True, help="the backup file")
    p.add_argument("--data-dir", type=Path, required=True, help="an empty or new directory")
    p.add_argument("--node-id", type=int, required=True)
    p.add_argument("--cluster-id", type=int, help="default: the backup's cluster id")
    p.add_argument("--sha256", help="expected sha256 hex (default: FILE.sha256 if present)")
    p.add_argument(
        "--voters",
        help="comma-separated node ids of the new cluster (default: the backup's voters)",
    )
    return p


class RestoreError(Exception):
    pass


def _expected_digest(backup: Path, given: str | None) -> str | None:
    if given:
        return given.strip().lower()
    side = backup.with_name(backup.name + ".sha256")
    if side.exists():
        return side.read_text().split()[0].lower()
    return None


def _voters(text: str | None, snapshot: Snapshot) -> Membership:
    if text is None:
        return snapshot.meta.membership
    try:
        ids = frozenset(int(part) for part in text.split(","))
    except ValueError:
        raise RestoreError(f"--voters must be comma-separated node ids, got {text!r}") from None
    if not ids or min(ids) <= 0:
        raise RestoreError("--voters must name at least one positive node id")
    return Membership(voters=ids)


def restore(args: argparse.Namespace) -> str:
    from raftsched.storage import DiskStorage  # noqa: PLC0415 - keeps --help light

    backup: Path = args.backup
    if not backup.is_file():
        raise RestoreError(f"{backup}: no such file")
    if backup.stat().st_size > BACKUP_MAX_BYTES:
        raise RestoreError(f"{backup}: larger than {BACKUP_MAX_BYTES} bytes")
    data = backup.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = _expected_digest(backup, args.sha256)
    if expected is not None and expected != digest:
        raise RestoreError(f"{backup}: sha256 {digest} does not match the expected {expected}")
    try:
        cluster_id, snapshot = decode_backup(data)
    except BackupFormatError as exc:
        raise RestoreError(f"{backup}: {exc}") from None
    membership = _voters(args.voters, snapshot)
    if args.node_id <= 0:
        raise RestoreError("--node-id must be positive")
    data_dir: Path = args.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreError(f"{data_dir} is not empty: restore only seeds a new node")
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = args.cluster_id if args.cluster_id is not None else cluster_id
    storage = DiskStorage.open(data_dir, identity=(cluster, args.node_id))
    try:
        meta = SnapshotMeta(snapshot.meta.index, snapshot.meta.term, membership)
        storage.apply_snapshot(Snapshot(meta, snapshot.data))
        # Terms never go below the last log term (§5.1): the next election is in a later one.
        storage.set_hard_state(HardState(term=meta.term, vote=0, commit=meta.index))
        storage.sync()
    finally:
        storage.close()
    return (
        f"restored {backup} (sha256 {digest}) into {data_dir}: node {args.node_id} of "
        f"cluster {cluster}, state at index {snapshot.meta.index}, voters "
        f"{sorted(membership.voters)}"
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(restore(args))
    except RestoreError as exc:
        print(f"raftsched restore: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK

"""Cluster operations of a node: membership, leader transfer, backups, address discovery.

Theory of operation.
- Add (dissertation §4.2.1): the leader records the new node's addresses, dials it, and
  commits ADD_LEARNER; the learner catches up by replication (or a snapshot). A promotion
  task per learner, run by whichever node leads, proposes PROMOTE until the core accepts it
  (the core refuses while the learner is more than `max_promote_lag_entries` behind) and the
  change commits; not before the learner acknowledged an append (match index > 0): a node
  that never answered is not made a voter, however short the log. The HTTP call returns
  once the learner is committed (202).
- Remove: the leader commits REMOVE; the id is retired for ever (the core refuses its reuse).
- Transfer (§3.10): the core catches the target up and sends TimeoutNow; we wait up to two
  election timeouts for a new leader.
- Backup: the app's state at the applied index, with its Raft metadata, written durably as one
  file (snapshots.py format) with its sha256; the API calls `read_barrier` first, so the file
  holds every write acknowledged before the request.
- Discovery: while a member's addresses are unknown (a membership change this node did not
  drive, seen from the log), ask the other members' GET /v1/cluster every few seconds
  (membership.py). Requests carry the cluster's internal read token (config.py), so this
  works with auth on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from raftsched.raft.errors import MembershipChangeError, NotLeaderError, TransferError
from raftsched.raft.types import (
    ConfChange,
    ConfChangeKind,
    Membership,
    Role,
    Snapshot,
    SnapshotMeta,
)

from .config import ConfigError, PeerInfo, internal_read_token, parse_addr
from .errors import ClusterRefused, NoLeader, OutcomeUnknown
from .snapshots import encode_backup, serialize_off_loop, write_file_durably

if TYPE_CHECKING:
    from .runtime import Runtime

PROMOTE_RETRY_S: Final = 0.2
DISCOVERY_INTERVAL_S: Final = 2.0
DISCOVERY_TIMEOUT_S: Final = 2.0
BACKUP_DIR: Final = "backups"


class ClusterOps:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.log: logging.Logger = runtime.log
        self._promotions: dict[int, asyncio.Task[None]] = {}
        self._discovery: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._discovery = asyncio.get_running_loop().create_task(self._discover_forever())

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in (self._discovery, *self._promotions.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._promotions.clear()

    # -- hooks from the runtime -------------------------------------------------------------

    def on_became_leader(self) -> None:
        self._ensure_promotions(self.rt.core.membership)

    def on_membership(self, membership: Membership) -> None:
        if self.rt.is_leader():
            self._ensure_promotions(membership)

    def _ensure_promotions(self, membership: Membership) -> None:
        if self._stopped:
            return
        for learner in membership.learners:
            task = self._promotions.get(learner)
            if task is None or task.done():
                self._promotions[learner] = asyncio.get_running_loop().create_task(
                    self._promote(learner)
                )

    async def _promote(self, node_id: int) -> None:
        rt = self.rt
        while not self._stopped and rt.is_leader() and node_id in rt.core.membership.learners:
            if rt.core.status().match.get(node_id, 0) == 0:
                # Never heard from: "caught up" by lag alone would make a voter of a node
                # that may not even run (a short log is within the lag bound at once).
                await asyncio.sleep(PROMOTE_RETRY_S)
                continue
            try:
                await rt.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, node_id))
            except MembershipChangeError:
                await asyncio.sleep(PROMOTE_RETRY_S)  # not caught up, or another change
                continue
            except (NotLeaderError, OutcomeUnknown, NoLeader):
                return
            self.log.info("promoted node %d from learner to voter", node_id)
            return

    # -- operations -----------------------------------------------------------------------

    def _require_leader(self) -> None:
        core = self.rt.core
        if core.role is not Role.LEADER:
            raise self.rt.not_leader(core.leader)

    async def add_member(self, node_id: int, peer_addr: str, http_url: str) -> dict[str, Any]:
        self._require_leader()
        membership = self.rt.core.membership
        if node_id in membership.members:
            raise ClusterRefused(409, "member_exists", f"node {node_id} is already a member")
        if node_id in membership.removed:
            raise ClusterRefused(
                409, "id_retired", f"node id {node_id} was removed before; ids are never reused"
            )
        try:
            info = PeerInfo(parse_addr("peer_addr", peer_addr), http_url.rstrip("/"))
        except ConfigError as exc:
            raise ClusterRefused(400, "bad_peer_addr", str(exc)) from None
        self.rt.directory.learn(node_id, info)
        transport = self.rt.transport
        assert transport is not None
        transport.set_peers(self.rt.directory.peers_for(membership.members | {node_id}))
        try:
            future = self.rt.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, node_id))
        except NotLeaderError as exc:
            raise self.rt.not_leader(exc.leader) from None
        except MembershipChangeError as exc:
            raise ClusterRefused(409, "change_in_progress", str(exc)) from None
        await self._wait(future)
        self.log.info("added node %d as a learner (%s, %s)", node_id, peer_addr, http_url)
        return {
            "node_id": node_id,
            "peer_addr": info.peer_addr_text,
            "http_url": info.http_url,
            "voter": False,
            "promotion": "automatic once the learner has caught up",
        }

    async def remove_member(self, node_id: int) -> dict[str, Any]:
        self._require_leader()
        membership = self.rt.core.membership
        if node_id not in membership.members:
            raise ClusterRefused(404, "unknown_member", f"node {node_id} is not a member")
        if node_id in membership.voters and len(membership.voters) == 1:
            raise ClusterRefused(409, "last_voter", "cannot remove the last voter")
        try:
            future = self.rt.propose_conf_change(ConfChange(ConfChangeKind.REMOVE, node_id))
        except NotLeaderError as exc:
            raise self.rt.not_leader(exc.leader) from None
        except MembershipChangeError as exc:
            raise ClusterRefused(409, "change_in_progress", str(exc)) from None
        await self._wait(future)
        self.log.info("removed node %d from the cluster", node_id)
        return {"node_id": node_id, "removed": True}

    async def _wait(self, future: asyncio.Future[Any]) -> None:
        try:
            async with asyncio.timeout(self.rt.config.limits.propose_timeout_s):
                await future
        except TimeoutError:
            raise OutcomeUnknown("the membership change did not commit in time") from None

    def transfer_target(self) -> int | None:
        """The most caught-up other voter (ties: the lowest id)."""
        st = self.rt.core.status()
        voters = [v for v in st.membership.voters if v != self.rt.node_id]
        if not voters:
            return None
        return max(voters, key=lambda v: (st.match.get(v, 0), -v))

    async def transfer_leadership(self, to: int | None) -> dict[str, Any]:
        self._require_leader()
        core = self.rt.core
        target = to if to is not None else self.transfer_target()
        if target is None:
            raise ClusterRefused(409, "no_target", "there is no other voter to transfer to")
        if target not in core.membership.members:
            raise ClusterRefused(404, "unknown_member", f"node {target} is not a member")
        if target not in core.membership.voters:
            raise ClusterRefused(400, "not_a_voter", f"node {target} is a learner")
        if target == self.rt.node_id:
            return {"to": target, "leader_id": target, "completed": True}
        try:
            core.transfer_leadership(target)
        except TransferError as exc:
            raise ClusterRefused(409, "transfer_in_progress", str(exc)) from None
        except NotLeaderError as exc:
            raise self.rt.not_leader(exc.leader) from None
        self.rt.loop_kick()
        r = self.rt.config.raft
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * r.election_ticks * r.tick_ms / 1000.0
        while core.role is Role.LEADER and loop.time() < deadline:
            await asyncio.sleep(0.01)
        completed = core.role is not Role.LEADER
        if completed:
            self.log.info("leadership transferred to node %d", target)
        return {"to": target, "leader_id": core.leader or None, "completed": completed}

    async def backup(self) -> tuple[bytes | str, str]:
        """A consistent snapshot file of the applied state: (path, sha256 hex)."""
        rt = self.rt
        core = rt.core
        index = rt.app.applied_index
        term = core.log.term_or_none(index)
        if term is None:  # compacted below a snapshot: its own term is recorded there
            term = rt.mirror.snapshot().meta.term
        meta = SnapshotMeta(index=index, term=term, membership=core.membership_at(index))
        if len(rt.app.state.jobs) >= rt.config.raft.snapshot_fork_min_jobs:
            # Forked now, before any await: the child sees the state at `index`.
            app_data = await serialize_off_loop(
                rt.app.snapshot, rt.config.data_dir / f"backup-serializing-{index}.tmp"
            )
        else:
            app_data = rt.app.snapshot()
        blob = encode_backup(
            cluster_id=rt.config.cluster_id, snapshot=Snapshot(meta=meta, data=app_data)
        )
        directory = rt.config.data_dir / BACKUP_DIR
        path = directory / f"backup-{index:020d}.snap"
        await asyncio.get_running_loop().run_in_executor(None, _write_backup, directory, path, blob)
        self.log.info("backup at index %d: %s (%d bytes)", index, path, len(blob))
        return str(path), hashlib.sha256(blob).hexdigest()

    # -- address discovery ----------------------------------------------------------------

    async def _discover_forever(self) -> None:
        token = internal_read_token(self.rt.config.cluster_secret)
        headers = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=DISCOVERY_TIMEOUT_S)
        tls = self.rt.config.tls
        connector = None
        if tls is not None:  # https members: trust the cluster CA
            ctx = ssl.create_default_context(cafile=str(tls.ca_file))
            ctx.check_hostname = False
            connector = aiohttp.TCPConnector(ssl=ctx)
        async with aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=connector
        ) as session:
            while not self._stopped:
                await asyncio.sleep(DISCOVERY_INTERVAL_S)
                members = self.rt.core.membership.members
                if not self.rt.directory.missing(members):
                    continue
                for url in self.rt.directory.http_urls():
                    try:
                        async with session.get(f"{url}/v1/cluster") as resp:
                            doc = await resp.json() if resp.status == 200 else None
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        continue
                    if self.rt.directory.learn_from_cluster_doc(doc):
                        self.rt.refresh_peers()
                    if not self.rt.directory.missing(members):
                        break


def _write_backup(directory: Path, path: Path, blob: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_file_durably(path, blob)
    for old in directory.glob("backup-*.snap"):  # keep only the newest: bounded disk use
        if old != path:
            os.unlink(old)

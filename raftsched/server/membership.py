"""Where each member lives: peer and HTTP addresses, learned, persisted and shared.

Theory of operation. A Raft configuration names members by id only (a CONFIG entry carries a
ConfChange: kind and node id). To send to a member, a node needs its peer address, and to
forward a client to the leader, its HTTP URL. The directory starts from the node's config
(the initial members), learns a new member's addresses when this node (as leader) adds it,
and learns what it is missing from the other members' GET /v1/cluster documents, which list
every member with its addresses (`discover`, run in the background while some member's
address is unknown: a node that becomes leader after a membership change it did not drive
finds the new members this way). What it learns is written to `<data_dir>/members.json` so a
restarted node knows them at once.

Addresses are hints, not replicated state: a wrong one costs a failed connection (the
transport authenticates every peer with the cluster secret), never safety.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from .config import ConfigError, PeerInfo, parse_addr

FILE_NAME: Final = "members.json"


class MemberDirectory:
    def __init__(
        self,
        *,
        node_id: int,
        own: PeerInfo,
        initial: Mapping[int, PeerInfo],
        data_dir: Path | None,
        log: logging.Logger,
    ) -> None:
        self.node_id = node_id
        self._log = log
        self._path = data_dir / FILE_NAME if data_dir is not None else None
        self._known: dict[int, PeerInfo] = {node_id: own}
        self._known.update(self._load())
        self._known.update(initial)
        self._known[node_id] = own
        self.version = 0  # bumped on every change (status caches key on it)

    def _load(self) -> dict[int, PeerInfo]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            raw = json.loads(self._path.read_text())
            return {int(k): parse_info(v) for k, v in raw.items()}
        except (OSError, ValueError, ConfigError, AttributeError, TypeError) as exc:
            self._log.warning("ignoring %s (%s): addresses will be re-learned", self._path, exc)
            return {}

    def _save(self) -> None:
        if self._path is None:
            return
        doc = {
            str(k): {"peer_addr": v.peer_addr_text, "http_url": v.http_url}
            for k, v in sorted(self._known.items())
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self._path)

    def get(self, node_id: int) -> PeerInfo | None:
        return self._known.get(node_id)

    def http_url(self, node_id: int) -> str | None:
        info = self._known.get(node_id)
        return info.http_url if info is not None else None

    def learn(self, node_id: int, info: PeerInfo) -> bool:
        """Record `node_id`'s addresses; True when they changed."""
        if node_id == self.node_id or self._known.get(node_id) == info:
            return False
        self._known[node_id] = info
        self.version += 1
        self._log.info("member %d is at %s (http %s)", node_id, info.peer_addr_text, info.http_url)
        self._save()
        return True

    def peers_for(self, members: Iterable[int]) -> dict[int, tuple[str, int]]:
        """Peer addresses of `members` other than this node, where known."""
        return {
            m: self._known[m].peer_addr for m in members if m != self.node_id and m in self._known
        }

    def known_ids(self) -> frozenset[int]:
        return frozenset(self._known)

    def missing(self, members: Iterable[int]) -> list[int]:
        return sorted(m for m in members if m not in self._known)

    def http_urls(self) -> list[str]:
        return [v.http_url for k, v in sorted(self._known.items()) if k != self.node_id]

    def learn_from_cluster_doc(self, doc: Any) -> bool:
        """Learn from another node's GET /v1/cluster document; True if anything changed."""
        changed = False
        members = doc.get("members") if isinstance(doc, dict) else None
        for member in members if isinstance(members, list) else []:
            if not isinstance(member, dict):
                continue
            node_id = member.get("node_id")
            if type(node_id) is not int or node_id <= 0 or node_id in self._known:
                continue
            try:
                info = parse_info(member)
            except (ConfigError, TypeError):
                continue
            changed = self.learn(node_id, info) or changed
        return changed


def parse_info(raw: Any) -> PeerInfo:
    if not isinstance(raw, dict):
        raise TypeError("a member's addresses are an object")
    url = raw.get("http_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError("http_url", f"must be an http(s) URL, got {url!r}")
    return PeerInfo(parse_addr("peer_addr", raw.get("peer_addr")), url.rstrip("/"))

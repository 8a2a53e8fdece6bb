"""Where each daemon's API is reached, for the daemons sharing one PostgreSQL state database:
each node records its API address (the https URL it advertises and its certificate's pin) in its
row of `cordon_nodes` (the lease's table, `agent.engine.lease`; two columns added here), and a
standby reads the active node's from there to redirect an order it may not carry out.

    Directory(url, node)    this node's view of the table
      .record(url, pin)     at start: this node's address (None: no API over TCP)
      .active()             the live lease holder and its address, or None (no node is active)

Imports `agent.engine.store` and `agent.engine.lease` (the table's schema); nothing of aiohttp.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from agent.engine.lease import SCHEMA as LEASE_SCHEMA
from agent.engine.store import Conn, open_store

__all__ = ["ActiveNode", "Directory"]

SCHEMA = (
    LEASE_SCHEMA
    + ";\nALTER TABLE cordon_nodes ADD COLUMN IF NOT EXISTS api_url TEXT"
    + ";\nALTER TABLE cordon_nodes ADD COLUMN IF NOT EXISTS api_pin TEXT"
)
SCHEMA_VERSION = 1
CACHE_S = 1.0  # how long an answer of `active` is reused (the role headers of every reply)


@dataclass(frozen=True)
class ActiveNode:
    """The node holding the live lease, and where its API is (None: it serves none over TCP)."""

    node: str
    epoch: int
    url: str | None
    pin: str | None

    def as_dict(self) -> dict[str, object]:
        return {"node": self.node, "epoch": self.epoch, "url": self.url, "pin": self.pin}


class Directory:
    """This node (`node`) and the API addresses in the state database of `url`."""

    def __init__(self, url: str, node: str) -> None:
        self.node = node
        self.db: Conn = open_store(
            url,
            name="api_nodes",
            what="node directory",
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            durable=True,
        )
        self._lock = threading.Lock()
        self._cached: tuple[float, ActiveNode | None] | None = None

    def close(self) -> None:
        self.db.close()

    def record(self, api_url: str | None, api_pin: str | None) -> None:
        """This node's API address, in its row (made now if its lease loop has not yet)."""
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO cordon_nodes (node, role, epoch, seen_at, pid, api_url, api_pin) "
                "VALUES (?, 'standby', NULL, now(), ?, ?, ?) ON CONFLICT (node) DO UPDATE SET "
                "api_url = excluded.api_url, api_pin = excluded.api_pin",
                (self.node, os.getpid(), api_url, api_pin),
            )

    def active(self, *, fresh: bool = False) -> ActiveNode | None:
        """The live lease holder and its recorded address (None: no node holds a live lease).
        Reused for `CACHE_S` unless `fresh`."""
        now = time.monotonic()
        with self._lock:
            cached = self._cached
        if not fresh and cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        rows = self.db.query(
            "SELECT l.holder, l.epoch, n.api_url, n.api_pin FROM cordon_lease l "
            "LEFT JOIN cordon_nodes n ON n.node = l.holder "
            "WHERE l.name = 'active' AND l.expires_at > now()"
        )
        found = None
        if rows:
            holder, epoch, api_url, api_pin = rows[0]
            found = ActiveNode(str(holder), int(epoch), api_url, api_pin)
        with self._lock:
            self._cached = (now, found)
        return found

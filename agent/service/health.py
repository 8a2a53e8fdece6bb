"""The daemon's health record: drift alarms (open, cleared, re-applied) and the last poll of each
device, in their own SQLite file (`$CORDON_STATE_DIR/health.sqlite`, WAL) or, with
`CORDON_STATE_URL`, their own tables of that PostgreSQL database, so `cordon status` can show
them and they survive a daemon restart.

Separate from the journal on purpose: polling writes every period, and the journal's durable
transactions must stay for runs. Health is re-derived by the next poll, so this store is not
durable (`synchronous=NORMAL`; PostgreSQL `synchronous_commit=off`): a power cut may lose the
last poll, never corrupt.

The store carries its schema version; an older one is migrated when it is opened, a newer one
refused (`agent.engine.store`, as for the journal). Imports only the standard library,
`agent.settings`, the pure drift types and that store; never a driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent import settings
from agent.engine.drift import Drift, Scope, scope_of
from agent.engine.store import Tx, open_store, upsert

PollStatus = Literal["ok", "drift", "unreachable", "error"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
  detail TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('open', 'cleared')),
  first_seen REAL NOT NULL, last_seen REAL NOT NULL, cleared_at REAL,
  reapplied_at REAL, reapplied INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS alarms_open
  ON alarms (device, kind, subject) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alarms_device ON alarms (device, status);
CREATE TABLE IF NOT EXISTS polls (
  device TEXT PRIMARY KEY, site TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '', duration_s REAL NOT NULL DEFAULT 0
);
"""
# The schema version this release writes (`PRAGMA user_version`). 0: every health store written
# before it was recorded (the same tables).
SCHEMA_VERSION = 1

_UPSERT_POLL = upsert(
    "polls", ("device", "site", "at", "status", "detail", "duration_s"), ("device",)
)

_ALARM_COLUMNS = (
    "id, device, site, kind, subject, detail, status, first_seen, last_seen, cleared_at, "
    "reapplied_at, reapplied"
)


def default_path() -> Path:
    return settings.current().health_path


def at(state_dir: Path) -> HealthStore:
    """The health store of a state directory: the database of `CORDON_STATE_URL` if set, else
    its file."""
    url = settings.current().state_url
    return HealthStore(url) if url else HealthStore(state_dir / settings.HEALTH_NAME)


@dataclass(frozen=True)
class Alarm:
    """A drift alarm: open while the drift is seen, cleared when a poll no longer sees it.
    `reapplied` counts the re-applications of the recorded state while it was open."""

    id: int
    device: str
    site: str
    kind: str
    subject: str
    detail: str
    status: str
    first_seen: float
    last_seen: float
    cleared_at: float | None = None
    reapplied_at: float | None = None
    reapplied: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.device, self.kind, self.subject)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "site": self.site,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "cleared_at": self.cleared_at,
            "reapplied_at": self.reapplied_at,
            "reapplied": self.reapplied,
        }


@dataclass(frozen=True)
class PollRow:
    """The last poll of one device."""

    device: str
    site: str
    at: float
    status: str  # ok | drift | unreachable | error
    detail: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class Change:
    """How a device's alarms move after one read: `new` drifts to open, `seen` open alarms
    still there, `gone` open alarms the read no longer shows (only in the scopes it read)."""

    device: str
    site: str
    new: tuple[Drift, ...] = ()
    seen: tuple[tuple[Alarm, Drift], ...] = ()
    gone: tuple[Alarm, ...] = ()
    open_before: tuple[Alarm, ...] = field(default=(), repr=False)


class HealthStore:
    """One SQLite file or PostgreSQL database, shared by the poller (writer) and the API threads
    (readers)."""

    def __init__(self, where: Path | str | None = None) -> None:
        """`where`: the file, or a `postgresql://` URL; by default this process's settings'."""
        where = (settings.current().state_url or default_path()) if where is None else where
        self.db = open_store(
            where,
            name="health",
            what="health store",
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            durable=False,
        )
        self.where = self.db.where
        self.lock = self.db.lock

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HealthStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self.db.write() as db:
            yield db

    def _alarms(self, where: str, args: tuple[Any, ...]) -> list[Alarm]:
        rows = self.db.query(f"SELECT {_ALARM_COLUMNS} FROM alarms {where}", args)  # noqa: S608 - fixed SQL, values bound
        return [Alarm(*r) for r in rows]

    # -- alarms -----------------------------------------------------------------------------

    def open_alarms(self, device: str | None = None) -> list[Alarm]:
        if device is None:
            return self._alarms("WHERE status='open' ORDER BY first_seen, id", ())
        return self._alarms("WHERE status='open' AND device=? ORDER BY first_seen, id", (device,))

    def alarms(self, *, status: str | None = None, limit: int = 200) -> list[Alarm]:
        """Newest first; `status` 'open' or 'cleared' to filter."""
        if status is None:
            return self._alarms("ORDER BY last_seen DESC, id DESC LIMIT ?", (limit,))
        return self._alarms(
            "WHERE status=? ORDER BY last_seen DESC, id DESC LIMIT ?", (status, limit)
        )

    def diff(
        self,
        device: str,
        site: str,
        drifts: Sequence[Drift],
        scopes: Iterable[Scope],
        *,
        open_now: Sequence[Alarm] | None = None,
    ) -> Change:
        """What `drifts` (read in `scopes`) change in `device`'s open alarms (`open_now` if the
        caller already has them); writes nothing, so the caller can audit first and `commit`
        after: an alarm is never stored unaudited (a crash in between audits it again)."""
        read = set(scopes)
        current = {d.key: d for d in drifts}
        before = list(self.open_alarms(device) if open_now is None else open_now)
        by_key = {a.key: a for a in before}
        return Change(
            device=device,
            site=site,
            new=tuple(d for k, d in current.items() if k not in by_key),
            seen=tuple((by_key[k], d) for k, d in current.items() if k in by_key),
            gone=tuple(
                a for k, a in by_key.items() if k not in current and scope_of(a.kind) in read
            ),
            open_before=tuple(before),
        )

    def commit(self, change: Change, now: float | None = None) -> list[Alarm]:
        """Apply a `diff`: open the new alarms, refresh the seen ones, clear the gone ones.
        Returns the device's open alarms afterwards."""
        now = time.time() if now is None else now
        if not (change.new or change.seen or change.gone):
            return list(change.open_before)
        with self._tx() as db:
            db.executemany(
                "INSERT INTO alarms (device, site, kind, subject, detail, status, first_seen, "
                "last_seen) VALUES (?,?,?,?,?,'open',?,?)",
                [
                    (change.device, change.site, d.kind, d.subject, d.detail, now, now)
                    for d in change.new
                ],
            )
            db.executemany(
                "UPDATE alarms SET last_seen=?, detail=? WHERE id=? AND status='open'",
                [(now, d.detail, a.id) for a, d in change.seen],
            )
            db.executemany(
                "UPDATE alarms SET status='cleared', cleared_at=? WHERE id=? AND status='open'",
                [(now, a.id) for a in change.gone],
            )
        return self.open_alarms(change.device)

    def mark_reapplied(self, device: str, now: float | None = None) -> int:
        """The recorded state was pushed back to `device`: note it on its open drift alarms
        (a traffic alarm is not repaired by a re-application: traffic clears it)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alarms SET reapplied_at=?, reapplied=reapplied+1 "
                "WHERE device=? AND status='open' AND kind != ?",
                (now, device, TRAFFIC_STOPPED),
            )
            return cur.rowcount

    def alarm(self, alarm_id: int) -> Alarm | None:
        found = self._alarms("WHERE id=?", (alarm_id,))
        return found[0] if found else None

    def commit_traffic(self, change: TrafficChange, now: float | None = None) -> None:
        """Apply a `traffic_change`: open, refresh, clear the device's traffic alarms."""
        now = time.time() if now is None else now
        if change.empty:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO alarms (device, site, kind, subject, detail, status, first_seen, "
                "last_seen) VALUES (?,?,?,?,?,'open',?,?)",
                [
                    (change.device, change.site, TRAFFIC_STOPPED, flow, detail, now, now)
                    for flow, detail in change.new
                ],
            )
            db.executemany(
                "UPDATE alarms SET last_seen=?, detail=? WHERE id=? AND status='open'",
                [(now, detail, a.id) for a, detail in change.seen],
            )
            db.executemany(
                "UPDATE alarms SET status='cleared', cleared_at=? WHERE id=? AND status='open'",
                [(now, a.id) for a, _ in change.gone],
            )

    # -- polls ------------------------------------------------------------------------------

    def record_polls(self, rows: Iterable[PollRow]) -> None:
        """The last poll of each device (one transaction for a whole poll)."""
        with self._tx() as db:
            db.executemany(
                _UPSERT_POLL,
                [(r.device, r.site, r.at, r.status, r.detail, r.duration_s) for r in rows],
            )

    def last_polls(self) -> dict[str, PollRow]:
        rows = self.db.query(
            "SELECT device, site, at, status, detail, duration_s FROM polls ORDER BY device"
        )
        return {r[0]: PollRow(*r) for r in rows}


# -- live traffic of must-survive flows ---------------------------------------------------------

# The kind of the alarm raised when a must-survive flow's accept rules stop counting traffic
# (subject: the flow). Stored with the drift alarms, in its own scope: the drift diff never sees
# it (`drift_alarms`), only the poller's traffic judgement opens and clears it.
TRAFFIC_STOPPED = "traffic_stopped"


def drift_alarms(alarms: Iterable[Alarm]) -> list[Alarm]:
    """The alarms the drift comparison owns (every kind but the traffic alarm)."""
    return [a for a in alarms if a.kind != TRAFFIC_STOPPED]


@dataclass(frozen=True)
class TrafficChange:
    """How a device's traffic alarms move after one poll: `new` (flow, detail) to open, `seen`
    open alarms still stopped (with the new detail), `gone` open alarms to clear (with why)."""

    device: str
    site: str
    new: tuple[tuple[str, str], ...] = ()
    seen: tuple[tuple[Alarm, str], ...] = ()
    gone: tuple[tuple[Alarm, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.new or self.seen or self.gone)


def traffic_change(
    device: str,
    site: str,
    stopped: Mapping[str, str],
    resumed: Mapping[str, str],
    open_now: Iterable[Alarm],
) -> TrafficChange:
    """Flows judged `stopped` (flow -> detail) open or refresh their alarm; flows `resumed`
    (flow -> why) clear theirs; a flow in neither keeps its alarm as it is (unknown is not
    clean)."""
    mine = {a.subject: a for a in open_now if a.device == device and a.kind == TRAFFIC_STOPPED}
    return TrafficChange(
        device,
        site,
        new=tuple((f, d) for f, d in stopped.items() if f not in mine),
        seen=tuple((mine[f], d) for f, d in stopped.items() if f in mine),
        gone=tuple((mine[f], why) for f, why in resumed.items() if f in mine),
    )

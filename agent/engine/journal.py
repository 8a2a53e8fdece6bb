"""The durable journal (a SQLite file, or PostgreSQL: `agent.engine.store`): runs, every device
step before and after it runs, backups, site locks, each site's isolation state and each device's
recorded isolation state. A crash at any point leaves a row saying what was in flight. Returns
typed records (frozen dataclasses, statuses as `agent.status` enums) and refuses a status change
`agent.status` forbids. The store carries its schema version (SQLite's `PRAGMA user_version`,
PostgreSQL's `cordon_schema` row); an older journal is migrated when it is opened, by the same
migrations on both backends.
Imports only the standard library, `agent.settings`, the network state types
(`agent.network.state`), `agent.engine.store` (opening and migrating the store, the dialects),
agent.status and agent.errors; never a driver."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard, TypeVar, cast

from agent import settings
from agent.engine.lease import Fence
from agent.engine.store import Tx, is_url, open_store, upsert
from agent.engine.wake import Changes
from agent.errors import FencedError, LockError, RunError
from agent.network.state import DeviceState, NftRule
from agent.status import (
    GATE_TRANSITIONS,
    OPEN,
    RUN_TRANSITIONS,
    SITE_TRANSITIONS,
    STEP_BUSY,
    STEP_TRANSITIONS,
    GateStatus,
    RunStatus,
    SiteMode,
    StepStatus,
    check_transition,
    parse,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, playbook TEXT NOT NULL, level TEXT NOT NULL, sites TEXT NOT NULL,
  actor TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL,
  detail TEXT, playbook_json TEXT, options TEXT, waiting TEXT, driver TEXT, stop_requested TEXT
);
CREATE TABLE IF NOT EXISTS gates (
  run_id TEXT NOT NULL, site TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
  opened_at REAL NOT NULL, wake_at REAL, updated_at REAL NOT NULL, detail TEXT NOT NULL,
  PRIMARY KEY (run_id, site, step)
);
CREATE TABLE IF NOT EXISTS attestations (
  run_id TEXT NOT NULL, site TEXT NOT NULL, zone TEXT NOT NULL, actor TEXT NOT NULL,
  reason TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (run_id, site, zone)
);
CREATE TABLE IF NOT EXISTS approvals (
  run_id TEXT NOT NULL, step TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT, at REAL NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS incidents (
  incident_id TEXT PRIMARY KEY, name TEXT NOT NULL, site TEXT, opened_at REAL NOT NULL,
  opened_by TEXT NOT NULL, reason TEXT NOT NULL, closed_at REAL, closed_by TEXT,
  close_reason TEXT
);
CREATE TABLE IF NOT EXISTS baselines (
  device TEXT PRIMARY KEY, digest TEXT NOT NULL, backup_sha256 TEXT NOT NULL,
  taken_at REAL NOT NULL, run_id TEXT
);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, site TEXT NOT NULL, step TEXT NOT NULL,
  device TEXT NOT NULL, method TEXT NOT NULL, commands TEXT NOT NULL, undo TEXT NOT NULL,
  before_state TEXT NOT NULL, after_state TEXT NOT NULL,
  fail_direction TEXT NOT NULL DEFAULT 'closed',
  status TEXT NOT NULL, started_at REAL, finished_at REAL, error TEXT,
  opens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS backups (
  run_id TEXT NOT NULL, device TEXT NOT NULL, sha256 TEXT NOT NULL, taken_at REAL NOT NULL,
  PRIMARY KEY (run_id, device)
);
CREATE TABLE IF NOT EXISTS locks (
  site TEXT PRIMARY KEY, run_id TEXT NOT NULL, acquired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sites (
  site TEXT PRIMARY KEY, mode TEXT NOT NULL, level TEXT, since REAL NOT NULL, run_id TEXT,
  actor TEXT
);
CREATE TABLE IF NOT EXISTS devices (
  device TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL, run_id TEXT
);
CREATE TABLE IF NOT EXISTS flow_checks (
  run_id TEXT NOT NULL, site TEXT NOT NULL, step TEXT NOT NULL, flow TEXT NOT NULL,
  must_survive INTEGER NOT NULL, expected TEXT NOT NULL, status TEXT NOT NULL,
  confirmed_by TEXT NOT NULL, contradicted_by TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (run_id, site, step, flow)
);
CREATE INDEX IF NOT EXISTS flow_checks_by_flow ON flow_checks (flow, at);
CREATE INDEX IF NOT EXISTS steps_by_site ON steps (run_id, site, step, seq);
"""

# The schema version this release writes (`PRAGMA user_version`). 0: every journal written
# before it was recorded (same tables; `_ADDED_COLUMNS` may be missing). 2: `flow_checks`
# (each flow's verdict at each verify step, #15), created by the schema's CREATE IF NOT EXISTS.
# 3: `steps_by_site`, the index a site's walk reads its step's rows by (#18: a device step
# reads its own rows, not the whole run's).
SCHEMA_VERSION = 3

T = TypeVar("T")
_MAX_READS = 32  # the cached reads (`Journal._cached`) kept before those of older versions go


@dataclass(frozen=True)
class Gate:
    """A non-device step's state (backup, verify, wait, soak, approval, preconditions)."""

    run_id: str
    site: str
    step: str
    status: GateStatus
    opened_at: float
    wake_at: float | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunComing:
    """A running run with step rows still pending, as a verify gate looks at what it sends next
    (`Journal.runs_coming`): its sites, whether it was asked to stop, its playbook as journaled
    (None: not journaled), every step row, and each gate's status by (site, step)."""

    run_id: str
    sites: tuple[str, ...]
    stop_requested: str | None
    playbook_json: str | None
    steps: tuple[StepRow, ...]
    gates: Mapping[tuple[str, str], GateStatus]


@dataclass(frozen=True)
class RunRecord:
    """A run as journaled: who, what, where, its status and what it waits for."""

    run_id: str
    playbook: str
    level: str
    sites: tuple[str, ...]
    actor: str
    status: RunStatus
    created_at: float
    finished_at: float | None
    detail: str | None
    options: dict[str, Any]
    waiting: str | None
    driver: dict[str, Any] | None  # who drives it (`this_driver()`), None when nobody
    stop_requested: str | None


@dataclass(frozen=True)
class SiteRecord:
    """A site's isolation mode and level, since when, set by which run and person."""

    site: str
    mode: SiteMode
    level: str | None
    since: float
    run_id: str | None
    actor: str | None


@dataclass(frozen=True)
class Attestation:
    """An operator's word that a zone is clean enough to reconnect."""

    site: str
    zone: str
    actor: str
    reason: str
    at: float


@dataclass(frozen=True)
class Approval:
    """A second operator's approval of a run (`step` ""), or of one of its approval steps."""

    actor: str
    reason: str | None
    at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Incident:
    incident_id: str
    name: str
    site: str | None
    opened_at: float
    opened_by: str
    reason: str
    closed_at: float | None
    closed_by: str | None
    close_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Baseline:
    """A device's configuration digest taken while it was normal (reconnect preconditions)."""

    device: str
    digest: str
    backup_sha256: str
    taken_at: float
    run_id: str | None


def default_path() -> Path:
    return settings.current().journal_path


def default_location() -> Path | str:
    """The journal of this process's settings: the database of `CORDON_STATE_URL` if set,
    else the file in the state directory."""
    found = settings.current()
    return found.state_url or found.journal_path


def at(state_dir: Path) -> Journal:
    """The journal of a state directory: the database of `CORDON_STATE_URL` if set (the
    directory then keeps only the daemon's lock, socket and state file), else its file."""
    url = settings.current().state_url
    return Journal(url) if url else Journal(state_dir / settings.JOURNAL_NAME)


def state_to_json(state: DeviceState) -> str:
    return json.dumps(
        {
            "down": sorted([i, m] for i, m in state.down),
            "rules": [
                {
                    "verdict": r.verdict,
                    "iif": r.iif,
                    "oif": r.oif,
                    "saddr": r.saddr,
                    "daddr": r.daddr,
                    "sport": r.sport,
                    "dport": r.dport,
                    "tag": r.tag,
                }
                for r in state.ordered_rules()
            ],
        },
        sort_keys=True,
    )


def state_from_json(text: str) -> DeviceState:
    raw = json.loads(text)
    return DeviceState(
        down=frozenset((str(i), m) for i, m in raw["down"]),
        rules=frozenset(NftRule(**r) for r in raw["rules"]),
    )


# a new step row: every step starts pending
_INSERT_STEP = (
    "INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,"  # noqa: S608 - a fixed enum value
    f"'{StepStatus.PENDING}',NULL,NULL,NULL,?)"
)

# the rows a write replaces whole (portable upserts: SQLite and PostgreSQL alike)
_UPSERT_BACKUP = upsert("backups", ("run_id", "device", "sha256", "taken_at"), ("run_id", "device"))
_UPSERT_ATTESTATION = upsert(
    "attestations", ("run_id", "site", "zone", "actor", "reason", "at"), ("run_id", "site", "zone")
)
_UPSERT_APPROVAL = upsert(
    "approvals", ("run_id", "step", "actor", "reason", "at"), ("run_id", "step")
)
_UPSERT_BASELINE = upsert(
    "baselines", ("device", "digest", "backup_sha256", "taken_at", "run_id"), ("device",)
)
_UPSERT_DEVICE = upsert("devices", ("device", "state", "updated_at", "run_id"), ("device",))
_UPSERT_SITE = upsert("sites", ("site", "mode", "level", "since", "run_id", "actor"), ("site",))

# columns added after the first release: a journal written before them gains them at open
_ADDED_COLUMNS = {"runs": ("driver TEXT", "stop_requested TEXT")}


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when it is gone: a
    recycled PID has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_driver() -> dict[str, Any]:
    """Who drives a run from this process: host, PID and the PID's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid)}


def driver_alive(driver: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Is the process recorded as driving a run still alive (same host, same PID, same start
    time)? A process on another host cannot be checked from here: assumed alive."""
    if not driver:
        return False
    if driver.get("host") != socket.gethostname():
        return True
    pid = driver.get("pid")
    return isinstance(pid, int) and _process_start(pid) == driver.get("start")


def _gate(r: Sequence[Any]) -> Gate:
    status = parse(GateStatus, r[3], f"gate {r[1]} {r[2]} of run {r[0]}")
    return Gate(r[0], r[1], r[2], status, r[4], r[5], json.loads(r[6]))


def _add_columns(db: Tx) -> None:
    """0 -> 1: the columns a journal written before them lacks."""
    for table, columns in _ADDED_COLUMNS.items():
        have = db.columns(table)
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


@dataclass(frozen=True)
class FlowCheck:
    """One flow's verdict at one verify step (or soak probe): passed, failed or unverified, and
    which sources confirmed or contradicted it."""

    run_id: str
    site: str
    step: str
    flow: str
    must_survive: bool
    expected: str  # "open" or "closed"
    status: str  # agent.verify.evidence.FlowStatus values
    confirmed_by: tuple[str, ...]
    contradicted_by: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class NewStep:
    seq: int
    site: str
    step: str
    device: str
    method: str
    commands: tuple[str, ...]
    undo: tuple[str, ...]
    before: DeviceState
    after: DeviceState
    fail_direction: str = "closed"
    opens: bool = False  # the step reopens what was cut (reconnect, restore)


def _check_locks(db: Tx, sites: Sequence[str], allowed: Sequence[str]) -> None:
    db.guard("site", *sites)  # held until the caller's transaction takes or refuses them
    for site in sites:
        row = db.execute("SELECT run_id FROM locks WHERE site=?", (site,)).fetchone()
        if row is not None and row[0] not in allowed:
            raise LockError(
                f"site {site} is held by run {row[0]}",
                hint=f"wait for it, or `cordon resume {row[0]}` / "
                f"`cordon rollback {row[0]}` if it was interrupted",
            )


@dataclass(frozen=True)
class StepRow:
    run_id: str
    seq: int
    site: str
    step: str
    device: str
    method: str
    commands: tuple[str, ...]
    undo: tuple[str, ...]
    before: DeviceState
    after: DeviceState
    status: StepStatus
    error: str | None
    fail_direction: str = "closed"  # where the device must end if the agent loses it
    opens: bool = False

    @property
    def guard_apply(self) -> bool:
        """Is applying this step a move away from its fail-safe state (so a revert must be
        armed first)? Closing steps are when they fail open; opening steps when closed."""
        return (self.fail_direction == "open") != self.opens


def _step_row(r: Sequence[Any]) -> StepRow:
    return StepRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        tuple(json.loads(r[6])),
        tuple(json.loads(r[7])),
        state_from_json(r[8]),
        state_from_json(r[9]),
        parse(StepStatus, r[10], f"step {r[1]} of run {r[0]}"),
        r[11],
        r[12],
        bool(r[13]),
    )


class Journal:
    """The journal in a SQLite file (WAL, synchronous=FULL) or a PostgreSQL database (a
    `postgresql://` URL): a committed row survives a crash.

    SQLite: one connection per journal, shared by the executor's site threads (every access
    holds `self.lock`, so two sites never interleave a transaction); other processes are
    serialised by the file's writer lock. PostgreSQL: a pool of connections, the site threads'
    transactions in parallel; every read-check-write (a status change, a site's lock, the next
    step number) holds its record's lock (`Tx.guard`), across every process and host sharing
    the database (`agent.engine.store`)."""

    def __init__(self, where: Path | str | None = None) -> None:
        """`where`: the file, or a `postgresql://` URL; by default this process's settings'."""
        where = default_location() if where is None else where
        self.db = open_store(
            where,
            name="journal",
            what="journal",
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            durable=True,
            upgrade=_add_columns,
        )
        self.where = self.db.where  # the file, or the database (URL without its options)
        self.path: Path | None = None if is_url(where) else Path(where)
        self.lock = self.db.lock
        self._changed = Changes()  # counts this process's committed writes (`tx`)
        # the reads the flow checks poll (`_cached`): name -> (the store's data version, rows)
        self._reads: dict[str, tuple[int, Any]] = {}
        self._reads_lock = threading.Lock()
        self.identity: tuple[int, int] | None = None
        # active/standby: set by the daemon while it is active (None: unfenced, one node)
        self.fence: Fence | None = None
        self.on_fenced: Callable[[int], None] | None = None
        if self.path is not None:
            # the file this connection writes to: SQLite keeps writing into a deleted or
            # replaced file without a word, so the engine compares it with the path before
            # each send
            fd = self._fd(self.path)
            st = os.fstat(fd) if fd is not None else os.stat(self.path)
            self.identity = (st.st_dev, st.st_ino)

    # -- fencing (active/standby on PostgreSQL: agent.engine.lease) ---------------------------

    def _fenced(self, db: Tx, what: str) -> None:
        """With a fence set (a daemon sharing the database with standbys), `db` writes only
        while this node still holds the active lease with its epoch, the lease row held until
        `db` commits; otherwise nothing is written: `FencedError`, and `on_fenced` is told."""
        fence = self.fence
        if fence is None or fence.check(db):
            return
        raise self._refused(fence, f"{what} refused, nothing written, nothing sent")

    def for_term(self, fence: Fence | None) -> Journal:
        """This journal as one term sees it: the same store, fenced by `fence` for good (the
        daemon replaces `self.fence` at each new term; a thread of an earlier term keeps its
        own, so once that term ended its writes and sends are refused even while this node
        holds a later one)."""
        view = copy.copy(self)
        view.fence = fence
        return view

    def may_send(self, what: str) -> None:
        """Right before a device command (its session in hand): with a fence, this term must
        still be live by this process's own clock (the lease renewed less than its life minus
        the margin ago, the term not given up); otherwise nothing is sent: `FencedError`, and
        `on_fenced` is told. The journal write before it is not enough: the session may have
        been waited for, or connected, since."""
        fence = self.fence
        if fence is None or fence.live():
            return
        raise self._refused(
            fence,
            f"{what} not sent (its lease not renewed in time by this node's clock: "
            f"{-fence.left_s():.1f} s past the last moment a command may go out)"
            if not fence.revoked.is_set()
            else f"{what} not sent (this node gave that term up)",
        )

    def deposed(self, why: str) -> FencedError:
        """Another fenced store (the group's audit chain: `AuditFenced`) refused this term:
        `on_fenced` is told as for a refused journal write; the error to raise."""
        fence = self.fence
        if fence is None:
            return FencedError(f"fenced: {why}")
        return self._refused(fence, why)

    def _refused(self, fence: Fence, what: str) -> FencedError:
        if self.on_fenced is not None:
            self.on_fenced(fence.epoch)
        return FencedError(
            f"fenced: node {fence.holder} no longer holds the active lease with epoch "
            f"{fence.epoch} (a standby took over, or the lease ran out): {what}",
            hint="this node steps down; the active node (`cordon status`) settles and "
            "continues the run",
        )

    @staticmethod
    def _fd(path: Path) -> int | None:
        """The descriptor of the journal file this connection opened (from /proc), if found."""
        target = str(path.resolve())
        try:
            for entry in Path("/proc/self/fd").iterdir():
                try:
                    if os.readlink(entry) == target:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            return None
        return None

    def lost(self) -> str | None:
        """Why the journal this connection writes is no longer the one at its path (deleted,
        its directory deleted, or replaced; on PostgreSQL: the connection lost), or None while
        it is."""
        if self.path is None:
            return self.db.lost()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"the journal {self.path} was deleted (or its directory)"
        except OSError as exc:
            return f"the journal {self.path} cannot be read: {exc.strerror}"
        if (st.st_dev, st.st_ino) != self.identity:
            return f"the journal {self.path} was replaced by another file"
        return None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One write transaction; fenced while a fence is set (`_fenced`): a step's start, a
        rollback's, a run's status, every write a deposed node could make, is refused. Once it
        is committed, this process's `wait_change` callers are woken."""
        with self.db.write() as db:
            self._fenced(db, "a journal write")
            yield db
        self._changed.notify()

    def version(self) -> int:
        """How many writes this process has committed to the journal (for `wait_change`)."""
        return self._changed.count()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Wait until this process has committed a write after `version()` returned `seen`, at
        most `timeout` seconds; the version now. (Another process's writes do not wake it: a
        caller that must see them reads again after its timeout.)"""
        return self._changed.wait(seen, timeout)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self.db.query(sql, args)

    def _cached(self, name: str, read: Callable[[], T]) -> T:
        """`read()`, or what it gave last time when nothing was committed to the store since
        (by any connection: this process's writes or another process's, `Conn.data_version`;
        the version is taken before reading, so a commit during the read is read again next
        time). PostgreSQL: always read. The verify gates poll these reads while steps are in
        flight (#18: 40 reads of the steps in flight per containment, most of them after no
        write)."""
        version = self.db.data_version()
        if version is None:
            return read()
        with self._reads_lock:
            hit = self._reads.get(name)
        if hit is not None and hit[0] == version:
            return cast(T, hit[1])
        value = read()
        with self._reads_lock:
            if len(self._reads) >= _MAX_READS:  # keyed by run (`runs_coming`): keep it small
                self._reads = {k: v for k, v in self._reads.items() if v[0] == version}
            self._reads[name] = (version, value)
        return value

    # -- runs and locks --------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        playbook: str,
        level: str,
        sites: Sequence[str],
        actor: str,
        steps: Sequence[NewStep] = (),
        *,
        playbook_json: str | None = None,
        options: dict[str, Any] | None = None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> None:
        """Record the run with all its steps and take every site's lock, in one transaction
        (a crash leaves all of it or none), or refuse naming the holder."""
        new = parse(RunStatus, status, f"run {run_id}")
        check_transition(RUN_TRANSITIONS, "run", run_id, None, new)
        with self.tx() as db:
            _check_locks(db, sites, allowed=())
            db.execute(
                "INSERT INTO runs (run_id, playbook, level, sites, actor, status, created_at, "
                "playbook_json, options) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    playbook,
                    level,
                    json.dumps(list(sites)),
                    actor,
                    new,
                    time.time(),
                    playbook_json,
                    json.dumps(options or {}, sort_keys=True),
                ),
            )
            db.executemany(
                "INSERT INTO locks VALUES (?,?,?)", [(s, run_id, time.time()) for s in sites]
            )
            db.executemany(
                _INSERT_STEP,
                [
                    (
                        run_id,
                        st.seq,
                        st.site,
                        st.step,
                        st.device,
                        st.method,
                        json.dumps(list(st.commands)),
                        json.dumps(list(st.undo)),
                        state_to_json(st.before),
                        state_to_json(st.after),
                        st.fail_direction,
                        int(st.opens),
                    )
                    for st in steps
                ],
            )

    def lock_sites(self, run_id: str, sites: Sequence[str]) -> None:
        """Hold `sites` for `run_id` (kept if already held by it); refuse if another run does."""
        with self.tx() as db:
            _check_locks(db, sites, allowed=(run_id,))
            db.executemany(
                "INSERT INTO locks VALUES (?,?,?) ON CONFLICT (site) DO NOTHING",
                [(s, run_id, time.time()) for s in sites],
            )

    def release(self, run_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM locks WHERE run_id=?", (run_id,))

    def _run_status(self, db: Tx, run_id: str, status: RunStatus) -> RunStatus:
        """The new status of `run_id`, checked against its current one (in the caller's tx)."""
        new = parse(RunStatus, status, f"run {run_id}")
        db.guard("run", run_id)
        row = db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is not None:
            old = parse(RunStatus, row[0], f"run {run_id}")
            check_transition(RUN_TRANSITIONS, "run", run_id, old, new)
        return new

    def finish_run(
        self, run_id: str, status: RunStatus, detail: str = "", *, release: bool = True
    ) -> None:
        with self.tx() as db:
            status = self._run_status(db, run_id, status)
            db.execute(
                "UPDATE runs SET status=?, finished_at=?, detail=? WHERE run_id=?",
                (status, time.time(), detail, run_id),
            )
            if release:
                db.execute("DELETE FROM locks WHERE run_id=?", (run_id,))

    def run(self, run_id: str) -> RunRecord:
        found = self._query(
            "SELECT run_id, playbook, level, sites, actor, status, created_at, "
            "finished_at, detail, options, waiting, driver, stop_requested FROM runs "
            "WHERE run_id=?",
            (run_id,),
        )
        row = found[0] if found else None
        if row is None:
            raise RunError(f"no run {run_id} in the journal {self.where}")
        return RunRecord(
            run_id=row[0],
            playbook=row[1],
            level=row[2],
            sites=tuple(json.loads(row[3])),
            actor=row[4],
            status=parse(RunStatus, row[5], f"run {run_id}"),
            created_at=row[6],
            finished_at=row[7],
            detail=row[8],
            options=json.loads(row[9] or "{}"),
            waiting=row[10],
            driver=self._current_driver(json.loads(row[11]) if row[11] else None),
            stop_requested=row[12],
        )

    def _current_driver(self, driver: dict[str, Any] | None) -> dict[str, Any] | None:
        """The recorded driver, unless it drove under an earlier epoch than this node's fence
        (a deposed node, frozen or on another host, drives nothing: its writes are fenced)."""
        fence = self.fence
        if driver is None or fence is None:
            return driver
        epoch = driver.get("epoch")
        return None if isinstance(epoch, int) and epoch < fence.epoch else driver

    def playbook_json(self, run_id: str) -> str | None:
        found = self._query("SELECT playbook_json FROM runs WHERE run_id=?", (run_id,))
        return found[0][0] if found else None

    def set_run_status(self, run_id: str, status: RunStatus, waiting: str | None = None) -> None:
        """An open run's status (running | awaiting_approval) and what it waits for."""
        with self.tx() as db:
            status = self._run_status(db, run_id, status)
            db.execute(
                "UPDATE runs SET status=?, waiting=? WHERE run_id=?", (status, waiting, run_id)
            )

    # -- who drives a run, and an order to stop it --------------------------------------------

    def claim_driver(self, run_id: str) -> None:
        """This process drives `run_id` now (what `status` and `rollback` look at)."""
        driver = this_driver()
        if self.fence is not None:  # active/standby: the epoch it drives under
            driver["epoch"] = self.fence.epoch
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET driver=? WHERE run_id=?",
                (json.dumps(driver, sort_keys=True), run_id),
            )

    def release_driver(self, run_id: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET driver=NULL WHERE run_id=? AND driver=?",
                (run_id, json.dumps(this_driver(), sort_keys=True)),
            )

    def request_stop(self, run_id: str, why: str) -> None:
        """Ask whoever drives `run_id` to stop at the next step boundary (nothing more sent)."""
        with self.tx() as db:
            db.execute("UPDATE runs SET stop_requested=? WHERE run_id=?", (why, run_id))

    def clear_stop(self, run_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE runs SET stop_requested=NULL WHERE run_id=?", (run_id,))

    def stop_requested(self, run_id: str) -> str | None:
        found = self._query("SELECT stop_requested FROM runs WHERE run_id=?", (run_id,))
        return found[0][0] if found else None

    def open_runs(self) -> list[str]:
        marks = ",".join("?" for _ in OPEN)
        rows = self._query(
            f"SELECT run_id FROM runs WHERE status IN ({marks}) ORDER BY created_at",  # noqa: S608
            tuple(sorted(OPEN)),
        )
        return [r[0] for r in rows]

    def runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._query("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [self.run(r[0]) for r in rows]

    def locks(self) -> dict[str, str]:
        return dict(self._query("SELECT site, run_id FROM locks"))

    # -- steps -----------------------------------------------------------------------------

    def _step_status(self, db: Tx, run_id: str, seq: int, status: StepStatus) -> StepStatus:
        """The new status of step `seq`, checked against its current one (in the caller's tx)."""
        what = f"{seq} of run {run_id}"
        new = parse(StepStatus, status, f"step {what}")
        db.guard("step", f"{run_id}:{seq}")
        row = db.execute(
            "SELECT status FROM steps WHERE run_id=? AND seq=?", (run_id, seq)
        ).fetchone()
        if row is not None:
            old = parse(StepStatus, row[0], f"step {what}")
            check_transition(STEP_TRANSITIONS, "step", what, old, new)
        return new

    def mark(self, run_id: str, seq: int, status: StepStatus, error: str | None = None) -> None:
        now = time.time()
        with self.tx() as db:
            status = self._step_status(db, run_id, seq, status)
            if status == StepStatus.STARTED:
                db.execute(
                    "UPDATE steps SET status=?, started_at=? WHERE run_id=? AND seq=?",
                    (status, now, run_id, seq),
                )
            else:
                db.execute(
                    "UPDATE steps SET status=?, finished_at=?, error=COALESCE(?, error) "
                    "WHERE run_id=? AND seq=?",
                    (status, now, error, run_id, seq),
                )

    _STEP_COLUMNS = (
        "SELECT run_id, seq, site, step, device, method, commands, undo, before_state, "
        "after_state, status, error, fail_direction, opens FROM steps WHERE run_id=?"
    )

    def steps(
        self, run_id: str, *, site: str | None = None, step: str | None = None
    ) -> list[StepRow]:
        """The run's step rows in order; with `site` (and `step`), only that site's (step's)
        rows, read through the index: a site's walk reads its own rows, not the whole run's."""
        sql, args = self._STEP_COLUMNS, [run_id]
        if site is not None:
            sql, args = sql + " AND site=?", [*args, site]
            if step is not None:
                sql, args = sql + " AND step=?", [*args, step]
        return [_step_row(r) for r in self._query(sql + " ORDER BY seq", tuple(args))]

    def step_row(self, run_id: str, seq: int) -> StepRow | None:
        """One step row, or None."""
        found = self._query(self._STEP_COLUMNS + " AND seq=?", (run_id, seq))
        return _step_row(found[0]) if found else None

    def add_backup(self, run_id: str, device: str, sha256: str) -> None:
        with self.tx() as db:
            db.execute(
                _UPSERT_BACKUP,
                (run_id, device, sha256, time.time()),
            )

    # -- gates, attestations, approvals, baselines -------------------------------------------

    def gate(self, run_id: str, site: str, step: str) -> Gate | None:
        found = self._query(
            "SELECT run_id, site, step, status, opened_at, wake_at, detail FROM gates "
            "WHERE run_id=? AND site=? AND step=?",
            (run_id, site, step),
        )
        return _gate(found[0]) if found else None

    def gates(self, run_id: str) -> list[Gate]:
        rows = self._query(
            "SELECT run_id, site, step, status, opened_at, wake_at, detail FROM gates "
            "WHERE run_id=? ORDER BY opened_at",
            (run_id,),
        )
        return [_gate(r) for r in rows]

    def set_gate(
        self,
        run_id: str,
        site: str,
        step: str,
        status: GateStatus,
        *,
        wake_at: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self.tx() as db:
            self._set_gate(db, run_id, site, step, status, wake_at=wake_at, detail=detail)

    def _set_gate(
        self,
        db: Tx,
        run_id: str,
        site: str,
        step: str,
        status: GateStatus,
        *,
        wake_at: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """`set_gate` within the transaction `db`."""
        what = f"{site} {step} of run {run_id}"
        new = parse(GateStatus, status, f"gate {what}")
        now = time.time()
        db.guard("gate", f"{run_id}:{site}:{step}")
        row = db.execute(
            "SELECT status FROM gates WHERE run_id=? AND site=? AND step=?",
            (run_id, site, step),
        ).fetchone()
        old = None if row is None else parse(GateStatus, row[0], f"gate {what}")
        check_transition(GATE_TRANSITIONS, "gate", what, old, new)
        db.execute(
            "INSERT INTO gates VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, site, step) "
            "DO UPDATE SET status=excluded.status, wake_at=excluded.wake_at, "
            "updated_at=excluded.updated_at, detail=excluded.detail",
            (run_id, site, step, new, now, wake_at, now, json.dumps(detail or {})),
        )

    def attest(self, run_id: str, site: str, zone: str, actor: str, reason: str) -> None:
        with self.tx() as db:
            db.execute(
                _UPSERT_ATTESTATION,
                (run_id, site, zone, actor, reason, time.time()),
            )

    def attestations(self, run_id: str) -> dict[tuple[str, str], Attestation]:
        rows = self._query(
            "SELECT site, zone, actor, reason, at FROM attestations WHERE run_id=?", (run_id,)
        )
        return {(r[0], r[1]): Attestation(*r) for r in rows}

    def approve(self, run_id: str, step: str, actor: str, reason: str | None) -> None:
        with self.tx() as db:
            db.execute(
                _UPSERT_APPROVAL,
                (run_id, step, actor, reason, time.time()),
            )

    def approval(self, run_id: str, step: str = "") -> Approval | None:
        found = self._query(
            "SELECT actor, reason, at FROM approvals WHERE run_id=? AND step=?", (run_id, step)
        )
        return Approval(*found[0]) if found else None

    def open_incident(
        self, incident_id: str, name: str, site: str | None, actor: str, reason: str
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO incidents (incident_id, name, site, opened_at, opened_by, reason) "
                "VALUES (?,?,?,?,?,?)",
                (incident_id, name, site, time.time(), actor, reason),
            )

    def close_incident(self, incident_id: str, actor: str, reason: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE incidents SET closed_at=?, closed_by=?, close_reason=? "
                "WHERE incident_id=? AND closed_at IS NULL",
                (time.time(), actor, reason, incident_id),
            )

    def incidents(self, *, open_only: bool = False) -> list[Incident]:
        rows = self._query(
            "SELECT incident_id, name, site, opened_at, opened_by, reason, closed_at, closed_by, "
            "close_reason FROM incidents WHERE closed_at IS NULL OR ? = 0 ORDER BY opened_at DESC",
            (int(open_only),),
        )
        return [Incident(*r) for r in rows]

    def set_baseline(self, device: str, digest: str, backup_sha256: str, run_id: str) -> None:
        with self.tx() as db:
            db.execute(
                _UPSERT_BASELINE,
                (device, digest, backup_sha256, time.time(), run_id),
            )

    def baseline(self, device: str) -> Baseline | None:
        found = self._query(
            "SELECT device, digest, backup_sha256, taken_at, run_id FROM baselines WHERE device=?",
            (device,),
        )
        return Baseline(*found[0]) if found else None

    def append_step(self, run_id: str, step: NewStep) -> int:
        """Add a step to an open run (a re-isolation decided during a soak); returns its seq."""
        with self.tx() as db:
            db.guard("run", run_id)  # the run's next step number, taken by one at a time
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id=?", (run_id,)
            ).fetchone()[0]
            db.execute(
                _INSERT_STEP,
                (
                    run_id,
                    seq,
                    step.site,
                    step.step,
                    step.device,
                    step.method,
                    json.dumps(list(step.commands)),
                    json.dumps(list(step.undo)),
                    state_to_json(step.before),
                    state_to_json(step.after),
                    step.fail_direction,
                    int(step.opens),
                ),
            )
        return int(seq)

    def backups(self, run_id: str) -> dict[str, str]:
        return dict(self._query("SELECT device, sha256 FROM backups WHERE run_id=?", (run_id,)))

    def backup(self, run_id: str, device: str) -> str | None:
        """The digest of `device`'s backup taken for `run_id`, or None (one row, by its key)."""
        found = self._query(
            "SELECT sha256 FROM backups WHERE run_id=? AND device=?", (run_id, device)
        )
        return str(found[0][0]) if found else None

    # -- recorded state ------------------------------------------------------------------------

    def settle_step(
        self,
        run_id: str,
        seq: int,
        status: StepStatus,
        device: str,
        state: DeviceState,
        error: str | None = None,
    ) -> None:
        """Mark a step and record its device's new state in one transaction (a crash between
        the two would leave the journal saying one thing and the device another)."""
        with self.tx() as db:
            status = self._step_status(db, run_id, seq, status)
            db.execute(
                "UPDATE steps SET status=?, finished_at=?, error=? WHERE run_id=? AND seq=?",
                (status, time.time(), error, run_id, seq),
            )
            db.execute(
                _UPSERT_DEVICE,
                (device, state_to_json(state), time.time(), run_id),
            )

    def device_writers(self) -> dict[str, str]:
        """For each device, the run whose step last recorded its state."""
        return dict(self._query("SELECT device, run_id FROM devices"))

    def set_device(self, device: str, state: DeviceState, run_id: str) -> None:
        with self.tx() as db:
            db.execute(
                _UPSERT_DEVICE,
                (device, state_to_json(state), time.time(), run_id),
            )

    def device_states(self) -> dict[str, DeviceState]:
        """Every device's recorded state (read again only after a commit: `_cached`)."""

        def read() -> dict[str, DeviceState]:
            rows = self._query("SELECT device, state FROM devices")
            return {d: state_from_json(s) for d, s in rows}

        return dict(self._cached("device_states", read))

    def devices_in_flight(self) -> dict[str, str]:
        """The devices an open run is changing right now (a step whose intent is journaled,
        started or applied or being undone, not yet settled), each with what is in flight on it
        ("run R step N (name)"): their recorded state may be about to change. Read-only."""
        busy = sorted(STEP_BUSY)
        marks, run_marks = ",".join("?" for _ in busy), ",".join("?" for _ in OPEN)
        rows = self._query(
            "SELECT s.device, s.run_id, s.seq, s.step FROM steps s JOIN runs r "  # noqa: S608
            f"ON r.run_id = s.run_id WHERE s.status IN ({marks}) AND r.status IN ({run_marks}) "
            "ORDER BY s.run_id, s.seq",
            (*busy, *sorted(OPEN)),
        )
        out: dict[str, str] = {}
        for device, run_id, seq, step in rows:
            out.setdefault(device, f"run {run_id} step {seq} ({step})")
        return out

    def steps_in_flight(self) -> list[StepRow]:
        """Every step an open run is acting on right now (started, applied or being undone,
        not yet settled), ordered by run and step: what `devices_in_flight` names, with what
        each step sends the device towards (its rows). Read-only (read again only after a
        commit: `_cached`)."""
        busy = sorted(STEP_BUSY)
        marks, run_marks = ",".join("?" for _ in busy), ",".join("?" for _ in OPEN)

        def read() -> list[StepRow]:
            rows = self._query(
                "SELECT s.run_id, s.seq, s.site, s.step, s.device, s.method, s.commands, "  # noqa: S608
                "s.undo, s.before_state, s.after_state, s.status, s.error, s.fail_direction, "
                f"s.opens FROM steps s JOIN runs r ON r.run_id = s.run_id WHERE s.status IN "
                f"({marks}) AND r.status IN ({run_marks}) ORDER BY s.run_id, s.seq",
                (*busy, *sorted(OPEN)),
            )
            return [_step_row(r) for r in rows]

        return list(self._cached("steps_in_flight", read))

    def steps_coming(self) -> list[StepRow]:
        """Every step row a running run (not one awaiting approval) has yet to start (pending),
        ordered by run and step: all of them, not only the next; which is sent next (nothing
        while a gate stands before it) is the caller's to say from the run's playbook and gates
        (`agent.run.gates.verify.next_rows`). Read-only (read again only after a commit:
        `_cached`)."""

        def read() -> list[StepRow]:
            rows = self._query(
                "SELECT s.run_id, s.seq, s.site, s.step, s.device, s.method, s.commands, "
                "s.undo, s.before_state, s.after_state, s.status, s.error, s.fail_direction, "
                "s.opens FROM steps s JOIN runs r ON r.run_id = s.run_id WHERE s.status = ? "
                "AND r.status = ? ORDER BY s.run_id, s.seq",
                (StepStatus.PENDING.value, RunStatus.RUNNING.value),
            )
            return [_step_row(r) for r in rows]

        return list(self._cached("steps_coming", read))

    def runs_coming(self, but: str | None = None) -> list[RunComing]:
        """Every running run (not one awaiting approval) with a step row still pending, but
        `but`, ordered by run: what `agent.run.gates.verify.coming` reads of the other runs at
        each poll of a first round (their sites, stop order, playbook, rows, gates' statuses
        without their detail). Read-only (read again only after a commit: `_cached`; #18: it
        was four reads per run and one per device at each poll, the gates' whole verdicts
        parsed, on every site's thread)."""

        def read() -> list[RunComing]:
            runs = self._query(
                "SELECT run_id, sites, stop_requested, playbook_json FROM runs WHERE status = ? "
                "AND run_id <> ? AND run_id IN (SELECT run_id FROM steps WHERE status = ?) "
                "ORDER BY run_id",
                (RunStatus.RUNNING.value, "" if but is None else but, StepStatus.PENDING.value),
            )
            out: list[RunComing] = []
            for run_id, sites, stop, text in runs:
                rows = self._query(self._STEP_COLUMNS + " ORDER BY seq", (run_id,))
                gates = self._query(
                    "SELECT run_id, site, step, status FROM gates WHERE run_id=?", (run_id,)
                )
                out.append(
                    RunComing(
                        run_id,
                        tuple(json.loads(sites)),
                        stop,
                        text,
                        tuple(_step_row(r) for r in rows),
                        MappingProxyType(  # cached: every caller sees the same rows
                            {
                                (g[1], g[2]): parse(
                                    GateStatus, g[3], f"gate {g[1]} {g[2]} of run {g[0]}"
                                )
                                for g in gates
                            }
                        ),
                    )
                )
            return out

        return list(self._cached(f"runs_coming:{but or ''}", read))

    def device_state(self, device: str) -> DeviceState | None:
        """One device's recorded state (None: never recorded), read by its key."""
        found = self._query("SELECT state FROM devices WHERE device=?", (device,))
        return state_from_json(found[0][0]) if found else None

    def set_site(
        self, site: str, mode: SiteMode, level: str | None, run_id: str | None, actor: str
    ) -> None:
        new = parse(SiteMode, mode, f"site {site}")
        with self.tx() as db:
            db.guard("site-mode", site)
            row = db.execute("SELECT mode FROM sites WHERE site=?", (site,)).fetchone()
            old = None if row is None else parse(SiteMode, row[0], f"site {site}")
            check_transition(SITE_TRANSITIONS, "site", site, old, new)
            db.execute(
                _UPSERT_SITE,
                (site, new, level, time.time(), run_id, actor),
            )

    def sites(self) -> dict[str, SiteRecord]:
        rows = self._query("SELECT site, mode, level, since, run_id, actor FROM sites")
        return {
            r[0]: SiteRecord(r[0], parse(SiteMode, r[1], f"site {r[0]}"), r[2], r[3], r[4], r[5])
            for r in rows
        }

    # -- flow checks (#15) ---------------------------------------------------------------------

    def record_flow_checks(
        self,
        checks: Sequence[FlowCheck],
        *,
        gate: tuple[str, str, str] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Each flow's verdict at a verify step (a later check of the same step replaces it);
        with `gate` (run, site, step), that step's gate passed with `detail` in the same
        transaction (one commit, not two: #18; both or neither)."""
        with self.tx() as db:
            db.executemany(
                upsert(
                    "flow_checks",
                    (
                        "run_id",
                        "site",
                        "step",
                        "flow",
                        "must_survive",
                        "expected",
                        "status",
                        "confirmed_by",
                        "contradicted_by",
                        "at",
                    ),
                    ("run_id", "site", "step", "flow"),
                ),
                [
                    (
                        c.run_id,
                        c.site,
                        c.step,
                        c.flow,
                        int(c.must_survive),
                        c.expected,
                        c.status,
                        json.dumps(list(c.confirmed_by)),
                        json.dumps(list(c.contradicted_by)),
                        c.at,
                    )
                    for c in checks
                ],
            )
            if gate is not None:
                self._set_gate(db, *gate, GateStatus.PASSED, detail=detail)

    def last_flow_checks(self, *, must_survive_only: bool = False) -> dict[str, FlowCheck]:
        """Every checked flow's latest verdict, by flow name."""
        rows = self._query(
            "SELECT run_id, site, step, flow, must_survive, expected, status, confirmed_by, "
            "contradicted_by, at FROM flow_checks WHERE must_survive >= ? ORDER BY at",
            (1 if must_survive_only else 0,),
        )
        out: dict[str, FlowCheck] = {}
        for r in rows:
            out[r[3]] = FlowCheck(
                r[0],
                r[1],
                r[2],
                r[3],
                bool(r[4]),
                r[5],
                r[6],
                tuple(json.loads(r[7])),
                tuple(json.loads(r[8])),
                float(r[9]),
            )
        return out

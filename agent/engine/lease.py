"""Who drives: the active/standby lease of the daemons sharing one PostgreSQL state database.

One row, `cordon_lease` (name 'active'): the holder's node id, its epoch (a fencing token that
only grows: each new holder increments it), and when the lease expires, by the DATABASE's clock
(`now()`): no node's clock is trusted. Each operation is one conditional statement:

    acquire   take the lease if nobody holds it or it expired (epoch + 1, the last takeover
              recorded: when, from whom)
    renew     extend it while this node still holds it with this epoch and it has not expired
    step_down end it now (the standby takes over at its next try)

`Fence` is what a journal write that precedes a device command checks in its own transaction
(`FENCE_SQL`): the lease still held by this node, with this epoch, for at least `margin_s`
more seconds; otherwise the write is refused (`FencedError`) and nothing is sent. A fence is
one term's: a thread of that term keeps it (`Journal.for_term`), so once the term ended it is
refused even while the node holds a later term. It also carries a local deadline (`live`):
when this node last acquired or renewed the lease (monotonic, before the statement was sent)
plus 2B/3 - B/6; the command itself is sent only while it has not passed (`Journal.may_send`,
checked once the device's session is in hand, right before each command).

A frozen node must not hold the lease row: the fenced transaction holds it `FOR SHARE` until
its COMMIT, and a lease statement holds it until its own; a process frozen there (SIGSTOP, a VM
paused) would block every standby's acquire. So a fenced transaction, and every lease
transaction, is ended by the server once idle in it for `Timing.idle_s` (a third of the bound,
at least 1 s: the lease is then free before a standby could want it, for a bound of 3 s or
more), and a lease statement waits for a lock or runs at most `Timing.statement_s` (so the loop
keeps its beat; a renewal, which waits for this node's own fenced writes, as long as its lease
counts: 2B/3 - B/6). Such a frozen node, resumed, finds its session ended: its transaction wrote
nothing (or its COMMIT's outcome is unknown), `StateLostError`, and it steps down.

Timing, from the failover bound B (`CORDON_FAILOVER_S`, default 10 s): the lease lives 2B/3,
it is renewed (and a standby tries to acquire) every B/3, so a standby takes over at most B
after the active node stopped renewing. A write needs B/6 of lease left, and so does the send:
the command goes out only before the local deadline (last renewal + 2B/3 - B/6), so a leader
whose renewals stopped (blocked, starved, waiting for a device session) sends nothing once any
standby could hold the lease. What is not covered: a pause of more than B/6 exactly between
that last local check and the command leaving the socket (the devices do not check the
epoch): said in the README.

When the database goes away (a PostgreSQL restart, the network): the lease's own store waits
for a connection no longer than the renewal period, so the loop keeps its beat; a node that
cannot renew stops being active (`on_lost`) once its lease could have run out by its own clock
(`holds`: B/6 before the database's expiry), and its fences are revoked in the process (`Fence`
refuses without asking the database), so it sends nothing from then on, whatever the database
says when it answers again. A journal write that lost the database (`state_lost`, from the
journal's `Conn.on_lost`) steps the node down at once: the step in flight is in an unknown
state until its device is read. When the database answers again the node ends its old term
(`step_down`) and takes the lease anew (epoch + 1) unless another node was quicker; either way
the new term settles every open run by reading the devices, as `resume` does.

`cordon_nodes` records each node's last heartbeat, role and epoch, for `cordon status`.

On SQLite (one state directory, one daemon) there is no lease: the node is always active with
epoch 1 (`single_node`). Imports the standard library, `agent.engine.store`, `agent.errors`.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.engine.store import Conn, Tx, is_url, open_store
from agent.errors import CordonError
from agent.settings import node_id_problem

__all__ = [
    "FENCE_SQL",
    "Fence",
    "Lease",
    "LeaseLoop",
    "LeaseState",
    "Node",
    "Timing",
    "default_node_id",
    "node_id_problem",
]

NAME = "active"
SCHEMA = """
CREATE TABLE IF NOT EXISTS cordon_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    taken_from TEXT
);
CREATE TABLE IF NOT EXISTS cordon_nodes (
    node TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    epoch BIGINT,
    seen_at TIMESTAMPTZ NOT NULL,
    pid INTEGER
)
"""
SCHEMA_VERSION = 1

# the fencing condition, in the caller's transaction: FOR SHARE holds the lease row until the
# caller commits, so a takeover (an UPDATE of that row) waits for the fenced write to end
FENCE_SQL = (
    "SELECT epoch FROM cordon_lease WHERE name = 'active' AND holder = ? AND epoch = ? "
    "AND expires_at > now() + make_interval(secs => ?) FOR SHARE"
)


def default_node_id() -> str:
    """This host's name and this process's id: unique among live daemons."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"
    return f"{host}:{os.getpid()}"


# the server settings of a transaction that holds the lease row (`set_config(..., true)`: this
# transaction only): ended by the server when idle in it (a frozen process), a lock waited for or
# a statement run no longer than the loop's beat
TX_TIMEOUTS_SQL = (
    "SELECT set_config('idle_in_transaction_session_timeout', ?, true), "
    "set_config('lock_timeout', ?, true), set_config('statement_timeout', ?, true)"
)


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


@dataclass(frozen=True)
class Timing:
    """The lease's periods, from the failover bound (seconds)."""

    bound_s: float = 10.0

    @property
    def ttl_s(self) -> float:
        return self.bound_s * 2 / 3

    @property
    def renew_s(self) -> float:
        return self.bound_s / 3

    @property
    def margin_s(self) -> float:
        return self.bound_s / 6

    @property
    def idle_s(self) -> float:
        """How long a transaction holding the lease row may sit idle before the server ends it:
        a third of the bound. A fenced write is checked at most B/2 after the last renewal (B/6
        of lease left), so the row is free again by 5B/6, before the standby's try that finds
        the lease expired (by B). At least 1 s: a busy machine's pause between two statements
        is not a frozen node (below a bound of 3 s the takeover may then take up to 1 - B/2 s
        more when a node froze exactly there)."""
        return max(self.renew_s, 1.0)

    @property
    def statement_s(self) -> float:
        """How long a lease statement may wait for a lock or run: the loop's beat, at least 1 s."""
        return max(self.renew_s, 1.0)


class _Deadline:
    """A monotonic time that only moves forward (the loop's thread extends it, any reads)."""

    def __init__(self) -> None:
        self._at = float("-inf")  # never acquired nor renewed: passed
        self._lock = threading.Lock()

    def extend(self, at: float) -> None:
        with self._lock:
            self._at = max(self._at, at)

    def left(self) -> float:
        with self._lock:
            return self._at - time.monotonic()


@dataclass(frozen=True)
class Fence:
    """What a fenced write checks: this node holds the lease with this epoch, `margin_s` ahead,
    and has not given that term up itself (`revoked`: set when the node stops being active with
    this epoch, even while the database could not be told)."""

    holder: str
    epoch: int
    margin_s: float
    revoked: threading.Event = field(default_factory=threading.Event, compare=False)
    # the server ends `tx` if it sits idle this long holding the lease row (a frozen process)
    idle_s: float = 1.0
    until: _Deadline = field(default_factory=_Deadline, compare=False, repr=False)

    def check(self, tx: Tx) -> bool:
        """In `tx` (PostgreSQL): does the lease still stand? Holds its row until `tx` ends, and
        `tx` is ended by the server if it sits idle for `idle_s` (a frozen process must not
        keep every standby from taking the lease)."""
        if self.revoked.is_set():
            return False
        tx.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', ?, true)",
            (_ms(self.idle_s),),
        )
        row = tx.execute(FENCE_SQL, (self.holder, self.epoch, self.margin_s)).fetchone()
        return row is not None and not self.revoked.is_set()

    def extend(self, at: float) -> None:
        """The lease was acquired or renewed: commands may go out until monotonic time `at`
        (when that statement was sent + lease - margin; never moves back)."""
        self.until.extend(at)

    def left_s(self) -> float:
        """Seconds left before the local deadline (negative: passed)."""
        return self.until.left()

    def live(self) -> bool:
        """May a device command go out now under this term, by this process's own clock: not
        revoked, and the lease acquired or renewed less than lease - margin ago."""
        return not self.revoked.is_set() and self.until.left() > 0


@dataclass(frozen=True)
class LeaseState:
    """The lease row as read (times by the database's clock)."""

    holder: str
    epoch: int
    expires_at: datetime
    acquired_at: datetime
    taken_from: str | None
    now: datetime

    @property
    def live(self) -> bool:
        return self.expires_at > self.now


@dataclass(frozen=True)
class Node:
    node: str
    role: str
    epoch: int | None
    seen_at: datetime
    pid: int | None
    age_s: float


class Lease:
    """The lease in the state database of `url`, operated by node `node`."""

    def __init__(self, url: str, node: str, timing: Timing) -> None:
        if not is_url(url):
            raise ValueError("a lease needs a PostgreSQL state URL")
        self.node = node
        self.timing = timing
        self.db: Conn = open_store(
            url,
            name="lease",
            what="lease store",
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            durable=True,
            wait_s=timing.renew_s,  # the loop keeps its beat while the database is away
        )
        self._fences: dict[int, Fence] = {}
        self._fences_lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _write(self, statement_s: float | None = None) -> Iterator[Tx]:
        """A lease transaction: ended by the server if idle in it (a frozen process must not
        hold the row), its lock waits and statements bounded by the loop's beat (`Timing`;
        `statement_s`: another bound)."""
        t = self.timing
        bound = _ms(t.statement_s if statement_s is None else statement_s)
        with self.db.write() as tx:
            tx.execute(TX_TIMEOUTS_SQL, (_ms(t.idle_s), bound, bound))
            yield tx

    def _extend(self, epoch: int, sent: float) -> None:
        """This node holds `epoch` as of a statement sent at `sent` (monotonic): its fence's
        commands may go out until `sent` + lease - margin."""
        self.fence(epoch).extend(sent + self.timing.ttl_s - self.timing.margin_s)

    def acquire(self) -> int | None:
        """Take the lease if it is free or expired: the new epoch, or None (held by a live
        node; by this node too: `renew` is for that)."""
        sent = time.monotonic()
        with self._write() as tx:
            row = tx.execute(
                "INSERT INTO cordon_lease (name, holder, epoch, expires_at, acquired_at, "
                "taken_from) VALUES ('active', ?, 1, now() + make_interval(secs => ?), now(), "
                "NULL) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "epoch = cordon_lease.epoch + 1, expires_at = excluded.expires_at, "
                "acquired_at = now(), taken_from = cordon_lease.holder "
                "WHERE cordon_lease.expires_at <= now() RETURNING epoch",
                (self.node, self.timing.ttl_s),
            ).fetchone()
        if row is None:
            return None
        self._extend(int(row[0]), sent)
        return int(row[0])

    def renew(self, epoch: int) -> bool:
        """Extend the lease held by this node with `epoch` (not expired): did it stand?"""
        sent = time.monotonic()
        # the active node's own renewal may wait for its fenced writes (they hold the row FOR
        # SHARE) as long as its lease can still count (a renewal given up would lose it)
        with self._write(max(self.timing.ttl_s - self.timing.margin_s, 1.0)) as tx:
            rows = tx.execute(
                "UPDATE cordon_lease SET expires_at = now() + make_interval(secs => ?) "
                "WHERE name = 'active' AND holder = ? AND epoch = ? AND expires_at > now()",
                (self.timing.ttl_s, self.node, epoch),
            )
            stood = rows.rowcount == 1
        if stood:  # committed
            self._extend(epoch, sent)
        return stood

    def step_down(self, epoch: int) -> bool:
        """End this node's lease with `epoch` now (a standby takes it at its next try): did this
        node still hold it?"""
        with self._write() as tx:
            rows = tx.execute(
                "UPDATE cordon_lease SET expires_at = now() "
                "WHERE name = 'active' AND holder = ? AND epoch = ? AND expires_at > now()",
                (self.node, epoch),
            )
            return rows.rowcount == 1

    def fence(self, epoch: int) -> Fence:
        """The fence of this node's term `epoch` (one per term: `revoke` ends it here)."""
        with self._fences_lock:
            found = self._fences.get(epoch)
            if found is None:
                found = self._fences[epoch] = Fence(
                    self.node, epoch, self.timing.margin_s, idle_s=self.timing.idle_s
                )
            return found

    def revoke(self, epoch: int) -> None:
        """This node gave up its term `epoch`: its fence refuses every write from now on,
        without asking the database (which may be away, or still show the lease as held)."""
        self.fence(epoch).revoked.set()

    def state(self) -> LeaseState | None:
        rows = self.db.query(
            "SELECT holder, epoch, expires_at, acquired_at, taken_from, now() "
            "FROM cordon_lease WHERE name = 'active'"
        )
        if not rows:
            return None
        holder, epoch, expires_at, acquired_at, taken_from, now = rows[0]
        return LeaseState(str(holder), int(epoch), expires_at, acquired_at, taken_from, now)

    def heartbeat(self, role: str, epoch: int | None) -> None:
        """Record this node's role now (for `cordon status`)."""
        with self._write() as tx:
            tx.execute(
                "INSERT INTO cordon_nodes (node, role, epoch, seen_at, pid) "
                "VALUES (?, ?, ?, now(), ?) ON CONFLICT (node) DO UPDATE SET "
                "role = excluded.role, epoch = excluded.epoch, seen_at = excluded.seen_at, "
                "pid = excluded.pid",
                (self.node, role, epoch, os.getpid()),
            )

    def nodes(self) -> list[Node]:
        rows = self.db.query(
            "SELECT node, role, epoch, seen_at, pid, "
            "EXTRACT(EPOCH FROM now() - seen_at)::float8 FROM cordon_nodes ORDER BY node"
        )
        return [Node(r[0], r[1], _int(r[2]), r[3], _int(r[4]), float(r[5])) for r in rows]


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


class LeaseLoop:
    """This node's role, kept by its own thread: standby until it acquires the lease, then
    active while each renewal stands. `on_active(epoch)` when it becomes active; `on_lost(epoch,
    why)` at once when it stops being active (a renewal refused, the database silent past the
    lease, a fenced write: `lost`). `stop` steps down (a standby takes over at once)."""

    def __init__(
        self,
        lease: Lease,
        *,
        on_active: Callable[[int], None],
        on_lost: Callable[[int, str], None],
    ) -> None:
        self.lease = lease
        self.on_active = on_active
        self.on_lost = on_lost
        self.epoch: int | None = None  # while active
        self.renewed = 0.0  # monotonic time of the last renewal that stood
        self.release: int | None = None  # a term given up locally, to end in the database
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cordon-lease", daemon=True)

    @property
    def role(self) -> str:
        return "active" if self.epoch is not None else "standby"

    def holds(self) -> bool:
        """Active, and by this process's clock the lease cannot have run out (a paused process
        wakes up here as not holding it, before its loop has said so)."""
        with self._lock:
            fresh = time.monotonic() - self.renewed < self.lease.timing.ttl_s - (
                self.lease.timing.margin_s
            )
            return self.epoch is not None and fresh

    def start(self) -> None:
        self._tick()  # the first try now: a lone daemon is active before it serves
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.lease.timing.bound_s)
        with self._lock:
            epoch, self.epoch = self.epoch, None
        if epoch is not None:
            with contextlib.suppress(CordonError):
                self.lease.step_down(epoch)
                self.lease.heartbeat("stopped", None)

    def lost(self, epoch: int, why: str) -> None:
        """No longer active with `epoch` (idempotent): its fence revoked at once (nothing more
        is written or sent under it), then `on_lost` once."""
        self.lease.revoke(epoch)
        with self._lock:
            if self.epoch != epoch:
                return
            self.epoch = None
            self.release = epoch
        self.on_lost(epoch, why)

    def state_lost(self, why: str) -> None:
        """The state database failed a write or read of this node's (`Conn.on_lost`): while
        it is away nothing of this node's may be trusted to be written, and a step in flight
        is in an unknown state until its device is read: stop being active now. The loop ends
        the term in the database and takes the lease again once it answers."""
        epoch = self.epoch
        if epoch is not None:
            self.lost(epoch, f"the state database was lost ({why})")

    def _run(self) -> None:
        while not self._stop.wait(self.lease.timing.renew_s):
            try:
                self._tick()
            except Exception as exc:  # the loop outlives any one tick
                # a dead loop would never take the lease again (nor give it up): say it, go on
                text = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                sys.stderr.write(f"cordon: lease loop: {' '.join(str(text).split())}\n")

    def _tick(self) -> None:
        epoch = self.epoch
        try:
            if epoch is None and self.release is not None:  # a term given up: end it first
                self.lease.step_down(self.release)
                self.release = None
            if epoch is not None:
                started = time.monotonic()
                if self.lease.renew(epoch):
                    with self._lock:
                        self.renewed = started
                else:
                    self.lost(epoch, "the lease was not renewed: it ran out or was taken")
            else:
                started = time.monotonic()
                got = self.lease.acquire()
                if got is not None:
                    with self._lock:
                        self.epoch, self.renewed = got, started
                    self._become_active(got)
            self.lease.heartbeat(self.role, self.epoch)
        except CordonError as exc:  # the database unreachable: active only while it cannot
            if epoch is not None and not self.holds():  # have run out
                self.lost(epoch, f"the lease could not be renewed: {exc.message}")

    def _become_active(self, epoch: int) -> None:
        """`on_active`; a term that cannot start (its scheduler's store unreachable...) is given
        up at once rather than held without driving."""
        try:
            self.on_active(epoch)
        except Exception as exc:  # any failure: this node must not hold the lease undriven
            text = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.lost(epoch, f"this node could not start driving: {' '.join(str(text).split())}")

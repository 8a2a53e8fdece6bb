"""Where the daemon's state lives: SQLite files (the default) or one PostgreSQL database (a
`postgresql://` URL, `CORDON_STATE_URL`). The one place where the two differ: opening and
migrating a store (schema version: `PRAGMA user_version` in a file, a row of `cordon_schema` in
the database), the column types of the schema text, the placeholder style, connections, and how
a write transaction is isolated.

The stores write portable SQL (`?` placeholders, `INSERT ... ON CONFLICT`, `upsert`) in a
`Tx`, from `Conn.write()` (a transaction) or `Conn.query()` (one read). On SQLite a write is
`BEGIN IMMEDIATE`: the file's one writer at a time, as before; the process's threads queued for
it share one COMMIT (group commit: one fsync for the batch, each block in a savepoint of its
own), and each returns only once that COMMIT is done. On PostgreSQL it is a READ
COMMITTED transaction on a pooled connection (psycopg_pool): the executor's site threads write
in parallel and their commits share the WAL flushes; what SQLite's single writer made safe is
made safe by record locks: every read-check-write (a run's or a step's status transition, a
site's lock, a run's next step number) first takes `Tx.guard(kind, key)`, a transaction-scoped
advisory lock on that record, so no other writer, in this process or another host sharing the
database, checks the same record before this transaction ends. Single statements (an upsert, an
update of one row) are atomic by themselves. Reads take no lock (a committed snapshot): on
SQLite they go through a second, read-only connection to the same file, opened with the first
(WAL: a reader never waits for the writer), so a read never queues behind a batch's COMMIT and
its fsync (#18: 10-120 ms a read under the site threads' writes); it sees what is committed.
`Conn.data_version()` changes at every commit by any connection, this process's writer
included: a read cached under it is exact (`agent.engine.journal`'s polled reads).

When PostgreSQL goes away (a restart, a failover, the network): a transaction first waits for a
live connection (the pool checks each one it lends, drops the dead and reconnects with backoff),
up to `wait_s` (`RECONNECT_S`, 30 s; the lease's store: its renewal period), then gives up with
`StateLostError`. A connection lost inside a transaction is never retried here: before its
COMMIT was sent, nothing was written ("wrote nothing"); during the COMMIT, nobody can know
whether it committed ("outcome unknown"): the caller settles from the devices (a step in flight
is `resume`'s to read). Either way each listener of `Conn.on_lost` is told (the daemon steps
down and takes the lease again once the database answers, settling its runs as `resume` does).

A PostgreSQL URL carries no password (refused, `agent.settings.state_url_problem`): peer or
certificate authentication, or libpq's password file (`PGPASSFILE`, ~/.pgpass). Driver errors
become a `DaemonError` naming the store (the URL without its options), never a traceback.

Imports only the standard library, `agent.engine.sqlitefile`, `agent.settings` (what a state
URL may be) and `agent.errors`; psycopg and psycopg_pool only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.engine.sqlitefile import open_reader, open_versioned
from agent.errors import DaemonError, StateLostError
from agent.settings import is_state_url, redact_url, state_url_problem

Backend = Literal["sqlite", "postgresql"]


class Rows(Protocol):
    """What a statement returns, on either backend."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def is_url(where: object) -> bool:
    """Is `where` a PostgreSQL URL (rather than a SQLite file's path)? Never raises."""
    return is_state_url(where)


def redact(url: str) -> str:
    """`url` without its password nor its query, for messages (`settings.redact_url`)."""
    return redact_url(url)


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL of a PostgreSQL state URL (its psycopg 3 dialect), for APScheduler's
    job store."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """`INSERT ... ON CONFLICT (key) DO UPDATE` every other column: the row replaced in place
    (SQLite 3.24+ and PostgreSQL alike)."""
    rest = [c for c in columns if c not in key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in rest) if rest else "DO NOTHING"
    )
    marks = ",".join("?" for _ in columns)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608 - fixed names
        f"ON CONFLICT ({', '.join(key)}) {action}"
    )


# -- the PostgreSQL dialect ----------------------------------------------------------------------

_PG_TYPES = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # PostgreSQL's REAL is 4 bytes: not a time
)


def pg_schema(schema: str) -> str:
    """The SQLite schema text in PostgreSQL's types (TEXT and INTEGER are the same)."""
    for pattern, replacement in _PG_TYPES:
        schema = pattern.sub(replacement, schema)
    return schema


@cache
def _pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _lock_key(name: str) -> int:
    """The advisory lock key of `name` (a signed 64-bit number)."""
    return int.from_bytes(hashlib.sha256(f"cordon:{name}".encode()).digest()[:8], signed=True)


POOL_SIZE = 10  # PostgreSQL connections of one store in one process, at most
RECONNECT_S = 30.0  # how long a transaction waits for the database to answer again, at most


class Tx:
    """One transaction (or one read) on a store: its statements, on one connection."""

    def __init__(self, conn: Conn, raw: Any) -> None:
        self.conn = conn
        self.raw = raw

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        if self.conn.backend == "sqlite":
            return self.raw.execute(sql, tuple(args))  # type: ignore[no-any-return]
        with self.conn.driver_errors():
            return self.raw.execute(_pg_sql(sql), tuple(args))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if not batch:
            return
        if self.conn.backend == "sqlite":
            self.raw.executemany(sql, batch)
            return
        with self.conn.driver_errors(), self.raw.cursor() as cur:
            cur.executemany(_pg_sql(sql), batch)

    def guard(self, kind: str, *keys: str) -> None:
        """Hold, until this transaction ends, the write lock of each record `kind`:`key` it
        reads, checks and writes (a run's status, a step's, a site's lock): no other writer
        checks the same record in between. SQLite: the file's one writer lock is already
        held. PostgreSQL: transaction-scoped advisory locks, taken in sorted order (two
        transactions wanting several never wait on each other in a cycle)."""
        if self.conn.backend == "sqlite":
            return
        for key in sorted(set(keys)):
            self.execute(
                "SELECT pg_advisory_xact_lock(?)", (_lock_key(f"{self.conn.name}:{kind}:{key}"),)
            )

    def columns(self, table: str) -> set[str]:
        """The columns `table` has now (a migration adds the missing ones)."""
        if self.conn.backend == "sqlite":
            return {r[1] for r in self.raw.execute(f"PRAGMA table_info({table})")}
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}


GROUP_MAX = 64  # SQLite: the most write blocks that share one COMMIT


class _Batch:
    """The write blocks sharing one SQLite COMMIT: set `done` once it is over (`error`: it
    failed, nothing of it was written)."""

    __slots__ = ("blocks", "done", "error")

    def __init__(self) -> None:
        self.blocks = 0
        self.done = threading.Event()
        self.error: sqlite3.Error | None = None


class Conn:
    """A store: one SQLite connection shared by the process's threads (every use holds `lock`),
    or a pool of PostgreSQL connections (one per transaction or read, so the threads' writes
    proceed in parallel and commit together)."""

    def __init__(
        self,
        backend: Backend,
        raw: Any,
        name: str,
        what: str,
        where: str,
        wait_s: float = RECONNECT_S,
    ) -> None:
        self.backend: Backend = backend
        self.raw = raw  # the sqlite3 connection, or the psycopg_pool.ConnectionPool
        self.name = name  # the store's key (its schema version row, its locks)
        self.what = what  # what it is, for messages
        self.where = where  # the file, or the URL without its query: for messages
        self.wait_s = wait_s  # PostgreSQL: how long a transaction waits for a live connection
        self.lock = threading.RLock()
        # SQLite group commit (`_sqlite_write`): the open batch, and how many writers wait
        self._batch: _Batch | None = None
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        # told (with the message) each time the database could not be used (StateLostError)
        self.on_lost: list[Callable[[str], None]] = []
        # SQLite: the read-only connection every `query` uses (`open_store`), and its lock
        self.reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        if self.backend == "sqlite":
            with self._read_lock:
                reader = self.reader  # under its lock: `close` may have just dropped it
                if reader is not None:
                    return Tx(self, reader).execute(sql, args).fetchall()
            with self.lock:  # closed (raises sqlite3.ProgrammingError as before), or no reader
                return Tx(self, self.raw).execute(sql, args).fetchall()
        with self.driver_errors(), self.raw.connection(timeout=self.wait_s) as raw:
            return Tx(self, raw).execute(sql, args).fetchall()

    def data_version(self) -> int | None:
        """SQLite: a number that changes whenever any connection (this process's writer, or
        another process's) has committed since the last call, read where `query` reads (so a
        read made after it was taken is at least that recent); None on PostgreSQL or without a
        reader (never cache: read again)."""
        if self.backend != "sqlite":
            return None
        with self._read_lock:
            if self.reader is None:  # closed, or no reader opened
                return None
            return int(self.reader.execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One write transaction. SQLite: `BEGIN IMMEDIATE`, alone among the file's writers.
        PostgreSQL: READ COMMITTED, each read-check-write holding its records' locks
        (`Tx.guard`); single statements (upserts, updates) are atomic by themselves."""
        if self.backend == "sqlite":
            with self._sqlite_write() as tx:
                yield tx
            return
        import psycopg  # noqa: PLC0415 - a PostgreSQL store only

        committing = False
        with self.driver_errors(), self.raw.connection(timeout=self.wait_s) as raw:
            try:
                with raw.transaction():
                    yield Tx(self, raw)
                    committing = True  # the block ended: leaving it sends the COMMIT
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not committing:
                    raise
                raise self._lost(
                    exc,
                    "its COMMIT was sent but no answer came back: whether it committed is unknown",
                ) from None

    @contextmanager
    def _sqlite_write(self) -> Iterator[Tx]:
        """A SQLite write that shares its COMMIT (its fsync) with the writers queued behind it
        (group commit): each block runs alone under `lock`, in a savepoint of the one open
        transaction (an exception rolls back that block only, and is raised to its caller);
        the last block of a batch (no other writer waiting, or `GROUP_MAX` blocks in it)
        commits, and every block of the batch returns only once that COMMIT is done, so a
        caller never goes on (sends a command) before what it wrote is durable. A failed COMMIT
        is raised to every block of its batch: none of them was written."""
        batch: _Batch
        with self._count_waiting():
            self.lock.acquire()
        try:
            if self._batch is None:
                self.raw.execute("BEGIN IMMEDIATE")
                self._batch = _Batch()
            batch = self._batch
            try:
                self.raw.execute("SAVEPOINT w")
            except sqlite3.Error as exc:  # the batch's transaction is unusable: none of it
                self._fail_batch(batch, exc)
                raise
            try:
                yield Tx(self, self.raw)
            except BaseException:
                self._undo_block(batch)
                raise
            try:
                self.raw.execute("RELEASE w")
            except sqlite3.Error as exc:
                self._fail_batch(batch, exc)
            else:
                batch.blocks += 1
                self._end_batch_if_last(batch)
        finally:
            self.lock.release()
        batch.done.wait()
        if batch.error is not None:  # the same error in each writer of the batch
            raise type(batch.error)(*batch.error.args)

    @contextmanager
    def _count_waiting(self) -> Iterator[None]:
        with self._waiting_lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def _undo_block(self, batch: _Batch) -> None:
        """Under `lock`: a block raised: roll back its savepoint only; if SQLite cannot (the
        error ended the whole transaction: a full disk, an I/O error), the batch is lost."""
        try:
            self.raw.execute("ROLLBACK TO w")
            self.raw.execute("RELEASE w")
        except sqlite3.Error as exc:
            self._fail_batch(batch, exc)
            return
        self._end_batch_if_last(batch)

    def _end_batch_if_last(self, batch: _Batch) -> None:
        """Under `lock`: COMMIT the open batch when no other writer waits for the lock (or the
        batch is full), and wake its blocks."""
        with self._waiting_lock:
            waiting = self._waiting
        if waiting > 0 and batch.blocks < GROUP_MAX:
            return  # the next writer's block joins this transaction; the last one commits
        try:
            # every block of it failed: nothing to write
            self.raw.execute("COMMIT" if batch.blocks else "ROLLBACK")
        except sqlite3.Error as exc:
            self._fail_batch(batch, exc)
            return
        self._batch = None
        batch.done.set()

    def _fail_batch(self, batch: _Batch, exc: sqlite3.Error) -> None:
        """Under `lock`: nothing of `batch` was written: its transaction rolled back, `exc`
        raised to each of its writers."""
        batch.error = exc
        self._batch = None
        try:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already ended it
        batch.done.set()

    def lost(self) -> str | None:
        """Why this store can no longer be written through, or None (PostgreSQL: its pool was
        closed; a broken connection is replaced by the pool; a SQLite file's identity is the
        journal's to check)."""
        if self.backend == "postgresql" and self.raw.closed:
            return f"the connections to the {self.what} at {self.where} were closed"
        return None

    def close(self) -> None:
        with self.lock:
            if self._batch is not None:  # writers waiting for its COMMIT: none of it written
                self._fail_batch(
                    self._batch, sqlite3.OperationalError(f"the {self.what} was closed")
                )
            self.raw.close()
            with self._read_lock:
                if self.reader is not None:
                    self.reader.close()
                    self.reader = None

    @contextmanager
    def driver_errors(self) -> Iterator[None]:
        """A PostgreSQL error (the server down, a connection lost, a constraint) as a
        `DaemonError` naming the store: never a traceback."""
        if self.backend == "sqlite":
            yield
            return
        import psycopg  # noqa: PLC0415 - a PostgreSQL store only
        import psycopg_pool  # noqa: PLC0415

        try:
            yield
        except StateLostError:
            raise
        except (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            # the server ended a session left idle in its transaction (a frozen process holding
            # the lease row: `agent.engine.lease`): rolled back, nothing written
            psycopg.errors.IdleInTransactionSessionTimeout,
            psycopg_pool.PoolTimeout,
        ) as exc:
            raise self._lost(exc, "this transaction wrote nothing") from None
        except psycopg.Error as exc:
            raise DaemonError(
                f"the {self.what} at {self.where} cannot be used: "
                f"{type(exc).__name__}: {str(exc).strip()}",
                hint="check that the PostgreSQL server is up, reachable and that this user may "
                "use the database (CORDON_STATE_URL); this transaction wrote nothing",
            ) from None

    def _lost(self, exc: BaseException, outcome: str) -> StateLostError:
        """The database unreachable or the connection lost: the error (saying what became of
        the transaction), each `on_lost` listener told first."""
        cause = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no connection'}"
        if type(exc).__name__ == "PoolTimeout":
            cause = f"no live connection within {self.wait_s:g} s ({cause})"
        message = f"the {self.what} at {self.where} cannot be reached: {cause}; {outcome}"
        for listener in list(self.on_lost):
            listener(message)
        return StateLostError(
            message,
            hint="check that the PostgreSQL server is up and reachable (CORDON_STATE_URL); a "
            "step in flight is settled by reading its device (`cordon resume`, or the active "
            "daemon once the database answers)",
        )


def open_store(
    where: Path | str,
    *,
    name: str,
    what: str,
    schema: str,
    version: int,
    durable: bool,
    upgrade: Callable[[Tx], None] | None = None,
    wait_s: float = RECONNECT_S,
) -> Conn:
    """Open store `name` (the journal, the health store) at a SQLite file or a PostgreSQL URL,
    migrated to `version`: the `schema` statements (idempotent), then `upgrade`, then the
    version, in one transaction; a store of a newer release refused, unchanged. `durable`:
    a commit survives a power cut (SQLite synchronous=FULL, PostgreSQL synchronous_commit on);
    otherwise it may lose the last commits, never corrupt (NORMAL; off). `wait_s`
    (PostgreSQL): how long a transaction waits for the database to answer again."""
    if is_url(where):
        return _open_pg(str(where), name, what, schema, version, durable, upgrade, wait_s)
    conn = Conn("sqlite", None, name, what, str(where))

    def _upgrade(db: sqlite3.Connection) -> None:
        if upgrade is not None:
            upgrade(Tx(conn, db))  # the migration writes through the connection being opened

    conn.raw = open_versioned(
        Path(where),
        what=what,
        schema=schema,
        version=version,
        synchronous="FULL" if durable else "NORMAL",
        upgrade=_upgrade,
    )
    try:
        conn.reader = open_reader(Path(where))
    except BaseException:
        conn.raw.close()
        raise
    return conn


def _open_pg(
    url: str,
    name: str,
    what: str,
    schema: str,
    version: int,
    durable: bool,
    upgrade: Callable[[Tx], None] | None,
    wait_s: float,
) -> Conn:
    import psycopg  # noqa: PLC0415 - a PostgreSQL store only
    from psycopg_pool import ConnectionPool, PoolTimeout  # noqa: PLC0415

    # the pool's own retries say "error connecting" on every try: our one message says it
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    where = redact(url)
    problem = state_url_problem(url)
    if problem is not None:
        raise DaemonError(f"the {what} URL {where} cannot be used: {problem}")

    try:  # one connection first: a server that is not there is said at once, in its words
        psycopg.connect(url, connect_timeout=30).close()
    except psycopg.Error as exc:
        raise DaemonError(
            f"cannot connect to the {what} at {where}: {str(exc).strip()}",
            hint="check that the PostgreSQL server is up and reachable and that this user may "
            "connect to the database (CORDON_STATE_URL); nothing was changed",
        ) from None

    def configure(raw: psycopg.Connection[Any]) -> None:
        if not durable:
            raw.execute("SET synchronous_commit TO off")

    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True, "connect_timeout": 30},
        configure=configure,
        check=ConnectionPool.check_connection,  # a connection lent is alive (a restart drops all)
        name=f"cordon-{name}",
        open=True,
    )
    try:
        pool.wait(timeout=30)
    except PoolTimeout:
        pool.close()
        raise DaemonError(
            f"cannot connect to the {what} at {where} within 30 s",
            hint="check that the PostgreSQL server is up and reachable and that this user may "
            "connect to the database (CORDON_STATE_URL); nothing was changed",
        ) from None
    conn = Conn("postgresql", pool, name, what, where, wait_s)
    try:
        with conn.write() as tx:
            # one migration at a time in the database (two stores may share it: one
            # `cordon_schema`, created once)
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key("schema"),))
            tx.execute(
                "CREATE TABLE IF NOT EXISTS cordon_schema "
                "(store TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = tx.execute(
                "SELECT version FROM cordon_schema WHERE store = ?", (name,)
            ).fetchone()
            found = int(row[0]) if row is not None else 0
            if found > version:
                raise DaemonError(
                    f"the {what} at {where} was written by a newer Cordon (schema version "
                    f"{found}; this release reads up to {version}): nothing was changed",
                    hint="use that release (or a newer one) with this database",
                )
            if found < version:
                for statement in pg_schema(schema).split(";"):
                    if statement.strip():
                        tx.execute(statement)
                if upgrade is not None:
                    upgrade(tx)
                tx.execute(
                    upsert("cordon_schema", ("store", "version"), ("store",)), (name, version)
                )
    except BaseException:
        pool.close()
        raise
    return conn

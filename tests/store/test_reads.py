"""SQLite reads (`agent.engine.store.Conn.query`): each runs on a read-only connection of its own
(a pool of at most `READERS`, opened on demand), so a read never waits for another thread's read
(#18: a containment's site threads and flow sources queued behind one reader), never for the
writer; `close` closes every one of them, and a read it races finishes or gets SQLite's own
"closed database" error. The reads are held inside SQLite by a function (`hold()`) that waits
for the test's word: no timing is assumed, every wait is bounded (60 s) and only a failure waits
that long."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.engine import sqlitefile, store
from agent.engine.store import Conn, open_store

T = TypeVar("T")
SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
WAIT_S = 60.0  # the longest a test waits for what must happen
HOLD_S = 300.0  # the longest a held read waits for the test's word (a failed test's)


@dataclass
class Holds:
    """Every read-only connection the store opens, and `hold()` in each: a read of it signals
    `entered` and waits for `release`."""

    opened: list[sqlite3.Connection] = field(default_factory=list)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    release: threading.Event = field(default_factory=threading.Event)

    def hold(self) -> int:
        self.entered.release()
        self.release.wait(HOLD_S)
        return 1


@pytest.fixture
def holds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Holds]:
    h = Holds()

    def open_reader(path: Path) -> sqlite3.Connection:
        db = sqlitefile.open_reader(path)
        db.create_function("hold", 0, h.hold)
        h.opened.append(db)
        return db

    monkeypatch.setattr(store, "open_reader", open_reader)
    yield h
    h.release.set()  # a failed test never leaves a read waiting


@pytest.fixture
def conn(tmp_path: Path, holds: Holds) -> Iterator[Conn]:
    db = open_store(
        tmp_path / "s.sqlite", name="t", what="test store", schema=SCHEMA, version=1, durable=True
    )
    with db.write() as tx:
        tx.execute("INSERT INTO t VALUES ('a', 1)")
    yield db
    db.close()


def held_read(db: Conn, holds: Holds) -> tuple[threading.Thread, list[Any]]:
    """A thread whose read is inside SQLite (in `hold()`) when this returns; its rows in the
    list once `holds.release` is set."""
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.extend(db.query("SELECT hold(), k FROM t")))
    t.start()
    assert holds.entered.acquire(timeout=WAIT_S), "the held read never started"
    return t, got


def answered(call: Callable[[], T]) -> T:
    """`call()` in another thread, which must return within `WAIT_S` (not wait for a held
    read)."""
    got: list[T] = []
    t = threading.Thread(target=lambda: got.append(call()))
    t.start()
    t.join(WAIT_S)
    assert got, f"{call} waited for a read on another connection (or failed)"
    return got[0]


def closed(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_a_read_does_not_wait_for_another_threads_read(conn: Conn, holds: Holds) -> None:
    first, got = held_read(conn, holds)
    done = threading.Event()
    rows: list[Any] = []

    def second() -> None:
        rows.extend(conn.query("SELECT k, v FROM t"))
        done.set()

    other = threading.Thread(target=second)
    other.start()
    assert done.wait(WAIT_S), "a read waited for another thread's read"
    assert rows == [("a", 1)]
    holds.release.set()
    first.join(WAIT_S)
    other.join(WAIT_S)
    assert got == [(1, "a")]


def test_a_read_does_not_wait_for_the_writer(conn: Conn, holds: Holds) -> None:
    """A write transaction open (its block running): a read still answers, with what is
    committed."""
    inside, release = threading.Event(), threading.Event()

    def write() -> None:
        with conn.write() as tx:
            tx.execute("INSERT INTO t VALUES ('b', 2)")
            inside.set()
            release.wait(WAIT_S)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert inside.wait(WAIT_S)
        assert conn.query("SELECT k FROM t") == [("a",)]
    finally:
        release.set()
        writer.join(WAIT_S)
    assert conn.query("SELECT k FROM t ORDER BY k") == [("a",), ("b",)]


def test_at_most_readers_connections_and_a_read_waits_for_one_given_back(
    tmp_path: Path, holds: Holds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection lent (`READERS` reads running): the next read waits for one given
    back, then reads on it; never more connections (file descriptors) than that."""
    monkeypatch.setattr(store, "READERS", 2)
    db = open_store(
        tmp_path / "s.sqlite", name="t", what="test store", schema=SCHEMA, version=1, durable=True
    )
    try:
        with db.write() as tx:
            tx.execute("INSERT INTO t VALUES ('a', 1)")
        opened_by_open_store = len(holds.opened)  # the one `data_version` asks
        threads = [held_read(db, holds)[0] for _ in range(2)]
        done = threading.Event()

        def read() -> None:
            db.query("SELECT k FROM t")
            done.set()

        third = threading.Thread(target=read)
        third.start()
        holds.release.set()
        assert done.wait(WAIT_S)
        for t in [*threads, third]:
            t.join(WAIT_S)
        assert len(holds.opened) - opened_by_open_store == 2
    finally:
        db.close()
    assert all(closed(c) for c in holds.opened)


def test_close_does_not_wait_for_a_read_and_closes_every_reader(conn: Conn, holds: Holds) -> None:
    """`close` while a read runs: it returns at once, the read ends with its rows (its
    connection closed when given back, never under it), every other connection is closed, and
    a read after it gets SQLite's "closed database" error."""
    other = threading.Thread(target=lambda: conn.query("SELECT k FROM t"))
    other.start()
    other.join(WAIT_S)  # an idle connection besides the held one
    reading, got = held_read(conn, holds)
    closing = threading.Thread(target=conn.close)
    closing.start()
    closing.join(WAIT_S)
    try:
        assert not closing.is_alive(), "close waited for a running read"
        assert reading.is_alive()
    finally:
        holds.release.set()
        reading.join(WAIT_S)
        closing.join(WAIT_S)
    assert got == [(1, "a")]
    assert all(closed(c) for c in holds.opened)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.query("SELECT k FROM t")
    assert conn.data_version() is None


def test_data_version_sees_every_commit_while_the_reads_use_other_connections(
    conn: Conn, holds: Holds, tmp_path: Path
) -> None:
    """The version changes after a commit by this store's writer and by another process's
    connection, whichever connections the reads are on meanwhile (it is only comparable with
    itself on one connection: a new connection's first version says nothing of the commits
    before it)."""
    before = conn.data_version()
    reading, _ = held_read(conn, holds)  # the connection last used is lent
    try:
        with conn.write() as tx:
            tx.execute("INSERT INTO t VALUES ('b', 2)")
        after_mine = answered(conn.data_version)
        assert after_mine is not None and after_mine != before
        assert answered(lambda: conn.query("SELECT k FROM t ORDER BY k")) == [("a",), ("b",)]
        other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
        try:
            other.execute("INSERT INTO t VALUES ('c', 3)")
        finally:
            other.close()
        after_other = answered(conn.data_version)
        assert after_other is not None and after_other != after_mine
        assert answered(conn.data_version) == after_other  # nothing committed since
    finally:
        holds.release.set()
        reading.join(WAIT_S)


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_read_after_the_file_was_replaced_reads_the_stores_own_file(
    tmp_path: Path, holds: Holds, how: str
) -> None:
    """The path renamed over by another database, or deleted, after the store opened (no read
    connection open yet): reads still answer from the store's own file (the one its writer
    writes), never from the file now at the path, never an error."""
    path = tmp_path / "s.sqlite"
    db = open_store(path, name="t", what="test store", schema=SCHEMA, version=1, durable=True)
    try:
        with db.write() as tx:
            tx.execute("INSERT INTO t VALUES ('mine', 1)")
        db.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file, none in WAL
        if how == "replaced":
            intruder = sqlite3.connect(tmp_path / "other.sqlite", isolation_level=None)
            intruder.execute(SCHEMA)
            intruder.execute("INSERT INTO t VALUES ('other', 2)")
            intruder.close()
            (tmp_path / "other.sqlite").replace(path)
        else:
            path.unlink()
        assert db.query("SELECT k FROM t") == [("mine",)]
    finally:
        db.close()

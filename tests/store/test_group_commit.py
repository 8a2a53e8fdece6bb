"""SQLite group commit (`agent.engine.store.Conn._sqlite_write`): writers queued behind each
other share one COMMIT (one fsync), and still each returns only once what it wrote is committed
(visible to another connection, so durable: WAL, synchronous=FULL); a block that raises loses
only its own writes; a failed COMMIT is raised to every writer of its batch."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.engine import store
from agent.engine.store import Conn, open_store

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Conn]:
    db = open_store(
        tmp_path / "s.sqlite", name="t", what="test store", schema=SCHEMA, version=1, durable=True
    )
    yield db
    db.close()


def wait_until_waiting(db: Conn, writers: int) -> None:
    """Until `writers` writers wait for the store (counted before they take its lock)."""
    while True:
        with db._waiting_lock:
            if db._waiting == writers:
                return
        time.sleep(0.001)


def committed(path: Path) -> set[str]:
    """What another connection (another process's view) sees committed."""
    other = sqlite3.connect(path)
    try:
        return {k for (k,) in other.execute("SELECT k FROM t")}
    finally:
        other.close()


def commits_counted(db: Conn) -> list[str]:
    """Every COMMIT the store's connection runs, recorded."""
    seen: list[str] = []
    db.raw.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_each_writer_returns_only_once_its_write_is_committed(conn: Conn, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    seen_after: dict[str, bool] = {}
    commits = commits_counted(conn)
    start = threading.Barrier(16)

    def writer(i: int) -> None:
        start.wait()
        with conn.write() as tx:
            tx.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i))
        seen_after[f"k{i}"] = f"k{i}" in committed(path)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen_after == {f"k{i}": True for i in range(16)}
    assert committed(path) == {f"k{i}" for i in range(16)}
    assert 1 <= len(commits) <= 16


def queue_behind_one(db: Conn, queued: int) -> None:
    """One writer holds the store while `queued` others queue behind it, then all end."""
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with db.write() as tx:
            tx.execute("INSERT INTO t VALUES ('first', 0)")
            inside.set()
            release.wait(30)

    def later(i: int) -> None:
        with db.write() as tx:
            tx.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i))

    lead = threading.Thread(target=first)
    lead.start()
    assert inside.wait(30)
    others = [threading.Thread(target=later, args=(i,)) for i in range(queued)]
    for t in others:
        t.start()
    wait_until_waiting(db, queued)
    release.set()
    for t in [lead, *others]:
        t.join()


def test_queued_writers_share_a_commit(conn: Conn, tmp_path: Path) -> None:
    """A writer holding the store while others queue: they all go in with one COMMIT."""
    commits = commits_counted(conn)
    queue_behind_one(conn, 5)
    assert len(commits) == 1
    assert committed(tmp_path / "s.sqlite") == {"first", *(f"k{i}" for i in range(5))}


def test_a_block_that_raises_loses_only_its_own_writes(conn: Conn, tmp_path: Path) -> None:
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with conn.write() as tx:
            tx.execute("INSERT INTO t VALUES ('kept-1', 1)")
            inside.set()
            release.wait(30)

    def failing() -> None:
        try:
            with conn.write() as tx:
                tx.execute("INSERT INTO t VALUES ('lost', 2)")
                tx.execute("INSERT INTO t VALUES ('kept-1', 3)")  # duplicate key: raises
        except sqlite3.IntegrityError as exc:
            errors.append(exc)

    def last() -> None:
        with conn.write() as tx:
            tx.execute("INSERT INTO t VALUES ('kept-2', 4)")

    lead = threading.Thread(target=first)
    lead.start()
    assert inside.wait(30)
    bad = threading.Thread(target=failing)
    bad.start()
    wait_until_waiting(conn, 1)
    good = threading.Thread(target=last)
    good.start()
    wait_until_waiting(conn, 2)
    release.set()
    for t in (lead, bad, good):
        t.join()
    assert len(errors) == 1
    assert committed(tmp_path / "s.sqlite") == {"kept-1", "kept-2"}


def test_a_failed_commit_is_raised_to_every_writer_of_its_batch(
    conn: Conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT refused (a constraint checked at commit: a deferred foreign key): every
    writer that shared it gets the error, none returns as if written, nothing is written."""
    conn.raw.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.raw.execute(
        "CREATE TABLE child (id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.raw.execute("PRAGMA foreign_keys = ON")
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def first() -> None:
        try:
            with conn.write() as tx:
                tx.execute("INSERT INTO t VALUES ('a', 1)")
                inside.set()
                release.wait(30)
            outcome["first"] = "returned"
        except sqlite3.Error as exc:
            outcome["first"] = type(exc).__name__

    def second() -> None:
        try:
            with conn.write() as tx:
                tx.execute("INSERT INTO child VALUES (42)")  # no parent 42: COMMIT fails
            outcome["second"] = "returned"
        except sqlite3.Error as exc:
            outcome["second"] = type(exc).__name__

    lead = threading.Thread(target=first)
    lead.start()
    assert inside.wait(30)
    other = threading.Thread(target=second)
    other.start()
    wait_until_waiting(conn, 1)
    release.set()
    lead.join()
    other.join()
    assert outcome == {"first": "IntegrityError", "second": "IntegrityError"}
    assert committed(tmp_path / "s.sqlite") == set()
    with conn.write() as tx:  # the store is usable afterwards
        tx.execute("INSERT INTO t VALUES ('after', 1)")
    assert committed(tmp_path / "s.sqlite") == {"after"}


def test_a_full_batch_commits_without_waiting_for_the_queue(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "GROUP_MAX", 2)
    commits = commits_counted(conn)
    queue_behind_one(conn, 5)
    assert len(commits) == 3  # 6 blocks, at most 2 per COMMIT


def test_a_read_racing_close_raises_the_closed_database_error(tmp_path: Path) -> None:
    """A read that waited for the reader connection while `close` dropped it reads on the
    closed writer and gets SQLite's own "closed database" error (what the API's 503 and the
    view's stale-status stream catch), never an AttributeError (#18 review)."""
    for _ in range(50):
        db = open_store(
            tmp_path / f"race-{_}.sqlite",
            name="t",
            what="test store",
            schema=SCHEMA,
            version=1,
            durable=False,
        )
        errors: list[BaseException] = []
        started = threading.Event()

        def reader(
            db: Conn = db,
            errors: list[BaseException] = errors,
            started: threading.Event = started,
        ) -> None:
            started.set()
            while True:
                try:
                    db.query("SELECT k FROM t")
                    db.data_version()
                except sqlite3.ProgrammingError:
                    return
                except BaseException as exc:
                    errors.append(exc)
                    return

        t = threading.Thread(target=reader)
        t.start()
        started.wait()
        db.close()
        t.join(timeout=10)
        assert not t.is_alive()
        assert errors == []

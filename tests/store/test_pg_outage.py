"""PostgreSQL going away under a store and a lease (a real server of its own, tests/pgserver.py,
stopped and started again by the test): a transaction cut off says it wrote nothing; one cut off
at its COMMIT says its outcome is unknown; the store's listeners are told either way; a
transaction begun while the server is away waits for it (bounded) and goes through; a node that
loses the database stops being active, its fence refusing without asking the database, and
takes the lease again with a new epoch once the database answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent.engine.lease import Lease, LeaseLoop, Timing
from agent.engine.store import Conn, open_store
from agent.errors import StateLostError
from tests.daemon.test_daemon_cli import wait_until
from tests.pgserver import PgServer, PgUnavailable, _in_ci, bin_dir


@pytest.fixture(scope="module")
def own_server() -> Iterator[PgServer]:
    """A server of this module's own: the tests stop it (never the session's shared one). In CI
    a missing server is a failure, never a skip (as the shared one, `pg_server`)."""
    try:
        bin_dir()
    except PgUnavailable as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL tests must run in CI: {exc}")
        pytest.skip(f"SKIPPED POSTGRESQL TEST: {exc}")
    with PgServer.start() as server:
        yield server


@pytest.fixture
def up(own_server: PgServer) -> PgServer:
    if own_server.pid is None:
        own_server.restart()
    return own_server


def store(url: str, wait_s: float = 20.0) -> Conn:
    return open_store(
        url,
        name="outage",
        what="test store",
        schema="CREATE TABLE IF NOT EXISTS x (a INTEGER)",
        version=1,
        durable=True,
        wait_s=wait_s,
    )


def values(c: Conn) -> list[int]:
    return [int(r[0]) for r in c.query("SELECT a FROM x ORDER BY a")]


def test_cut_mid_transaction_wrote_nothing_and_the_next_waits(up: PgServer) -> None:
    c = store(up.database())
    told: list[str] = []
    c.on_lost.append(told.append)
    try:
        with c.write() as tx:
            tx.execute("INSERT INTO x VALUES (1)")

        def cut_mid_way() -> None:
            with c.write() as tx:
                tx.execute("INSERT INTO x VALUES (2)")
                up.stop()
                tx.execute("INSERT INTO x VALUES (3)")

        with pytest.raises(StateLostError, match="this transaction wrote nothing"):
            cut_mid_way()
        assert len(told) == 1 and "cannot be reached" in told[0]
        threading.Timer(2.0, up.restart).start()  # back while the next transaction waits
        with c.write() as tx:
            tx.execute("INSERT INTO x VALUES (4)")
        assert values(c) == [1, 4]
    finally:
        c.close()


def test_cut_at_commit_says_the_outcome_is_unknown(up: PgServer) -> None:
    c = store(up.database())
    told: list[str] = []
    c.on_lost.append(told.append)
    try:

        def cut_at_commit() -> None:
            with c.write() as tx:
                tx.execute("INSERT INTO x VALUES (5)")
                up.stop()  # the block ends: its COMMIT goes to a dead connection

        with pytest.raises(StateLostError, match="whether it committed is unknown"):
            cut_at_commit()
        assert len(told) == 1
        up.restart()
        assert values(c) in ([], [5])  # either; the caller cannot know and does not guess
    finally:
        c.close()


def test_waiting_is_bounded(up: PgServer) -> None:
    c = store(up.database(), wait_s=1.0)
    try:
        up.stop()
        with pytest.raises(StateLostError, match=r"no live connection within 1 s.*wrote nothing"):
            c.query("SELECT 1")
    finally:
        c.close()


def test_a_node_that_loses_the_database_steps_down_then_takes_a_new_term(up: PgServer) -> None:
    url = up.database()
    lease = Lease(url, "node-a", Timing(bound_s=1.5))
    events: list[tuple[str, int]] = []
    loop = LeaseLoop(
        lease,
        on_active=lambda e: events.append(("active", e)),
        on_lost=lambda e, why: events.append(("lost", e)),
    )
    try:
        loop.start()
        assert events == [("active", 1)]
        fence = lease.fence(1)
        up.stop()
        loop.state_lost("test: a journal write lost its connection")
        assert events == [("active", 1), ("lost", 1)]
        assert not loop.holds()
        assert fence.revoked.is_set()  # refuses without asking the database
        up.restart()
        # the old term ended in the database, a new one taken (epoch 2), not the old one kept
        assert wait_until(lambda: ("active", 2) in events, timeout=30, step=0.1), events
        st = lease.state()
        assert st is not None and (st.holder, st.epoch) == ("node-a", 2)
        c = store(url)
        try:
            with c.write() as tx:  # the revoked fence refuses even though the database is back
                assert not fence.check(tx)
                assert lease.fence(2).check(tx)
        finally:
            c.close()
    finally:
        loop.stop()
        lease.close()


def test_renewals_failing_end_the_term_before_the_lease_can_run_out(up: PgServer) -> None:
    lease = Lease(up.database(), "node-a", Timing(bound_s=1.5))
    lost = threading.Event()
    loop = LeaseLoop(lease, on_active=lambda e: None, on_lost=lambda e, why: lost.set())
    try:
        loop.start()
        assert loop.holds()
        up.stop()
        assert lost.wait(timeout=30)
        assert not loop.holds() and lease.fence(1).revoked.is_set()
    finally:
        up.restart()
        loop.stop()
        lease.close()

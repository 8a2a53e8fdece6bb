"""The active/standby lease on the real throwaway PostgreSQL cluster: acquire, renew, expiry by the
database's clock, the epoch only growing, and the fenced journal write refused after a takeover."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.engine.journal import Journal, NewStep
from agent.engine.lease import Lease, Timing, node_id_problem
from agent.errors import FencedError
from agent.network.state import NORMAL
from agent.status import StepStatus
from tests.pgserver import PgServer

# tiny bound: the lease lives 0.4 s (2/3), fenced writes need 0.1 s of it left (1/6)
QUICK = Timing(bound_s=0.6)


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.database()


def _expire(lease: Lease) -> None:
    """Wait until the DATABASE says the lease expired (its clock, not ours)."""
    for _ in range(200):
        st = lease.state()
        if st is None or not st.live:
            return
        time.sleep(0.05)
    raise AssertionError("the lease never expired")


def test_first_acquire_is_epoch_1_and_a_live_lease_is_not_taken(url: str) -> None:
    a, b = Lease(url, "node-a", Timing()), Lease(url, "node-b", Timing())
    try:
        assert a.acquire() == 1
        assert b.acquire() is None  # a holds it for 6.7 s
        assert a.acquire() is None  # even a itself: it renews, it does not re-take
        st = a.state()
        assert st is not None
        assert (st.holder, st.epoch, st.taken_from) == ("node-a", 1, None)
        assert st.live
        assert a.renew(1)
        assert not b.renew(1)  # b is not the holder
    finally:
        a.close()
        b.close()


def test_expiry_by_the_database_clock_and_the_epoch_grows(url: str) -> None:
    a, b = Lease(url, "node-a", QUICK), Lease(url, "node-b", QUICK)
    try:
        assert a.acquire() == 1
        _expire(a)
        assert not a.renew(1)  # expired: renewing is refused, the holder must re-acquire
        assert b.acquire() == 2
        st = b.state()
        assert st is not None
        assert (st.holder, st.epoch, st.taken_from) == ("node-b", 2, "node-a")
        assert b.step_down(2)  # ends at once
        assert not b.step_down(2)
        assert a.acquire() == 3  # a new holder always a new epoch, even a former one
    finally:
        a.close()
        b.close()


def _one_step_run(j: Journal) -> None:
    step = NewStep(1, "s1", "isolate", "fw1", "nft", ("add rule",), ("del rule",), NORMAL, NORMAL)
    j.start_run("r1", "pb", "L1", ["s1"], "alice", [step])


def test_a_fenced_step_write_is_refused_after_a_takeover(url: str) -> None:
    a, b = Lease(url, "node-a", QUICK), Lease(url, "node-b", QUICK)
    j = Journal(url)
    try:
        _one_step_run(j)
        epoch = a.acquire()
        assert epoch == 1
        j.fence = a.fence(epoch)
        j.mark("r1", 1, StepStatus.STARTED)  # held: written
        j.mark("r1", 1, StepStatus.PENDING)
        _expire(a)
        assert b.acquire() == 2
        with pytest.raises(FencedError) as exc:
            j.mark("r1", 1, StepStatus.STARTED)
        assert "node-a" in exc.value.message and "epoch 1" in exc.value.message
        assert j.steps("r1")[0].status == StepStatus.PENDING  # nothing written
        j.fence = b.fence(2)  # the new holder writes
        j.mark("r1", 1, StepStatus.STARTED)
        assert j.steps("r1")[0].status == StepStatus.STARTED
    finally:
        j.close()
        a.close()
        b.close()


def test_a_fenced_write_needs_the_margin_left(url: str) -> None:
    """Within margin_s of its expiry a lease no longer covers a write (the pause between the
    write and the device command must end before any standby can take over)."""
    a = Lease(url, "node-a", Timing(bound_s=0.6))
    j = Journal(url)
    try:
        _one_step_run(j)
        epoch = a.acquire()
        assert epoch is not None
        # a fence demanding more than the whole lease: refused although the lease is live
        j.fence = type(a.fence(epoch))("node-a", epoch, margin_s=60.0)
        with pytest.raises(FencedError):
            j.mark("r1", 1, StepStatus.STARTED)
        assert a.state() is not None and a.state().live  # type: ignore[union-attr]
    finally:
        j.close()
        a.close()


def test_node_ids() -> None:
    assert node_id_problem("db1:4242") is None
    assert node_id_problem("") is not None
    assert node_id_problem("a b") is not None
    assert node_id_problem("x;rm") is not None


def test_sqlite_journal_has_no_fence(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite")
    try:
        assert j.fence is None
        _one_step_run(j)
        j.mark("r1", 1, StepStatus.STARTED)
    finally:
        j.close()

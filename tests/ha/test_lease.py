"""The active/standby lease on the real throwaway PostgreSQL cluster: acquire, renew, expiry by the
database's clock, the epoch only growing, and the fenced journal write refused after a takeover."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent import settings
from agent.engine.journal import Journal, NewStep
from agent.engine.lease import Lease, LeaseLoop, Timing
from agent.errors import ConfigError, FencedError
from agent.network.state import NORMAL
from agent.settings import node_id_problem
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


def test_a_driver_of_an_earlier_epoch_drives_nothing(url: str) -> None:
    """A run claimed under epoch 1 (its process frozen, still alive) is not driven any more once
    this node holds epoch 2: a rollback ordered on the new active node does not wait for it."""
    a, b = Lease(url, "node-a", QUICK), Lease(url, "node-b", QUICK)
    j = Journal(url)
    try:
        _one_step_run(j)
        j.fence = a.fence(1 if a.acquire() == 1 else 0)
        j.claim_driver("r1")
        assert j.run("r1").driver is not None  # this live process, epoch 1
        assert j.run("r1").driver["epoch"] == 1  # type: ignore[index]
        _expire(a)
        assert b.acquire() == 2
        j.fence = b.fence(2)
        assert j.run("r1").driver is None
        j.claim_driver("r1")
        assert j.run("r1").driver is not None
    finally:
        j.close()
        a.close()
        b.close()


def test_the_loop_takes_the_lease_and_a_fenced_write_makes_it_step_down(url: str) -> None:
    events: list[tuple[str, int]] = []
    # a bound of 30 s: the loop's thread makes no second try during the test (renew every 10 s)
    a = Lease(url, "node-a", Timing(bound_s=30.0))
    loop = LeaseLoop(
        a,
        on_active=lambda e: events.append(("active", e)),
        on_lost=lambda e, why: events.append((why, e)),
    )
    j = Journal(url)
    try:
        loop.start()  # the first try is made at once
        assert loop.role == "active" and loop.holds()
        assert events == [("active", 1)]
        j.fence = a.fence(1)
        j.on_fenced = lambda epoch: loop.lost(epoch, "fenced")
        # the process was frozen: by its own clock its lease may have run out
        loop.renewed -= a.timing.ttl_s
        assert not loop.holds()
        _one_step_run(j)  # still written: the database says the lease stands
        # another node forces a takeover (the lease ended in the database)
        assert a.step_down(1)
        b = Lease(url, "node-b", Timing(bound_s=30.0))
        assert b.acquire() == 2
        b.close()
        with pytest.raises(FencedError):
            j.mark("r1", 1, StepStatus.STARTED)
        assert events == [("active", 1), ("fenced", 1)]
        loop.lost(1, "again")  # said once
        assert events == [("active", 1), ("fenced", 1)]
        assert loop.role == "standby" and not loop.holds()
    finally:
        loop.stop()
        j.close()
        a.close()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CORDON_NODE_ID": "a b"}, "CORDON_NODE_ID='a b' cannot be used"),
        ({"CORDON_NODE_ID": "x;reboot"}, "CORDON_NODE_ID='x;reboot' cannot be used"),
        ({"CORDON_FAILOVER_S": "0.1"}, "CORDON_FAILOVER_S must be 0.3 or more"),
        ({"CORDON_FAILOVER_S": "ten"}, "CORDON_FAILOVER_S='ten' is not a number of seconds"),
    ],
)
def test_bad_ha_settings_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings.load(env)
    assert words in exc.value.message
    assert exc.value.exit_code == 2


def test_ha_settings_read() -> None:
    got = settings.load({"CORDON_NODE_ID": "db1-cordon", "CORDON_FAILOVER_S": "4.5"})
    assert (got.node_id, got.failover_s) == ("db1-cordon", 4.5)
    assert Timing(got.failover_s).ttl_s == 3.0 and Timing(got.failover_s).renew_s == 1.5
    default = settings.load({})
    assert (default.node_id, default.failover_s) == (None, 10.0)

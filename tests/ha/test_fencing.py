"""The fence's edges (review 7: F2, F3, F5, F12), on the real throwaway PostgreSQL cluster where a
lease or a journal is involved, against a scripted fake switch (tests/engine/fakes.py) where a
device command is:

- F5: a node frozen inside a fenced journal transaction (it holds the lease row FOR SHARE) does
  not keep a standby from taking the lease: the server ends its session; a lease statement waits
  for the row no longer than its bound.
- F12: no command goes out once the term is past its local deadline (the lease not renewed in
  time by this process's clock), even if the journal write before it went through: checked
  once the device's session is in hand (it may have been waited for).
- F3: the audit trail failing right after a command (the drivers audit after sending) sends
  nothing more: no restore, no confirmation (the armed on-device revert puts the device back);
  a trail that says this node was deposed (`AuditFenced`) steps the node down.
- F2: a fence belongs to a term: a thread of term 1 is refused once term 1 ended, even while the
  node holds term 2.
- An undo refused by the fence is left in flight (`undoing`) for the active node, as a forward
  step is, never marked `undo_failed`. (The poller's re-apply: tests/ha/test_fencing_poll.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent.audit.pgchain import AuditFenced
from agent.drivers.base import ChangeSet, Target, Timeouts, Via
from agent.drivers.pool import Pool
from agent.engine.journal import Journal, NewStep, StepRow
from agent.engine.lease import Fence, Lease, Timing
from agent.errors import AuditArmed, AuditError, CordonError, FencedError, StateLostError
from agent.inventory import load
from agent.network.state import NORMAL
from agent.playbook import load as load_playbook
from agent.run import transaction
from agent.run.context import Context
from agent.run.executor import Executor
from agent.run.observer import Observer
from agent.status import StepStatus
from tests.conftest import EXAMPLE
from tests.engine.fakes import FakeSwitch, World
from tests.pgserver import PgServer

DEVICE = "nts-sw1"
LINES = ("interface GigabitEthernet1/0/5", "shutdown")
BACK = ("interface GigabitEthernet1/0/5", "no shutdown")


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.database()


def _expire(lease: Lease) -> None:
    """Wait until the DATABASE says the lease expired (its clock, not ours)."""
    for _ in range(400):
        st = lease.state()
        if st is None or not st.live:
            return
        time.sleep(0.05)
    raise AssertionError("the lease never expired")


def _one_step_run(j: Journal) -> None:
    step = NewStep(1, "s1", "isolate", DEVICE, "nft", LINES, BACK, NORMAL, NORMAL)
    j.start_run("r1", "pb", "L1", ["s1"], "alice", [step])


# -- F5: a frozen node does not hold the lease row ------------------------------------------------


def test_a_node_frozen_inside_a_fenced_write_does_not_block_the_takeover(url: str) -> None:
    timing = Timing(bound_s=3.0)  # lease 2 s; a fenced transaction idle 1 s is ended
    a, b = Lease(url, "node-a", timing), Lease(url, "node-b", timing)
    j = Journal(url)
    entered, wake = threading.Event(), threading.Event()
    frozen: list[BaseException] = []
    try:
        _one_step_run(j)
        assert a.acquire() == 1
        j.fence = a.fence(1)
        lost: list[str] = []
        j.db.on_lost.append(lost.append)

        def freeze_mid_write() -> None:
            try:
                with j.tx() as db:  # the fence checked: the lease row held FOR SHARE
                    entered.set()
                    wake.wait(120)  # frozen (SIGSTOP) before the rest of the write
                    db.execute("UPDATE steps SET status='started' WHERE run_id='r1'")
            except BaseException as exc:
                frozen.append(exc)

        holder = threading.Thread(target=freeze_mid_write, daemon=True)
        holder.start()
        assert entered.wait(30)
        _expire(a)  # reads are not blocked by the row lock
        got: list[int | None] = []
        taker = threading.Thread(target=lambda: got.append(b.acquire()), daemon=True)
        taker.start()
        taker.join(60)  # before the fix: blocked until the frozen node woke (120 s)
        assert got == [2], "the standby's acquire waited on the frozen node's transaction"
        assert not wake.is_set()  # taken while node-a was still frozen
        wake.set()
        holder.join(30)
        # woken, node-a's write fails: its session was ended, nothing of it written
        assert len(frozen) == 1 and isinstance(frozen[0], StateLostError), frozen
        assert "idle-in-transaction" in frozen[0].message
        assert "wrote nothing" in frozen[0].message
        assert len(lost) == 1  # the node is told (it steps down: `Service._state_lost`)
        assert j.steps("r1")[0].status == StepStatus.PENDING
    finally:
        wake.set()
        j.close()
        a.close()
        b.close()


def test_a_lease_statement_waits_for_the_row_within_its_bound(url: str) -> None:
    """Whatever holds the lease row (here: a session of its own, no timeout), the lease loop's
    statement gives up within its bound, so the loop keeps its beat."""
    a = Lease(url, "node-a", Timing(bound_s=3.0))
    try:
        assert a.acquire() == 1
        with psycopg.connect(url) as other:
            other.execute("SELECT 1 FROM cordon_lease WHERE name = 'active' FOR UPDATE")
            done: list[object] = []

            def renew() -> None:
                try:
                    done.append(a.renew(1))
                except CordonError as exc:
                    done.append(exc)

            t = threading.Thread(target=renew, daemon=True)
            t.start()
            t.join(60)  # before the fix: waits as long as the other session holds the row
            assert len(done) == 1, "the renewal waited on the row past its bound"
            assert isinstance(done[0], StateLostError)
            assert "timeout" in done[0].message  # the lock waited for, or the statement
            other.rollback()
        assert a.renew(1)  # the row free again: renewed
    finally:
        a.close()


# -- F12: the local deadline, checked right before the command ------------------------------------


def test_acquire_and_renew_set_the_local_deadline(url: str) -> None:
    timing = Timing(bound_s=30.0)
    a = Lease(url, "node-a", timing)
    try:
        fence = Fence("node-a", 1, timing.margin_s)
        assert not fence.live()  # never acquired: no command may go out
        assert a.acquire() == 1
        fence = a.fence(1)
        first = fence.left_s()
        assert fence.live() and first <= timing.ttl_s - timing.margin_s
        time.sleep(0.05)
        assert a.renew(1)
        assert fence.left_s() > first - 0.05  # moved forward (from the renewal's time)
        a.revoke(1)
        assert not fence.live()
    finally:
        a.close()


class DeadManSwitch(FakeSwitch):
    """The scripted switch with an on-device revert timer (as IOS's `configure replace`)."""

    def __init__(self, target: Target, world: World, via: Via, acts: list[str]) -> None:
        super().__init__(target, world, via)
        self.acts = acts

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        self.acts.append(f"arm {seconds:g}")
        return "token-1"

    def confirm(self, token: str) -> bool:
        self.acts.append(f"confirm {token}")
        return True


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Context, World, list[str], list[int], StepRow]]:
    """A SQLite journal with a fence live for a minute (no database asked: only the local
    checks before a command are exercised), a pool of scripted switches with a timer."""
    inv = load(EXAMPLE)
    world, acts, told = World(), list[str](), list[int]()
    j = Journal(tmp_path / "journal.sqlite")
    _one_step_run(j)
    row = j.steps("r1")[0]
    fence = Fence("node-a", 1, 0.5)
    fence.extend(time.monotonic() + 60)
    j.fence, j.on_fenced = fence, told.append

    def factory(target: Target, timeouts: Timeouts, via: Via) -> DeadManSwitch:
        return DeadManSwitch(target, world, via, acts)

    with Pool(inv, keepalive=None, factory=factory) as pool:
        ctx = Context(inv, j, pool, "alice", (), Observer(j), deadman=30.0)
        yield ctx, world, acts, told, row
    j.close()


def _guarded(ctx: Context, row: StepRow) -> None:
    transaction.guarded(ctx, row, LINES, NORMAL, NORMAL, revert=BACK, guard=True, action="isolate")


def test_nothing_is_sent_after_the_local_deadline_passed_while_waiting_for_the_session(
    setup: tuple[Context, World, list[str], list[int], StepRow],
) -> None:
    ctx, world, acts, told, row = setup
    fence = ctx.journal.fence
    assert fence is not None
    fence.until._at = time.monotonic() + 0.3  # renewed 1.7 s ago (bound 3 s), none since
    holding, done = threading.Event(), threading.Event()

    def hold_the_session() -> None:  # the poller's or a backup's, at that moment
        with ctx.pool.session(DEVICE):
            holding.set()
            while fence.live():
                time.sleep(0.02)
        done.set()

    threading.Thread(target=hold_the_session, daemon=True).start()
    assert holding.wait(30)
    with pytest.raises(FencedError) as exc:
        _guarded(ctx, row)  # waits for the session, then finds the deadline passed
    assert done.is_set()
    assert "not sent" in exc.value.message and "epoch 1" in exc.value.message
    assert acts == [] and world.log == []  # no timer armed, no change: nothing sent
    assert told == [1]  # this node steps down


def test_a_live_fence_sends(setup: tuple[Context, World, list[str], list[int], StepRow]) -> None:
    ctx, world, acts, told, row = setup
    _guarded(ctx, row)
    assert acts == ["arm 30", "confirm token-1"]
    assert world.log == [f"{DEVICE}: {' / '.join(LINES)}"]
    assert told == []


# -- F3: the trail failing right after a command --------------------------------------------------


def _trail_fails(world: World, exc: AuditError) -> None:
    def fail(device: str) -> None:  # the driver's `device.change` record, after the command
        raise exc

    world.after_apply = fail


def test_a_deposed_trail_after_a_command_sends_nothing_more_and_steps_down(
    setup: tuple[Context, World, list[str], list[int], StepRow],
) -> None:
    ctx, world, acts, told, row = setup
    _trail_fails(world, AuditFenced("audit record refused: the lease is held by node-b"))
    with pytest.raises(FencedError) as exc:
        _guarded(ctx, row)
    assert "node-b" in exc.value.message
    assert world.log == [f"{DEVICE}: {' / '.join(LINES)}"]  # the change, no restore after it
    assert acts == ["arm 30"]  # never confirmed: the device's timer puts it back
    assert told == [1]  # this node steps down, as for a fenced journal write


def test_a_trail_that_cannot_be_written_after_a_command_sends_nothing_more(
    setup: tuple[Context, World, list[str], list[int], StepRow],
) -> None:
    ctx, world, acts, told, row = setup
    _trail_fails(world, AuditError("cannot write the audit trail to PostgreSQL: down"))
    with pytest.raises(AuditArmed) as exc:
        _guarded(ctx, row)
    assert "puts it back in its fail-safe state by itself" in exc.value.message
    assert world.log == [f"{DEVICE}: {' / '.join(LINES)}"]
    assert acts == ["arm 30"]
    assert told == []  # the database is away, not taken: the journal's own loss says so


def test_a_deposed_trail_mid_step_leaves_the_step_in_flight(
    setup: tuple[Context, World, list[str], list[int], StepRow],
) -> None:
    """Through `apply`: the step is journaled started, then nothing more of it is written."""
    ctx, world, _acts, told, row = setup
    ctx.journal.fence = None  # SQLite: the journal writes are not fenced; the trail is
    _trail_fails(world, AuditFenced("audit record refused: the lease is held by node-b"))
    with pytest.raises(FencedError):
        transaction.apply(ctx, row)
    assert ctx.journal.steps("r1")[0].status == StepStatus.STARTED  # for `resume` to read
    assert world.log == [f"{DEVICE}: {' / '.join(LINES)}"]  # the change; nothing after it
    assert told == []  # no fence here: the journal's own refusals step a fenced node down


# -- F2: a fence per term ------------------------------------------------------------------------


def test_a_thread_of_an_ended_term_is_refused_under_the_next(url: str) -> None:
    a = Lease(url, "node-a", Timing(bound_s=30.0))
    j = Journal(url)
    told: list[int] = []
    try:
        _one_step_run(j)
        assert a.acquire() == 1
        j.fence, j.on_fenced = a.fence(1), told.append
        term1 = j.for_term(j.fence)  # a run's thread of term 1 (`Service.proceed`)
        term1.mark("r1", 1, StepStatus.STARTED)
        term1.mark("r1", 1, StepStatus.PENDING)
        # term 1 ends (a state loss), the node takes the lease again: term 2
        a.revoke(1)
        assert a.step_down(1)
        assert a.acquire() == 2
        j.fence = a.fence(2)  # what `Service._activate` does
        with pytest.raises(FencedError) as exc:
            term1.mark("r1", 1, StepStatus.STARTED)
        assert "epoch 1" in exc.value.message
        with pytest.raises(FencedError):
            term1.may_send(f"isolate on {DEVICE}")
        assert told == [1, 1]
        assert j.steps("r1")[0].status == StepStatus.PENDING  # nothing written by term 1
        j.for_term(j.fence).mark("r1", 1, StepStatus.STARTED)  # term 2's threads write
        assert j.steps("r1")[0].status == StepStatus.STARTED
    finally:
        j.close()
        a.close()


# -- an undo refused by the fence stays in flight -------------------------------------------------


def test_an_undo_refused_by_the_fence_stays_in_flight_for_the_active_node(
    url: str, tmp_path: Path
) -> None:
    """As a forward step: an undo whose command is refused (`FencedError`: the term is past its
    local deadline, though the database still says the lease stands, so the journal's writes go
    through) is not marked `undo_failed`, a result nobody read from the device: it stays
    `undoing` for the active node's `resume` to settle from the device; nothing is sent."""
    inv = load(EXAMPLE)
    world, told = World(), list[int]()
    a = Lease(url, "node-a", Timing(bound_s=30.0))
    j = Journal(url)
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
    )
    try:
        assert a.acquire() == 1
        j.fence, j.on_fenced = a.fence(1), told.append
        with Pool(inv, keepalive=None, factory=world.factory) as pool:
            ex = Executor(inv, j.for_term(j.fence), pool, actor="alice")
            run = ex.run(load_playbook(pb_path, inv), ["nantes-jules-verne"])
            assert run.status == "done"
            (port,) = world.down[DEVICE]
            world.log.clear()
            fence = j.fence
            fence.until._at = time.monotonic() - 1.0  # not renewed in time by this clock
            with pytest.raises(FencedError) as exc:
                ex.rollback(run.run_id)  # before the fix: rollback_failed, the step undo_failed
        assert "not sent" in exc.value.message
        [step] = j.steps(run.run_id)
        assert step.status == StepStatus.UNDOING  # for `resume` to read from the device
        assert world.log == [] and world.down[DEVICE] == {port}  # nothing sent
        assert told == [1]  # this node steps down
    finally:
        j.close()
        a.close()

"""The drift poller's re-application (`on_drift: reapply`) is fenced as a run's steps are: the
daemon's poll is bound to the term it started in, and each re-apply command is checked right
before it is sent, the device's session in hand (`Journal.may_send`). On the real throwaway
PostgreSQL cluster (the lease, the journal), through the daemon's `Service.poll`, against the
scripted fake switch (tests/engine/fakes.py):

- a poll whose term ended while it was reading (the node took the lease again: term 2) sends
  nothing: its re-apply is refused, the node is told (it steps down), the refusal is audited;
- a poll whose term is past its local deadline (the lease not renewed in time by this node's
  clock) sends nothing either, even though the database still says the lease stands."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.drivers.base import Facts, Target, Timeouts, Via
from agent.drivers.pool import Pool
from agent.engine.lease import Lease, Timing
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.service.service import Service
from tests.conftest import EXAMPLE
from tests.daemon.fakes import records
from tests.engine.fakes import FakeSwitch, World
from tests.pgserver import PgServer

SITE, SWITCH = "nantes-jules-verne", "nts-sw1"


class HookedSwitch(FakeSwitch):
    """The scripted switch; `hook` (once) runs when the poller reads its interfaces."""

    hook: list[Callable[[], None]]

    def facts(self) -> Facts:
        while self.hook:
            self.hook.pop()()
        return super().facts()


@dataclass
class Rig:
    svc: Service
    lease: Lease
    world: World
    told: list[int]
    log_dir: Path
    port: str
    hook: list[Callable[[], None]]  # run once when the poller reads nts-sw1

    def events(self, name: str) -> list[dict[str, Any]]:
        return records(self.log_dir, name)


@pytest.fixture
def rig(pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """A daemon's service on a fresh database, active with epoch 1 (its journal fenced, as
    `Service._activate` does), its pool of scripted switches; an `on_drift: reapply` run
    has shut the admin zone's port on nts-sw1, then someone re-enabled it by hand."""
    url = pg_server.database()  # a fresh database
    monkeypatch.setenv("CORDON_STATE_URL", url)
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    svc = Service(EXAMPLE, tmp_path / "state", scheduler=False)
    lease = Lease(url, "node-a", Timing(bound_s=30.0))
    world, told = World(), list[int]()
    hook: list[Callable[[], None]] = []

    def factory(target: Target, timeouts: Timeouts, via: Via) -> HookedSwitch:
        sw = HookedSwitch(target, world, via)
        sw.hook = hook if target.name == SWITCH else []
        return sw

    svc.pool.close()
    svc.pool = svc.poller.pool = Pool(svc.inv, keepalive=None, factory=factory)
    try:
        assert lease.acquire() == 1
        svc.journal.fence, svc.journal.on_fenced = lease.fence(1), told.append
        pb_path = tmp_path / "q.yaml"
        pb_path.write_text(
            "name: q\nlevel: L4\non_drift: reapply\nsteps:\n"
            "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
        )
        run = Executor(svc.inv, svc._term(), svc.pool, actor="alice").run(
            load_playbook(pb_path, svc.inv), [SITE]
        )
        assert run.status == "done"
        (port,) = world.down[SWITCH]
        world.down[SWITCH].clear()  # re-enabled by hand: a repairable drift
        world.log.clear()
        yield Rig(svc, lease, world, told, log_dir, port, hook)
    finally:
        svc.pool.close()
        svc.poller.close()
        svc.journal.close()
        svc.health.close()
        lease.close()
        audit.close()


def test_the_rig_reapplies_while_its_term_is_live(rig: Rig) -> None:
    """The control: the same poll under a live term re-applies the cut."""
    rig.svc.poll()
    assert rig.world.log == [f"{SWITCH}: interface {rig.port} / shutdown"]
    assert rig.world.down[SWITCH] == {rig.port}
    assert [e["outcome"] for e in rig.events("drift.reapplied")] == ["ok"]
    assert rig.told == []


def test_a_polls_reapply_is_refused_once_the_term_it_started_in_ended(rig: Rig) -> None:
    def takeover() -> None:  # while the poll reads: term 1 ends, the node takes term 2
        rig.lease.revoke(1)
        assert rig.lease.step_down(1)
        assert rig.lease.acquire() == 2
        rig.svc.journal.fence = rig.lease.fence(2)  # what `Service._activate` does

    rig.hook.append(takeover)
    rig.svc.poll()
    assert rig.svc.journal.fence is not None and rig.svc.journal.fence.epoch == 2
    assert rig.world.log == []  # before the fix: term 2's fence let term 1's poll send it
    assert rig.world.down[SWITCH] == set()
    assert rig.told == [1]  # this node steps down from the term the poll belonged to
    [refused] = rig.events("drift.reapplied")
    assert refused["outcome"] == "fenced" and "epoch 1" in refused["error"]
    assert [a.reapplied for a in rig.svc.health.open_alarms(SWITCH)] == [0]


def test_a_polls_reapply_is_not_sent_past_the_local_deadline(rig: Rig) -> None:
    fence = rig.svc.journal.fence
    assert fence is not None
    # renewed too long ago by this node's clock; the database still says the lease stands,
    # so the journal write before the command goes through: only the check before it refuses
    fence.until._at = time.monotonic() - 1.0
    rig.svc.poll()
    assert rig.world.log == []  # before the fix: sent
    assert rig.world.down[SWITCH] == set()
    assert rig.told == [1]
    [refused] = rig.events("drift.reapplied")
    assert refused["outcome"] == "fenced"
    assert f"drift re-apply on {SWITCH} not sent" in refused["error"]

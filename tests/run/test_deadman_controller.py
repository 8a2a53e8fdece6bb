"""Fail-closed without an on-device timer: when an IOS switch is lost right after a reopening
command, the controller re-applies the cut as soon as the switch answers again, and the undo is
reported as failed (never as done); the audit trail records what the controller did. Runs
against a scripted fake switch, no twin."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.audit.pipeline import current_source
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import PlaybookError, RunError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import EXAMPLE
from tests.engine.fakes import World
from tests.pgserver import Where


def test_lost_switch_during_reopen_is_closed_again(tmp_path: Path, state_where: Where) -> None:
    """Undo of a port quarantine loses the switch: the controller re-shuts the ports."""
    inv = load(EXAMPLE)
    world = World()
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
    )
    pb = load_playbook(pb_path, inv)

    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        ex.deadman = 10
        run = ex.run(pb, ["nantes-jules-verne"])
        assert run.status == "done"
        (port,) = world.down["nts-sw1"]
        world.lost_calls_after_reopen = 2  # the switch drops off right after `no shutdown`
        back = ex.rollback(run.run_id)
    assert back.status == "rollback_failed"
    (undo,) = back.outcomes
    assert undo.status == "undo_failed"
    assert world.down["nts-sw1"] == {port}  # closed again: it failed closed
    assert world.log[-1] == f"nts-sw1: interface {port} / shutdown"
    acts = [
        r["event"]
        for r in current_source().records()
        if r.get("run_id") == run.run_id and str(r.get("event")).startswith("deadman.")
    ]
    assert acts == ["deadman.controller", "deadman.reverted"]  # the trail says what it did
    # the journal still records the quarantine, the run keeps its site, and a later rollback
    # (once the switch answers again) retries the failed undo
    assert journal.device_states()["nts-sw1"].down_interfaces == {port}
    assert journal.sites()["nantes-jules-verne"].mode == "isolated"
    assert journal.run(run.run_id).status == "rollback_failed"
    assert journal.locks() == {"nantes-jules-verne": run.run_id}
    world.lost_calls_after_reopen = 0
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        again = Executor(inv, journal, pool, actor="t").rollback(run.run_id)
    assert again.status == "rolled_back"
    assert world.down["nts-sw1"] == set()
    assert journal.run(run.run_id).status == "rolled_back"
    assert journal.locks() == {}
    assert journal.sites()["nantes-jules-verne"].mode == "normal"
    journal.close()


def zone_ports(inv: Inventory, site: str, zone: str) -> list[str]:
    """The access ports of a zone, as the inventory lists them."""
    found = inv.site(site)
    z = found.zone(zone) if found else None
    assert z is not None, f"{site}/{zone}"
    return [p.interface for p in z.ports]


def quarantine(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "q.yaml"
    path.write_text(
        "name: q\nlevel: L4\n" + extra + "steps:\n"
        "  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
        "  - {name: guest, action: shut_zone_ports, zones: [guest]}\n"
    )
    return path


def test_failure_rolls_the_site_back(tmp_path: Path, state_where: Where) -> None:
    """A rejected second step with on_failure rollback undoes the first: the site is as before."""
    inv = load(EXAMPLE)
    (guest_port,) = zone_ports(inv, "nantes-jules-verne", "guest")
    world = World(reject={"nts-sw1": guest_port})
    pb = load_playbook(quarantine(tmp_path, "on_failure: rollback\n"), inv)
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        run = Executor(inv, journal, pool, actor="t").run(pb, ["nantes-jules-verne"])
    assert run.status == "rolled_back"
    # the rejected step is undone too: a read-back shows it changed nothing, so nothing is sent
    assert [(o.seq, o.status) for o in run.outcomes] == [
        (1, "verified"),
        (1, "undone"),
        (2, "failed"),
        (2, "undone"),
    ]
    assert world.down["nts-sw1"] == set()  # the admin port is open again
    assert journal.device_states()["nts-sw1"].down_interfaces == frozenset()
    assert journal.sites()["nantes-jules-verne"].mode == "normal"
    journal.close()


def test_waves_finish_each_step_everywhere_first(tmp_path: Path, state_where: Where) -> None:
    """order: waves applies a step on every site before any site starts the next step."""
    inv = load(EXAMPLE)
    world = World()
    pb = load_playbook(quarantine(tmp_path, "order: waves\n"), inv)
    # switches whose shut lines the scripted switch reads (`interface X` / `shutdown`): IOS,
    # AOS-CX, IOS-XE
    sites = ["nantes-jules-verne", "fontenay-sud-vendee", "bretagne-etab-2"]
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        run = Executor(inv, journal, pool, actor="t").run(pb, sites)
    journal.close()
    assert run.status == "done"
    admin_ports = {port for site in sites for port in zone_ports(inv, site, "admin")}
    kinds = [
        "admin" if line.split(" / ")[0].split()[-1] in admin_ports else "guest"
        for line in world.log
    ]
    assert kinds == ["admin"] * len(sites) + ["guest"] * len(sites)


def test_device_level_targets_refused(tmp_path: Path) -> None:
    """Playbook targets choose sites only; a device-level criterion is refused, not ignored."""
    inv = load(EXAMPLE)
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nlevel: L1\ntargets: {roles: [core_switch]}\nsteps:\n"
        "  - {name: a, action: cut_link, kinds: [internet]}\n"
    )
    with pytest.raises(PlaybookError, match=r"targets\.roles.*unknown key"):
        load_playbook(path, inv)


def test_rollback_undoes_the_half_applied_failing_step(tmp_path: Path, state_where: Where) -> None:
    """A step applied but not confirmed by read-back is undone too when the site rolls back."""
    inv = load(EXAMPLE)
    (guest_port,) = zone_ports(inv, "nantes-jules-verne", "guest")
    world = World(unverifiable={"nts-sw1": guest_port})
    pb = load_playbook(quarantine(tmp_path, "on_failure: rollback\n"), inv)
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        run = Executor(inv, journal, pool, actor="t").run(pb, ["nantes-jules-verne"])
    assert run.status == "rolled_back"
    assert world.down["nts-sw1"] == set()  # the guest port the device did shut is open again
    assert journal.device_states()["nts-sw1"].down_interfaces == frozenset()
    journal.close()


def test_rolling_back_an_older_run_is_refused(tmp_path: Path, state_where: Where) -> None:
    """A run whose device a later run changed cannot be rolled back before that later run."""
    inv = load(EXAMPLE)
    world = World()
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(
        "name: a\nlevel: L4\nsteps:\n  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
    )
    second.write_text(
        "name: b\nlevel: L4\nsteps:\n  - {name: guest, action: shut_zone_ports, zones: [guest]}\n"
    )
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        run_a = ex.run(load_playbook(first, inv), ["nantes-jules-verne"])
        run_b = ex.run(load_playbook(second, inv), ["nantes-jules-verne"])
        with pytest.raises(RunError, match=f"changed since by run {run_b.run_id}"):
            ex.rollback(run_a.run_id)
        assert len(world.down["nts-sw1"]) == 2  # nothing was touched by the refusal
        assert ex.rollback(run_b.run_id).status == "rolled_back"
        assert ex.rollback(run_a.run_id).status == "rolled_back"
    assert world.down["nts-sw1"] == set()
    journal.close()

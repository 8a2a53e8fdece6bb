"""A platform is one folder: a toy switch platform that lives only in tests/platforms/toy/ is
registered, planned for and applied through the real planner, executor and pool, and rolled
back; nothing outside its folder names it (the inventory device is switched to it in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.platforms import registry
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import EXAMPLE
from tests.platforms import toy
from tests.platforms.toy.driver import Switches

SITE, SWITCH, ZONE = "nantes-jules-verne", "nts-sw1", "admin"


@pytest.fixture
def switches() -> Iterator[Switches]:
    world = Switches()
    registry.register(toy.spec(world))
    yield world
    registry.unregister(toy.NAME)


def on_toy(inv: Inventory, device: str) -> Inventory:
    """`inv` with `device` on the toy platform (the inventory's platform list is a closed enum,
    so the test changes the loaded model, not the file)."""
    sites = []
    for site in inv.sites:
        devices = tuple(
            d.model_copy(update={"platform": toy.NAME}) if d.name == device else d
            for d in site.devices
        )
        sites.append(site.model_copy(update={"devices": devices}))
    return inv.model_copy(update={"sites": tuple(sites)})


def zone_ports(inv: Inventory) -> list[str]:
    site = inv.site(SITE)
    zone = site.zone(ZONE) if site else None
    assert zone is not None
    return sorted(p.interface for p in zone.ports if p.device == SWITCH)


def test_a_toy_platform_plans_applies_and_rolls_back_through_its_own_folder(
    tmp_path: Path, switches: Switches
) -> None:
    """The toy's renderer writes the plan's commands, its driver receives and verifies them,
    and the rollback reopens the ports on the scripted device."""
    inv = on_toy(load(EXAMPLE), SWITCH)
    ports = zone_ports(inv)
    assert ports
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        f"  - {{name: quarantine, action: shut_zone_ports, zones: [{ZONE}]}}\n"
    )
    pb = load_playbook(pb_path, inv)

    planned = plan(pb, inv, sites=[SITE])
    (change,) = [c for c in planned.changes if c.device == SWITCH]
    assert change.method == "cli"
    assert change.commands == tuple(f"port {p} disable" for p in ports)
    assert change.undo == tuple(f"port {p} enable" for p in ports)

    journal = Journal(tmp_path / "j.sqlite")
    with Pool(inv, keepalive=None) as pool:  # the registry's driver_for picks the toy driver
        ex = Executor(inv, journal, pool, actor="t")
        run = ex.run(pb, [SITE])
        assert run.status == "done"
        assert {p: switches.ports[SWITCH][p] for p in ports} == dict.fromkeys(ports, False)
        assert journal.device_states()[SWITCH].down_interfaces == frozenset(ports)
        back = ex.rollback(run.run_id)
    journal.close()
    assert back.status == "rolled_back"
    assert {p: switches.ports[SWITCH][p] for p in ports} == dict.fromkeys(ports, True)
    assert [cmds for dev, cmds in switches.received if dev == SWITCH] == [
        tuple(f"port {p} disable" for p in ports),
        tuple(f"port {p} enable" for p in ports),
    ]


def test_without_its_registration_the_platform_is_refused(tmp_path: Path) -> None:
    """Unregistered, the same device cannot be planned for: the error names the platform."""
    inv = on_toy(load(EXAMPLE), SWITCH)
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        f"  - {{name: quarantine, action: shut_zone_ports, zones: [{ZONE}]}}\n"
    )
    pb = load_playbook(pb_path, inv)
    with pytest.raises(Exception, match="no platform toy_switch is registered"):
        plan(pb, inv, sites=[SITE])

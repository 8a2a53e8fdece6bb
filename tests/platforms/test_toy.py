"""A platform is one folder: a toy switch platform that lives only in tests/platforms/toy/ is
registered, named by an inventory FILE, loaded, planned for and applied through the real planner,
executor and pool, and rolled back; nothing outside its folder names it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.errors import InventoryError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.platforms import registry
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import EXAMPLE
from tests.pgserver import Where
from tests.platforms import toy
from tests.platforms.toy.driver import Switches

SITE, SWITCH, ZONE = "nantes-jules-verne", "nts-sw1", "admin"


@pytest.fixture
def switches() -> Iterator[Switches]:
    world = Switches()
    registry.register(toy.spec(world))
    yield world
    registry.unregister(toy.NAME)


def toy_inventory(tmp_path: Path, device: str) -> Path:
    """The example inventory written to a file with `device` on the toy platform."""
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for site in doc["sites"]:
        for d in site.get("devices", []):
            if d["name"] == device:
                d["platform"] = toy.NAME
    path = tmp_path / "toy-group.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def zone_ports(inv: Inventory) -> list[str]:
    site = inv.site(SITE)
    zone = site.zone(ZONE) if site else None
    assert zone is not None
    return sorted(p.interface for p in zone.ports if p.device == SWITCH)


def test_a_toy_platform_plans_applies_and_rolls_back_through_its_own_folder(
    tmp_path: Path, state_where: Where, switches: Switches
) -> None:
    """The toy's renderer writes the plan's commands, its driver receives and verifies them,
    and the rollback reopens the ports on the scripted device."""
    inv = load(toy_inventory(tmp_path, SWITCH))
    site = inv.site(SITE)
    device = site.device(SWITCH) if site else None
    assert device is not None and device.platform == toy.NAME
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

    journal = Journal(state_where("journal"))
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


def test_without_its_registration_an_inventory_naming_it_is_refused(tmp_path: Path) -> None:
    """Unregistered, the toy platform is unknown to the inventory: the file naming it is refused
    at the device's platform, with its line and the registered platforms."""
    path = toy_inventory(tmp_path, SWITCH)
    with pytest.raises(InventoryError) as info:
        load(path)
    (issue,) = info.value.issues
    assert issue.file == str(path) and issue.path.endswith(".platform")
    assert issue.line is not None
    assert toy.NAME in path.read_text().splitlines()[issue.line - 1]
    assert f"no platform {toy.NAME!r} is registered" in issue.message
    assert "cisco_ios" in issue.message

"""A soak's re-isolation is planned by the planner and rendered by the renderer like any other
change: it puts the zone's gateway back exactly as it was before the zone was reconnected."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.engine.plan import plan, reisolation
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.platforms import registry
from agent.playbook import load as load_playbook
from tests.conftest import EXAMPLE, ROOT

SITE = "rennes-la-sagesse"
# A site behind each firewall platform of the example: FortiGate, Stormshield SNS, Linux.
SITES = {
    "fortigate": "rennes-la-sagesse",
    "stormshield": "fontenay-sud-vendee",
    "linux_nftables": "bretagne-etab-2",
}


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


@pytest.mark.parametrize("platform", sorted(SITES))
def test_reisolating_a_zone_restores_its_gateway_to_the_isolated_state(
    inv: Inventory, tmp_path: Path, platform: str
) -> None:
    """The re-isolation of a reconnected zone removes exactly its reconnection rules: the
    gateway's state after it is the isolated state the reconnection started from, and the
    commands are the platform renderer's script for that state (undo: the reconnected one)."""
    site_name = SITES[platform]
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=[site_name]).final_state
    pb_file = tmp_path / "back.yaml"
    pb_file.write_text(
        "name: back\nlevel: L0\nsteps:\n"
        "  - {name: servers, action: reconnect_zone, zones: {zones: [servers]}}\n"
    )
    reconnected = plan(load_playbook(pb_file, inv), inv, sites=[site_name], current=isolated)
    assert reconnected.changes, "the servers zone is reconnected through its gateway"
    site = inv.site(site_name)
    assert site is not None

    cut = reisolation(site, ["servers"], reconnected.final_state)

    assert cut.step == "reisolate servers"
    assert [c.device for c in cut.changes] == [c.device for c in reconnected.changes]
    rules = registry.platform(platform).rules
    assert rules is not None
    for change in cut.changes:
        assert change.platform == platform
        assert change.method == rules.method
        assert change.after == isolated[change.device]
        assert change.before != change.after
        assert change.commands == tuple(rules.script(change.after).splitlines())
        assert change.undo == tuple(rules.script(change.before).splitlines())


def test_reisolating_a_zone_that_was_never_reconnected_changes_nothing(inv: Inventory) -> None:
    """No rule reconnects the zone: the re-isolation step has no device change."""
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=[SITE]).final_state
    site = inv.site(SITE)
    assert site is not None
    assert reisolation(site, ["servers"], isolated).changes == ()

"""A soak's re-isolation is planned by the planner and rendered by the renderer like any other
change: it puts the zone's gateway back exactly as it was before the zone was reconnected."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.engine.plan import plan, reisolation
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.platforms.linux_nftables.render import nft_table
from agent.playbook import load as load_playbook
from tests.conftest import EXAMPLE, ROOT

SITE = "rennes-la-sagesse"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def test_reisolating_a_zone_restores_its_gateway_to_the_isolated_state(
    inv: Inventory, tmp_path: Path
) -> None:
    """The re-isolation of a reconnected zone removes exactly its reconnection rules: the
    gateway's state after it is the isolated state the reconnection started from, and the
    commands are the renderer's table for that state (undo: the reconnected table)."""
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=[SITE]).final_state
    pb_file = tmp_path / "back.yaml"
    pb_file.write_text(
        "name: back\nlevel: L0\nsteps:\n"
        "  - {name: servers, action: reconnect_zone, zones: {zones: [servers]}}\n"
    )
    reconnected = plan(load_playbook(pb_file, inv), inv, sites=[SITE], current=isolated)
    assert reconnected.changes, "the servers zone is reconnected through its gateway"
    site = inv.site(SITE)
    assert site is not None

    cut = reisolation(site, ["servers"], reconnected.final_state)

    assert cut.step == "reisolate servers"
    assert [c.device for c in cut.changes] == [c.device for c in reconnected.changes]
    for change in cut.changes:
        assert change.method == "nft"
        assert change.after == isolated[change.device]
        assert change.commands == tuple(nft_table(change.after).splitlines())
        assert change.undo == tuple(nft_table(change.before).splitlines())


def test_reisolating_a_zone_that_was_never_reconnected_changes_nothing(inv: Inventory) -> None:
    """No rule reconnects the zone: the re-isolation step has no device change."""
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=[SITE]).final_state
    site = inv.site(SITE)
    assert site is not None
    assert reisolation(site, ["servers"], isolated).changes == ()

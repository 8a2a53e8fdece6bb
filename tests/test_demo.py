"""The demo attests every zone the reconnect playbook reopens: a reconnection waits for an
operator's attestation of each zone it reopens, so a zone left out makes `make demo` wait
forever (it did, once the shipped playbook selected its zones by role instead of by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.commands.demo import HIT, PLAYBOOKS, reconnected_zones
from agent.errors import CordonError
from agent.inventory import load
from agent.playbook import load as load_playbook

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_attests_every_zone_of_the_site_hit() -> None:
    """Every zone of La Sagesse that `reconnect` reopens (all but the guest Wi-Fi and the
    out-of-band management network, which it never reconnects) is attested by the demo."""
    inv = load(ROOT / "inventory" / "hospi-grand-ouest.yaml")
    reconnect = load_playbook(PLAYBOOKS / "reconnect.yaml", inv)
    site = inv.site(HIT)
    assert site is not None
    kept_apart = {"guest", "management"}
    expected = sorted(z.name for z in site.zones if z.name not in kept_apart)
    assert reconnected_zones(inv, reconnect, HIT) == expected
    assert "admin" in expected  # the infected PC's zone: the soak must get to catch it


def test_an_unknown_site_is_a_clear_error() -> None:
    inv = load(ROOT / "inventory" / "hospi-grand-ouest.yaml")
    reconnect = load_playbook(PLAYBOOKS / "reconnect.yaml", inv)
    with pytest.raises(CordonError, match="no site nowhere"):
        reconnected_zones(inv, reconnect, "nowhere")

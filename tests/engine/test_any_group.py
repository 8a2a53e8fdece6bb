"""Every shipped playbook serves any valid inventory, not only the example: on the second test
group (tests/data/ght-vallee.yaml: other names, roles instead of the example's zone names,
IOS-style ports, non-mgmt0 management interfaces, a must-survive flow across sites) each loads,
plans without refusal, and segments or reconnects the zones of its kind. Pure: no twin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.engine.plan import Plan, plan
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab.topology import blueprint, kernel_names, valid_kernel_name
from agent.playbook import load as load_playbook
from tests.conftest import ROOT

VALLEE = ROOT / "tests" / "data" / "ght-vallee.yaml"
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))

# how each shipped playbook is run on the second group: sites, parameters, and what it starts from
RUNS: dict[str, tuple[list[str], dict[str, str]]] = {
    "isolate-site": (["hopital-nord"], {}),
    "preventive-degraded": (["hopital-nord", "clinique-sud"], {}),
    "segment": (["hopital-nord"], {"zone": "visiteurs"}),
    "segment-port": (["clinique-sud"], {"device": "cs-sw1", "interface": "GigabitEthernet1/0/6"}),
    "reconnect": (["hopital-nord"], {}),
    "restore-normal": (["hopital-nord", "clinique-sud"], {}),
}


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(VALLEE)


def _plan(inv: Inventory, name: str, current: Plan | None = None) -> Plan:
    sites, params = RUNS[name]
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", inv, params)
    return plan(pb, inv, sites=sites, current=current.final_state if current else None)


def test_every_shipped_playbook_has_a_run_here() -> None:
    assert sorted(p.stem for p in PLAYBOOKS) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_shipped_playbook_plans_on_another_group(inv: Inventory, name: str) -> None:
    """Loads against the other group and plans without refusal; recovery playbooks from the
    state isolate-site leaves."""
    start = _plan(inv, "isolate-site") if name in ("reconnect", "restore-normal") else None
    p = _plan(inv, name, start)
    assert p.refusals == ()
    assert p.changes  # it does something here, not an empty plan that "works"
    survivors = {fi.flow: fi for fi in p.impact if fi.must_survive}
    assert survivors and all(fi.after for fi in survivors.values() if fi.before)


def test_isolate_site_segments_by_role_and_criticality(inv: Inventory) -> None:
    """Office, servers, guest (by role) and gtc (business, no role) are cut from the clinical
    zones; the lab keeps its must-survive flow to the lab system, and the tele-expertise flow
    from the other site stays open through the WAN cut."""
    p = _plan(inv, "isolate-site")
    after = {fi.flow: fi.after for fi in p.impact}
    assert after["hn-compta-dpi"] is False  # office -> servers: blocked
    assert after["hn-labo-sil"] is True  # must survive through the block
    assert after["cs-teleexpertise"] is True  # must survive across sites, through the WAN cut
    assert after["hn-dpi-hds"] is False  # WAN cut
    assert after["hn-visiteurs-internet"] is False  # both internet uplinks cut
    rules = [r for r in p.final_state["hn-fw"].rules if r.tag == "segment"]
    blocked = {(r.iif, r.oif) for r in rules if r.verdict == "drop"}
    assert ("trunk0.4000", "trunk0.23") in blocked  # gtc has no role: placed by criticality
    assert ("trunk0.99", "trunk0.23") not in blocked  # management keeps its access


def test_reconnect_selects_zones_by_role(inv: Inventory) -> None:
    """The servers step reconnects the zone whose role is servers (dc-local), whatever its name;
    the life-critical step takes every life-critical zone."""
    p = _plan(inv, "reconnect", _plan(inv, "isolate-site"))
    zones_by_step: dict[str, set[str]] = {}
    for step in p.steps:
        text = "\n".join(line for c in step.changes for line in c.commands)
        found = re.findall(rf"{re.escape(step.step)}: reconnect ([a-z0-9-]+)", text)
        if found:
            zones_by_step[step.step] = set(found)
    assert zones_by_step["servers"] == {"dc-local"}
    assert zones_by_step["life-critical"] == {"reanimation", "urgences-tel"}
    assert zones_by_step["clinical"] == {"labo"}
    assert zones_by_step["admin"] == {"bureautique", "gtc"}
    assert "building" not in zones_by_step  # no building zone here: the plan says so
    assert any("no zone of building" in n for st in p.steps for n in st.notes)


def test_twin_names_interfaces_for_the_kernel(inv: Inventory) -> None:
    """IOS-style names become valid, distinct kernel names (a trunk keeps room for its VLAN
    legs); the blueprint records the mapping; each device is guarded on its own management
    interface."""
    bp = blueprint(inv, "t")
    for site in inv.sites:
        for device in site.devices:
            names = kernel_names(site, device)
            assert bp.ifnames[device.name] == names
            assert len(set(names.values())) == len(names)
            assert all(valid_kernel_name(k) for k in names.values())
    assert bp.ifnames["cs-sw1"]["GigabitEthernet1/0/24"] == "Gi1-0-24"
    assert bp.ifnames["hn-sw-b"]["GigabitEthernet0/0"] == "Gi0-0"
    assert all(valid_kernel_name(v.a_if) and valid_kernel_name(v.b_if) for v in bp.veths)
    mgmt = {n.hostname: n.mgmt_if for n in bp.nodes.values() if n.mgmt_if}
    assert mgmt == {
        "dc-edge": "eth-mgmt",
        "dc-core": "Mgmt1",
        "hn-fw": "eth-mgmt",
        "hn-sw-a": "Mgmt1",
        "hn-sw-b": "Gi0-0",
        "cs-fw": "mgmt-oob",
        "cs-sw1": "Mgmt0",
    }


def test_example_keeps_its_names() -> None:
    """The example's firewalls and IOS-style switches use kernel names already: nothing of
    theirs renamed; its IOS-XE, AOS-CX and Junos EX switches' own names are renamed the same way
    on every switch (the trunk's per-VLAN legs fit)."""
    example = load(ROOT / "inventory" / "hospi-grand-ouest.yaml")
    bp = blueprint(example, "t")
    platforms = {d.name: str(d.platform) for _, d in example.devices()}
    vendor = {"cisco_iosxe", "aruba_aoscx", "juniper_junos"}
    kept = [n for n, p in platforms.items() if p not in vendor]
    assert len(kept) == 12  # 10 firewalls, the IOS switches of Nantes and the core
    assert all(k == v for n in kept for k, v in bp.ifnames[n].items())
    assert (
        bp.ifnames["rns-sw1"].items()
        >= {
            "GigabitEthernet0/0": "Gi0-0",
            "GigabitEthernet1/0/1": "Gi1-0-1",
            "GigabitEthernet1/0/11": "Gi1-0-11",
            "TenGigabitEthernet1/1/1": "Te1-1-1",
            "TenGigabitEthernet1/1/2": "Te1-1-2",
        }.items()
    )
    assert bp.ifnames["stn-sw1"]["1/1/49"] == "1-1-49"
    assert bp.ifnames["stn-sw1"]["1/1/1"] == "1-1-1"
    assert bp.ifnames["stn-sw1"]["mgmt"] == "mgmt"
    assert bp.ifnames["bz1-sw1"].items() >= {
        "me0": "me0", "ge-0/0/1": "ge-0-0-1", "ge-0/0/16": "ge-0-0-16", "xe-0/1/0": "xe-0-1-0"
    }.items()  # fmt: skip


def test_cross_site_must_survive_needs_keep_must_survive(inv: Inventory, tmp_path: Path) -> None:
    """A WAN cut without keep_must_survive refuses to cut the flow across sites; the shipped
    playbooks set it, and the flow is kept by rules on the cut firewall."""
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "name: bare\nlevel: L2\nsteps:\n  - {name: w, action: cut_link, kinds: [wan]}\n"
    )
    refused = plan(load_playbook(bare, inv), inv, sites=["clinique-sud"])
    assert any("cs-teleexpertise" in r for r in refused.refusals)
    kept = _plan(inv, "preventive-degraded")
    assert kept.refusals == ()
    assert any(r.tag == "must survive: cs-teleexpertise" for r in kept.final_state["cs-fw"].rules)

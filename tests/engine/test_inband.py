"""In-band management, pure (#15): the inventory form and its checks, the explicit stateful
exceptions every state keeps for the agent's management flows, and the steps the plan refuses
because they would strand a device the rollback or a later step needs."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.engine.plan import Plan, plan
from agent.errors import InventoryError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network import management as mg
from agent.network.state import DeviceState, NftRule
from agent.platforms import registry  # registers the platforms
from agent.platforms.linux_nftables.render import nft_comments, nft_table
from agent.playbook import load as load_playbook
from scripts.synth import hospi_grand_ouest_inband
from tests.conftest import EXAMPLE, ROOT

INBAND = ROOT / "tests" / "data" / "hgo-inband.yaml"
PLAYBOOKS = ROOT / "playbooks"
RNS = "rennes-la-sagesse"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(INBAND)


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "inband.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def issues(tmp_path: Path, doc: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    path = write(tmp_path, doc)
    with pytest.raises(InventoryError) as info:
        load(path)
    return [(i.path, i.message, i.line) for i in info.value.issues]


def run_plan(
    inv: Inventory,
    name: str,
    sites: list[str] | None = None,
    *,
    params: dict[str, str] | None = None,
    current: Mapping[str, DeviceState] | None = None,
) -> Plan:
    pb = load_playbook(PLAYBOOKS / f"{name}.yaml", inv, params)
    return plan(pb, inv, sites=sites, current=current)


def states_after_each_step(p: Plan, start: Mapping[str, DeviceState]) -> list[dict[str, Any]]:
    """The group's state after each step that changes something, from the plan's own changes."""
    state = dict(start)
    out = []
    for step in p.steps:
        for c in step.changes:
            state[c.device] = c.after
        if step.changes:
            out.append({"step": f"{step.site}/{step.step}", "state": dict(state)})
    return out


# --- the inventory ------------------------------------------------------------------------------


def test_generated_file_is_the_generator_output() -> None:
    assert yaml.safe_load(INBAND.read_text()) == hospi_grand_ouest_inband()


def test_out_of_band_example_has_no_management_paths() -> None:
    example = load(EXAMPLE)
    assert not example.group.management.in_band
    assert mg.management_paths(example) == {}


def test_inband_group_loads(inv: Inventory) -> None:
    mgmt = inv.group.management
    assert (
        mgmt.in_band and mgmt.agent_site == "hgo-core" and str(mgmt.agent_port) == "core-sw1:gi10"
    )
    for _site, device in inv.devices():
        iface = device.interface(device.management.interface)
        assert iface is not None and iface.address is not None
        assert iface.address.ip == device.management.address


@pytest.mark.parametrize(
    ("edit", "where", "says"),
    [
        (
            lambda d: d["group"]["management"].pop("agent_site"),
            "group.management.agent_site",
            "needs agent_site",
        ),
        (
            lambda d: d["group"]["management"].update(agent_site="atlantis"),
            "group.management.agent_site",
            "'atlantis' is not defined",
        ),
        (
            lambda d: d["group"]["management"].update(agent_site="rennes-la-sagesse"),
            "group.management.agent_site",
            "must sit at the group's core",
        ),
        (
            lambda d: d["group"]["management"].update(agent_port="core-sw1:gi1"),
            "group.management.agent_port",
            "not one of the ports of the agent's zone",
        ),
        (
            lambda d: d["sites"][1]["devices"][0]["management"].update(address="198.18.99.99"),
            "sites[1].devices[0].management.address",
            "must be the address of rns-fw1:wan0",
        ),
        (
            lambda d: d["sites"][1]["devices"][0]["management"].update(interface="nope0"),
            "sites[1].devices[0].management.interface",
            "'nope0' is not one of rns-fw1's interfaces",
        ),
        (
            lambda d: d["group"]["management"].update(mode="out_of_band"),
            "group.management",
            "agent_site and agent_port are for in-band management only",
        ),
    ],
)
def test_inband_inventory_errors_name_file_path_and_line(
    tmp_path: Path, edit: Any, where: str, says: str
) -> None:
    doc = copy.deepcopy(hospi_grand_ouest_inband())
    edit(doc)
    found = issues(tmp_path, doc)
    assert any(path == where and says in msg and line for path, msg, line in found), found


def test_a_management_zone_off_the_agents_way_is_refused(tmp_path: Path) -> None:
    """rns-sw2 managed in a zone that rns-sw1 routes, not the firewall holding the WAN."""
    doc = copy.deepcopy(hospi_grand_ouest_inband())
    rns = doc["sites"][1]
    fw, sw1, _sw2 = rns["devices"]
    fw["interfaces"] = [i for i in fw["interfaces"] if i["name"] != "lan0.990"]
    vl990 = next(i for i in sw1["interfaces"] if i["name"] == "vl990")
    vl990["address"] = "198.18.18.1/24"
    sw1["management"]["address"] = "198.18.18.1"
    zone = next(z for z in rns["zones"] if z["name"] == "management")
    zone["gateway"] = "rns-sw1:vl990"
    found = issues(tmp_path, doc)
    assert any(
        path == "sites[1].devices[2].management.interface"
        and "routed by rns-sw1, which is not the device that holds rennes-la-sagesse's WAN" in msg
        and line
        for path, msg, line in found
    ), found


# --- the plan: exceptions in every state --------------------------------------------------------


def assert_managed_everywhere(
    inv: Inventory, p: Plan, start: Mapping[str, DeviceState] | None = None
) -> int:
    paths = mg.management_paths(inv)
    checked = 0
    for snap in states_after_each_step(p, start or {}):
        for device, path in paths.items():
            for port in path.ports:
                assert mg.where_cut(snap["state"], path, port) is None, (snap["step"], device)
                checked += 1
    return checked


def test_preventive_degraded_keeps_every_device_managed(inv: Inventory) -> None:
    p = run_plan(inv, "preventive-degraded")
    assert p.refusals == ()
    assert assert_managed_everywhere(inv, p) > 0
    # the exceptions are explicit, stateful, tagged, and in the rendered table before the drops
    fw = p.final_state["stn-fw1"]
    mgmt_rules = [r for r in fw.rules if r.tag == "management:stn-sw1"]
    assert {r.tag for r in fw.rules if mg.is_management(r)} == {
        "management:stn-sw1",
        "management:stn-fw1",  # its own, through its cut WAN (local exceptions)
    }
    assert {(r.saddr, r.daddr, r.dport, r.reply) for r in mgmt_rules} == {
        ("198.19.0.100", "198.18.31.2", 22, False),
        ("198.18.31.2", "198.19.0.100", None, True),
    }
    table = nft_table(fw)
    first_drop = table.index("counter drop")
    for line in table.splitlines():
        if "management:stn-sw1" in line and "chain" not in line:
            assert table.index(line) < first_drop
    assert 'ct state established,related counter accept comment "management:stn-sw1' in table
    # visible in the plan preview: the step says so
    notes = [n for s in p.steps for n in s.notes]
    assert "keeps the agent's management of stn-sw1 open through stn-fw1" in notes


def test_a_non_management_flow_through_the_same_cut_is_dropped(inv: Inventory) -> None:
    """The exceptions name the agent: the core's EHR server reaching the same switch on the
    same port, or the agent reaching a host of the site, is still cut."""
    p = run_plan(inv, "preventive-degraded")
    fw = p.final_state["stn-fw1"]
    path = mg.management_paths(inv)["stn-sw1"]
    assert fw.forward("wan0", "lan0.990", path.src, path.dst, None, 22) == "accept"
    assert fw.forward("wan0", "lan0.990", "198.18.0.10", path.dst, None, 22) == "drop"
    assert fw.forward("wan0", "lan0.990", path.src, path.dst, None, 80) == "drop"
    assert fw.forward("wan0", "lan0.180", path.src, "198.18.40.10", None, 443) == "drop"
    # a connection the switch would open toward the agent is no reply: dropped
    assert fw.forward("lan0.990", "wan0", path.dst, path.src, 22, None) == "drop"


def test_isolate_reconnect_restore_keep_every_device_managed(inv: Inventory) -> None:
    isolate = run_plan(inv, "isolate-site", [RNS])
    assert isolate.refusals == ()
    assert assert_managed_everywhere(inv, isolate) > 0
    reconnect = run_plan(inv, "reconnect", [RNS], current=isolate.final_state)
    assert reconnect.refusals == ()
    assert assert_managed_everywhere(inv, reconnect, isolate.final_state) > 0
    degraded = run_plan(inv, "preventive-degraded")
    restore = run_plan(inv, "restore-normal", current=degraded.final_state)
    assert restore.refusals == ()
    assert assert_managed_everywhere(inv, restore, degraded.final_state) > 0
    # back to normal: no exception left behind (a table of exceptions alone is of no use)
    assert all(s.rules == frozenset() for s in restore.final_state.values())


def test_wan_cut_of_a_firewall_managed_through_it_is_whole_but_for_its_management(
    inv: Inventory,
) -> None:
    """nts-fw1 is managed at its WAN address, through the WAN the step cuts: the whole link is
    cut, the firewall's own traffic too, but for local exceptions for the agent's SSH to it."""
    p = run_plan(inv, "preventive-degraded")
    fw = p.final_state["nts-fw1"]
    path = mg.management_paths(inv)["nts-fw1"]
    assert path.entry == "wan0" and path.ports == (22,)
    cut = {r for r in fw.rules if r.verdict == "drop" and r.tag == "cut-wan"}
    assert cut == {NftRule("drop", iif="wan0"), NftRule("drop", oif="wan0")}
    local = {r for r in fw.rules if r.local}
    assert local == {
        NftRule("accept", "wan0", None, path.src, path.dst, None, 22),
        NftRule("accept", None, "wan0", path.dst, path.src, 22, None),
    }
    assert all(r.tag == "management:nts-fw1" for r in local)
    # forwarded: cut
    assert fw.forward("wan0", "lan0.180", "198.18.0.10", "198.18.50.10", None, 443) == "drop"
    # its own: the agent's SSH opens (request in, reply out only for the agent's connection)
    assert fw.local("in", "wan0", path.src, path.dst, None, 22) == "accept"
    assert fw.local("out", "wan0", path.dst, path.src, 22, None, reply=True) == "accept"
    assert fw.local("out", "wan0", path.dst, path.src, 22, None) == "drop"  # it opens nothing
    # any other port of its own, or the same port from another address: cut
    assert fw.local("in", "wan0", path.src, path.dst, None, 8080) == "drop"
    assert fw.local("in", "wan0", "198.18.0.10", path.dst, None, 22) == "drop"
    assert fw.local("out", "wan0", path.dst, path.src, None, 443) == "drop"
    # a local exception never lets forwarded traffic through
    assert fw.forward("wan0", "lan0.180", path.src, path.dst, None, 22) == "drop"
    # the preview says so
    notes = [n for s in p.steps if s.site == "nantes-jules-verne" for n in s.notes]
    assert (
        "nts-fw1 is managed in band through wan0: the cut drops all its traffic there, its own "
        "too (every other port of its own), but the agent's management (tcp 22 from "
        "198.19.0.100 to 198.18.232.9)"
    ) in notes, notes
    # the rendered table: the local exceptions in input/output, before the drops there
    table = nft_table(fw)
    chain = {name: body.splitlines() for name, body in _chains(table).items() if name != "forward"}
    assert chain["input"][0].startswith(
        f'iifname "wan0" ip saddr {path.src} ip daddr {path.dst} tcp dport 22 counter accept '
        'comment "management:nts-fw1 #'
    ), chain["input"]
    assert chain["input"][-1].startswith('iifname "wan0" counter drop comment "cut-wan #')
    assert chain["output"][0].startswith(
        f'oifname "wan0" ip saddr {path.dst} ip daddr {path.src} tcp sport 22 '
        "ct state established,related counter accept"
    ), chain["output"]
    assert "ct state new tcp flags & (syn | ack) == ack counter accept" in chain["output"][1]
    assert chain["output"][-1].startswith('oifname "wan0" counter drop comment "cut-wan #')
    assert "management:nts-fw1" not in _chains(table)["forward"]
    # the read-back expects exactly the comments the script writes, local exceptions included
    written = frozenset(re.findall(r'comment "([^"]+)"', table))
    assert nft_comments(fw) == written
    ours = sorted(c for c in written if c.startswith("management:nts-fw1 #"))
    assert sorted(c.split(" ", 2)[-1] for c in ours) == ["input", "output", "resume output"], ours


def _chains(table: str) -> dict[str, str]:
    """The rule lines of each chain of a rendered table, by chain name."""
    out: dict[str, str] = {}
    name = ""
    for line in table.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            name = text.split()[1]
            out[name] = ""
        elif name and text and not text.startswith(("type ", "}")):
            out[name] += text + "\n"
    return out


def test_a_platform_without_local_exceptions_keeps_the_forward_only_cut(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Linux firewall registered without the capability: today's forward-only cut."""
    spec = registry.platform("linux_nftables")
    monkeypatch.setitem(registry._platforms, spec.name, replace(spec, local_exceptions=False))
    p = run_plan(inv, "preventive-degraded", ["nantes-jules-verne"])
    assert p.refusals == ()
    fw = p.final_state["nts-fw1"]
    assert not any(r.local or (r.own and "wan0" in (r.iif, r.oif)) for r in fw.rules)
    assert fw.cuts("wan0")
    path = mg.management_paths(inv)["nts-fw1"]
    assert fw.local("in", "wan0", path.src, path.dst, None, 8080) == "accept"  # the gap
    assert fw.forward("wan0", "lan0.180", "198.18.0.10", "198.18.50.10", None, 443) == "drop"
    notes = [n for s in p.steps for n in s.notes]
    assert (
        "nts-fw1 is managed in band through wan0: the cut drops what it forwards, not its own "
        "traffic there: its platform holds no exception for its own traffic, so its own ports "
        "stay reachable through wan0"
    ) in notes, notes


# --- the plan: refusals --------------------------------------------------------------------------


def test_shutting_the_trunk_a_switch_is_managed_through_is_refused(inv: Inventory) -> None:
    p = run_plan(inv, "segment-port", [RNS], params={"device": "rns-sw1", "interface": "gi0"})
    assert (
        "step shut at rennes-la-sagesse would strand rns-sw1 (managed in band at 198.18.18.2, "
        "tcp 22): rns-sw1:gi0 is shut; the rollback needs it"
    ) in p.refusals


def test_a_device_a_later_step_needs_is_named(tmp_path: Path) -> None:
    doc = hospi_grand_ouest_inband()
    pb_path = tmp_path / "pb.yaml"
    pb_path.write_text(
        "name: two-shuts\nlevel: L4\ntargets: {kinds: [establishment]}\nsteps:\n"
        "  - {name: trunk, action: shut_port, device: rns-sw1, interface: gi41}\n"
        "  - {name: port, action: shut_port, device: rns-sw2, interface: gi1}\n"
    )
    inv = load(write(tmp_path, doc))
    p = plan(load_playbook(pb_path, inv), inv, sites=[RNS])
    assert any(
        r.startswith("step trunk at rennes-la-sagesse would strand rns-sw2")
        and r.endswith("rns-sw1:gi41 is shut; step port at rennes-la-sagesse needs it")
        for r in p.refusals
    ), p.refusals


def test_a_wan_cut_on_a_platform_without_rules_is_refused(tmp_path: Path) -> None:
    doc = hospi_grand_ouest_inband()
    for site in doc["sites"]:
        for device in site.get("devices", []):
            if device["name"] == "stn-fw1":
                device["platform"] = "cisco_ios"  # can only shut the interface
    inv = load(write(tmp_path, doc))
    p = run_plan(inv, "preventive-degraded", ["saint-nazaire-estuaire"])
    assert any(
        "step cut-wan at saint-nazaire-estuaire would strand stn-fw1" in r
        and "stn-fw1:wan0 is shut; the rollback needs it" in r
        for r in p.refusals
    ), p.refusals


def test_snmp_in_band_through_a_cut_is_refused(tmp_path: Path) -> None:
    doc = hospi_grand_ouest_inband()
    doc["group"]["defaults"]["snmp"] = {
        "version": "v3",
        "user": "cordon",
        "auth": "file:.secrets/snmp/auth",
        "priv": "file:.secrets/snmp/priv",
    }
    inv = load(write(tmp_path, doc))
    degraded = run_plan(inv, "preventive-degraded", [RNS])
    assert degraded.refusals == ()  # the firewall's own SNMP through its WAN is not cut
    notes = [n for st in degraded.steps for n in st.notes]
    assert (
        "rns-fw1 is managed in band through wan0: the cut drops what it forwards, not its own "
        "traffic there: it declares SNMP (UDP, no exception can keep it), so its own ports stay "
        "reachable through wan0"
    ) in notes, notes
    p = run_plan(
        inv,
        "segment-port",
        [RNS],
        params={"device": "rns-sw2", "interface": "gi1"},
        current=degraded.final_state,
    )
    assert any(
        r.startswith("step shut at rennes-la-sagesse would cut SNMP (udp 161) to rns-sw2")
        for r in p.refusals
    ), p.refusals

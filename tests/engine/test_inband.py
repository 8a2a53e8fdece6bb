"""In-band management, pure (#15): the inventory form and its checks, the explicit stateful
exceptions every state keeps for the agent's management flows, and the steps the plan refuses
because they would strand a device the rollback or a later step needs."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.engine.plan import Plan, plan
from agent.errors import InventoryError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network import management as mg
from agent.network.state import DeviceState
from agent.platforms import registry  # noqa: F401  (registers the platforms)
from agent.platforms.linux_nftables.render import nft_table
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
    mgmt_rules = [r for r in fw.rules if mg.is_management(r)]
    assert {r.tag for r in mgmt_rules} == {"management:stn-sw1"}
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


def test_wan_cut_of_a_firewall_managed_through_it_spares_its_own_traffic(inv: Inventory) -> None:
    p = run_plan(inv, "preventive-degraded")
    fw = p.final_state["nts-fw1"]
    assert not any(r.verdict == "drop" and r.oif is None for r in fw.rules if r.iif == "wan0")
    assert fw.cuts("wan0")
    assert fw.forward("wan0", "lan0.180", "198.18.0.10", "198.18.50.10", None, 443) == "drop"


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

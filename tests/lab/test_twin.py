"""The twin behaves like the real group: every declared flow works in the normal state, and a
switch port shut through the IOS-style CLI or by an SNMP SET, or a vendor switch's trunk port
shut through its own driver, closes exactly the flows that cross it, nothing else, until it is
reopened."""

from __future__ import annotations

import pytest

from agent.drivers import ChangeSet, Expectation
from agent.drivers.base import Target
from agent.errors import LabError
from agent.inventory.impact import flows_via_access_port
from agent.inventory.models import Inventory
from agent.lab import build, flows, netns
from agent.lab.probe import ProbeTarget, probe_tcp
from agent.lab.topology import Blueprint
from agent.network.paths import flow_path
from agent.network.state import DeviceState, flow_open
from agent.platforms import registry
from agent.platforms.registry import one_shot
from tests.conftest import Twin
from tests.lab import twinops

pytestmark = pytest.mark.twin


def closed(inv: Inventory, bp: Blueprint) -> set[str]:
    return {o.flow.name for o in flows.observe(inv, bp) if not o.observed_open}


def parts(twin: Twin) -> tuple[Inventory, Blueprint]:
    return twin.inv, twin.bp


def test_every_flow_open_in_normal_state(twin: Twin) -> None:
    """All 135 declared flows of Hospi Grand Ouest connect, each to the right host and service."""
    inv, bp = parts(twin)
    obs = flows.observe(inv, bp)
    assert len(obs) == len(inv.flows) > 100
    assert [o.flow.name for o in obs if not o.as_expected] == []


def test_ios_shutdown_closes_exactly_the_crossing_flows(twin: Twin) -> None:
    """`shutdown` on nts-sw1's ICU monitor port (netmiko, cisco_ios) cuts that flow only."""
    inv, bp = parts(twin)
    expected = {f.name for f in flows_via_access_port(inv, "nts-sw1", "gi1")}
    assert expected == {"nts-icu-monitoring"}
    twinops.shutdown(inv, "nts-sw1", "gi1", down=True)
    try:
        link = netns.run(["ip", "-o", "link", "show", "gi1"], netns=bp.device_ns["nts-sw1"])
        assert ",UP" not in link.stdout.split(">")[0]  # the kernel link is administratively down
        assert twinops.wait_for(lambda: closed(inv, bp) == expected, timeout=10)
    finally:
        twinops.shutdown(inv, "nts-sw1", "gi1", down=False)
    assert twinops.wait_for(lambda: closed(inv, bp) == set(), timeout=15)


@pytest.mark.parametrize(
    ("device", "trunk"),
    [
        ("rns-sw1", "TenGigabitEthernet1/1/2"),  # IOS-XE: La Sagesse's trunk to its access switch
        ("stn-sw1", "1/1/49"),  # AOS-CX: Saint-Nazaire's uplink to its firewall
    ],
)
def test_vendor_trunk_shutdown_closes_exactly_the_crossing_flows(
    twin: Twin, device: str, trunk: str
) -> None:
    """A trunk port shut through the switch's own driver (the twin has no 802.1Q: the trunk is
    one veth per VLAN, which its shutdown takes down) closes exactly the flows the network model
    routes through it; reopened, everything is open again."""
    inv, bp = parts(twin)
    target = Target.of(inv, device)
    spec = registry.platform(str(target.device.platform))
    assert spec.shut_lines is not None
    cut = {device: DeviceState().shut(trunk, "cli")}
    expected = {f.name for f in inv.flows if not flow_open(cut, flow_path(inv, f))}
    assert len(expected) > 5
    with one_shot(target) as drv:
        try:
            drv.apply(ChangeSet(tuple(spec.shut_lines([trunk], down=True)), action="test.trunk"))
            drv.verify(Expectation(admin_up={trunk: False}))
            assert twinops.wait_for(lambda: closed(inv, bp) == expected, timeout=10)
        finally:
            drv.apply(ChangeSet(tuple(spec.shut_lines([trunk], down=False)), action="test.undo"))
        drv.verify(Expectation(admin_up={trunk: True}, oper_up={trunk: True}))
    assert twinops.wait_for(lambda: closed(inv, bp) == set(), timeout=15)


def test_snmp_admin_down_closes_exactly_the_crossing_flows(twin: Twin) -> None:
    """An SNMPv3 SET of ifAdminStatus=down on the lab system's port cuts exactly its flows."""
    inv, bp = parts(twin)
    site = inv.site("rennes-la-sagesse")
    zone = site.zone("servers") if site else None
    lis = zone.host("lis") if zone else None
    assert lis is not None
    assert lis.port is not None
    expected = {f.name for f in flows_via_access_port(inv, lis.port.device, lis.port.interface)}
    assert expected == {"rns-lab-lis", "stn-lab-rns"}
    twinops.snmp_admin(inv, lis.port.device, lis.port.interface, up=False)
    try:
        assert twinops.wait_for(lambda: closed(inv, bp) == expected, timeout=10)
    finally:
        twinops.snmp_admin(inv, lis.port.device, lis.port.interface, up=True)
    assert twinops.wait_for(lambda: closed(inv, bp) == set(), timeout=15)


def test_second_lab_up_refuses_and_changes_nothing(twin: Twin) -> None:
    """`lab up` while the twin is up is refused clearly; the running twin is untouched."""
    inv, _ = parts(twin)
    before = build.status()
    with pytest.raises(LabError, match="already up"):
        build.up(inv)
    after = build.status()
    assert after == before
    assert after["up"] is True
    assert after["processes_dead"] == []


def test_data_plane_unreachable_from_root_namespace(twin: Twin) -> None:
    """The root namespace cannot reach a twin data address: the blackhole catches it."""
    routes = netns.run(["ip", "route", "show", "type", "blackhole"]).stdout.split()
    assert "198.18.0.0/15" in routes
    # The data plane has no route but the blackhole; only the management veth is reachable.
    assert netns.run(["ip", "route", "get", "198.18.3.10"], check=False).returncode != 0
    mgmt = netns.run(["ip", "route", "get", "198.19.0.26"]).stdout
    assert "dev cordon-oob" in mgmt


@pytest.mark.parametrize(
    ("site", "fw", "sw"),
    [
        ("rennes-la-sagesse", "rns-fw1", "rns-sw1"),  # a FortiGate: its REST API
        ("saint-gilles-villa-notre-dame", "sgv-fw1", "sgv-sw1"),  # a Stormshield SNS: serverd
        ("bretagne-etab-2", "bz2-fw1", "bz2-sw1"),  # a Linux firewall: sshd
    ],
)
def test_zone_host_cannot_reach_management_plane(twin: Twin, site: str, fw: str, sw: str) -> None:
    """A zone host cannot reach a device's management address: the plane is out of band."""
    inv, bp = parts(twin)
    found = inv.find_device(fw)
    assert found is not None
    dev = found[1]
    port = dev.https.port if dev.https is not None else dev.ssh.port  # what the agent talks to
    address = str(dev.management.address)
    host_ns = bp.host_ns[f"{site}/admin/pc-admin-1"]
    (res,) = probe_tcp([ProbeTarget(host_ns, address, port)], timeout=1.0)
    assert not res.ok
    (ok,) = probe_tcp([ProbeTarget(bp.device_ns[sw], address, port)], timeout=2.0)
    assert ok.ok  # the same port answers on the management network

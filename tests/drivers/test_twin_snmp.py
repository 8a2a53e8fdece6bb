"""The SNMP driver (pysnmp 7, SNMPv3 authPriv) against the twin's snmpd: an ifAdminStatus SET
really downs the port, read-back polls through snmpd's ifTable cache, the undo reopens the flows;
SNMP error statuses become SnmpErrors naming device, operation and OID."""

from __future__ import annotations

import pytest

from agent.drivers import ChangeSet, Expectation
from agent.errors import SnmpError
from agent.inventory.impact import flows_via_access_port
from agent.platforms.registry import one_shot
from agent.platforms.snmp.driver import SnmpDriver
from agent.platforms.snmp.mib import IF_ADMIN, SYS_UPTIME
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

DEVICE, PORT = "rns-sw1", "GigabitEthernet1/0/1"  # IOS-XE: snmpd answers in its own names


def test_set_admin_down_readback_and_undo(lab: Lab) -> None:
    """A SET of ifAdminStatus=down downs the kernel link and closes exactly the port's flows;
    verify polls until snmpd reports it; the undo SET reopens everything."""
    expected = {f.name for f in flows_via_access_port(lab.inv, DEVICE, PORT)}
    with one_shot(th.target(lab, DEVICE), via="snmp") as drv:
        try:
            drv.apply(ChangeSet((f"ifAdminStatus {PORT} down",), action="test.snmp_down"))
            drv.verify(Expectation(admin_up={PORT: False}))
            assert not th.link_up(lab, DEVICE, PORT)
            assert wait_for(lambda: th.closed(lab) == expected, timeout=10)
        finally:
            drv.apply(ChangeSet((f"ifAdminStatus {PORT} up",), action="test.undo"))
        facts = drv.verify(Expectation(admin_up={PORT: True}, oper_up={PORT: True}))
        assert facts.interface(PORT) is not None
    assert th.link_up(lab, DEVICE, PORT)
    assert wait_for(lambda: th.closed(lab) == set(), timeout=15)
    rec = th.audit_records("device.change", DEVICE)[-2]
    assert rec["via"] == "snmp" and rec["commands"] == [f"ifAdminStatus {PORT} down"]


def test_walk_gives_interfaces_with_counters(lab: Lab) -> None:
    """The ifTable walk lists the device's interfaces with states and traffic counters."""
    with one_shot(th.target(lab, "rns-fw1"), via="snmp") as drv:
        facts = drv.facts()
    mgmt = facts.interface("mgmt0")
    assert mgmt is not None and mgmt.admin_up and mgmt.oper_up
    assert mgmt.in_octets is not None and mgmt.in_octets > 0 and mgmt.index is not None
    assert "ifAdminStatus mgmt0 up" in facts.config


def test_snmp_error_statuses_name_device_and_oid(lab: Lab) -> None:
    """notWritable, a missing instance, and an unknown interface are SnmpErrors, never silence."""
    drv = SnmpDriver(th.target(lab, DEVICE))
    try:
        with pytest.raises(
            SnmpError, match=r"rns-sw1: set: notWritable at 1\.3\.6\.1\.2\.1\.1\.3\.0"
        ):
            drv.set([(SYS_UPTIME, 5)])
        with pytest.raises(SnmpError, match=r"noSuchName: 1\.3\.6\.1\.2\.1\.2\.2\.1\.7\.999"):
            drv.get([f"{IF_ADMIN}.999"])
        with pytest.raises(SnmpError, match="no interface 'gi99'"):
            drv.apply(ChangeSet(("ifAdminStatus gi99 down",)))
        with pytest.raises(SnmpError, match="wrongValue"):
            drv.set([(f"{IF_ADMIN}.{drv.interface_index(PORT)}", 7)])
    finally:
        drv.close()
    assert th.link_up(lab, DEVICE, PORT)

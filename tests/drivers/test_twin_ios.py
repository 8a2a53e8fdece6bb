"""The cisco_ios driver (netmiko) against the twin's FRR switches: a real shutdown closes exactly
the flows crossing the port, the read-back shows it, the undo reopens them; a rejected command
is an error carrying the device's own output; every change lands in the audit trail."""

from __future__ import annotations

import pytest

from agent.audit import current_log_dir
from agent.drivers import ChangeSet, Expectation
from agent.errors import CommandRejected
from agent.inventory.impact import flows_via_access_port
from agent.platforms.registry import one_shot
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

DEVICE, PORT = "nts-sw1", "gi1"  # the ICU monitor's access port (Nantes: the IOS-style switches)


def test_shutdown_readback_and_undo_on_a_real_port(lab: Lab) -> None:
    """`shutdown` downs the kernel link, verify reads it back, flows close; undo reopens them."""
    expected = {f.name for f in flows_via_access_port(lab.inv, DEVICE, PORT)}
    assert expected == {"nts-icu-monitoring"}
    with one_shot(th.target(lab, DEVICE)) as drv:
        try:
            result = drv.apply(
                ChangeSet((f"interface {PORT}", "shutdown"), action="test.contain_port")
            )
            assert "shutdown" in result.commands
            facts = drv.verify(Expectation(admin_up={PORT: False}))
            assert facts.interface(PORT) is not None
            assert not th.link_up(lab, DEVICE, PORT)
            assert wait_for(lambda: th.closed(lab) == expected, timeout=10)
        finally:
            drv.apply(ChangeSet((f"interface {PORT}", "no shutdown"), action="test.undo"))
        drv.verify(Expectation(admin_up={PORT: True}, oper_up={PORT: True}))
    assert th.link_up(lab, DEVICE, PORT)
    assert wait_for(lambda: th.closed(lab) == set(), timeout=15)
    changes = th.audit_records("device.change", DEVICE)
    assert [r["action"] for r in changes[-2:]] == ["test.contain_port", "test.undo"]
    assert changes[-2]["commands"] == [f"interface {PORT}", "shutdown"]
    assert changes[-2]["outcome"] == "ok" and changes[-2]["output_sha256"]
    assert th.audit_records("device.verify", DEVICE)[-1]["outcome"] == "ok"


def test_rejected_command_is_an_error_with_the_device_output(lab: Lab) -> None:
    """An unknown command raises CommandRejected carrying FRR's `% Unknown command` line; the
    session is back in exec mode and still usable."""
    with one_shot(th.target(lab, DEVICE)) as drv:
        with pytest.raises(CommandRejected) as info:
            drv.apply(ChangeSet((f"interface {PORT}", "frobnicate now"), action="test.bad"))
        err = info.value
        assert err.device == DEVICE and err.operation == "apply"
        assert err.command == "frobnicate now"
        assert "% Unknown command" in err.output and "frobnicate now" in err.output
        assert err.hint is not None and "1 command" in err.hint
        port = drv.facts().interface(PORT)  # same session: not stuck in configuration mode
        assert port is not None and port.admin_up
    rec = th.audit_records("device.change", DEVICE)[-1]
    assert rec["outcome"] == "rejected" and "Unknown command" in rec["error"]


def test_facts_and_backup_describe_the_device(lab: Lab) -> None:
    """Facts list every inventory interface with admin/oper state; the backup is evidence."""
    with one_shot(th.target(lab, DEVICE)) as drv:
        facts = drv.facts()
        backup = drv.backup()
    dev = th.target(lab, DEVICE).device
    access = {i.name for i in dev.interfaces if i.vlan is not None} | {"mgmt0"}
    assert len(access) > 5
    assert access <= {i.name for i in facts.interfaces}
    assert all(i.oper_up is not None for i in facts.interfaces)
    assert f"hostname {DEVICE}" in facts.config
    stored = current_log_dir() / "evidence" / "sha256" / backup.sha256
    assert stored.read_text(encoding="utf-8") == backup.text

"""`cordon device check`: every selected device reached in parallel, with reachability, host-key
status, platform and interfaces, as a table or JSON; a cut-off device makes it exit non-zero."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.commands.device import device, render
from agent.drivers import tls
from agent.drivers.base import InterfaceState, Timeouts
from agent.drivers.check import DeviceCheck, Probe, check_device
from agent.errors import DeviceError
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab


def sample(name: str, ssh: Probe, host_key: str = "pinned") -> DeviceCheck:
    return DeviceCheck(
        device=name,
        site="s",
        platform="cisco_ios",
        address="198.19.0.9",
        ssh=ssh,
        host_key=host_key,
        host_key_seen=None,
        host_key_pinned=None,
        snmp=Probe("ok"),
        interfaces=(InterfaceState("gi1", True, True), InterfaceState("gi2", False, False)),
        duration_s=0.2,
    )


def test_render_lists_devices_and_explains_failures() -> None:
    """The table has one row per device with interface states; failures are spelled out below."""
    text = render(
        [
            sample("sw1", Probe("ok")),
            sample("sw2", Probe("host-key", "sw2: connect: changed host key"), "changed"),
        ],
        1.5,
    )
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["DEVICE", "SITE", "PLATFORM", "ADDRESS"]
    assert "1 up, down: gi2(admin)" in lines[1]
    assert "changed" in lines[2]
    assert "sw2: ssh: sw2: connect: changed host key" in text
    assert text.endswith("1/2 device(s) fully reachable in 1.50 s")


@pytest.mark.twin
def test_check_of_a_site_as_json(lab: Lab) -> None:
    """`device check --site S --json` reaches the site's 3 devices over their own sessions (the
    switches' SSH, key pinned; the FortiGate's REST API, certificate pinned), SNMP ok, interfaces
    with admin and oper state."""
    result = CliRunner().invoke(
        device,
        ["check", "--site", "rennes-la-sagesse", "--json", "--inventory", lab.inv.path],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True
    rows = {d["device"]: d for d in doc["devices"]}
    assert set(rows) == {"rns-fw1", "rns-sw1", "rns-sw2"}
    for row in rows.values():
        assert (row["ssh"]["status"], row["host_key"], row["snmp"]["status"]) == (
            "ok",
            "pinned",
            "ok",
        )
        gi = {i["name"]: i for i in row["interfaces"]}
        mgmt = th.target(lab, row["device"]).device.management.interface  # its own name
        assert gi[mgmt]["admin_up"] and gi[mgmt]["oper_up"]
    assert rows["rns-sw1"]["platform"] == "cisco_iosxe"
    assert "GigabitEthernet0/0" in {i["name"] for i in rows["rns-sw1"]["interfaces"]}
    assert rows["rns-fw1"]["platform"] == "fortigate"


@pytest.mark.twin
def test_check_names_a_changed_tls_certificate(lab: Lab, tmp_path: Path) -> None:
    """An HTTPS device whose certificate is not the pinned one is a failed check that says so,
    with both fingerprints, like a changed SSH host key (not "not checked")."""
    real = th.target(lab, "rns-fw1")
    seen = tls.pin_for(real)
    assert seen is not None and real.device.https is not None
    wrong = "sha256:" + "0" * 64
    (tmp_path / "tls_pins").write_text(f"rns-fw1 {wrong}\n")
    row = check_device(dataclasses.replace(real, tls_pins=tmp_path / "tls_pins"), Timeouts())
    assert (row.ssh.status, row.host_key, row.ok) == ("certificate", "changed", False)
    assert (row.host_key_pinned, row.host_key_seen) == (wrong, seen)
    assert "nothing was sent" in row.ssh.detail
    assert f"rns-fw1: ssh: {row.ssh.detail}" in render([row], 0.1)


@pytest.mark.twin
def test_check_reports_a_cut_off_device_and_fails(lab: Lab) -> None:
    """With one device cut off, the table shows its timeout, the others are fine, exit code 6."""
    with th.management_cut(lab, "nts-sw1"):
        result = CliRunner().invoke(
            device,
            ["check", "--site", "nantes-jules-verne", "--timeout", "3", "-i", lab.inv.path],
        )
    assert result.exit_code == DeviceError.exit_code, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line}
    assert rows["nts-sw1"][4:7] == ["timeout", "not", "checked"]
    assert rows["nts-fw1"][4:7] == ["ok", "pinned", "ok"]
    assert "nts-sw1: ssh: nts-sw1: connect: no answer" in result.output
    assert "1/2 device(s) fully reachable" in result.output

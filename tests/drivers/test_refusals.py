"""Change sets the drivers refuse before opening any connection: an IOS line smuggling another
command, an nft script outside the agent's table, an SNMP line that is not an ifAdminStatus SET.
The target is 127.0.0.1 port 9, so a refusal that came too late would be a connection error."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from agent.drivers import ChangeSet, Target
from agent.errors import DeviceError
from agent.inventory.models import (
    Device,
    DeviceRole,
    Management,
    Platform,
    SnmpSettings,
    SshSettings,
)
from agent.platforms.cisco_ios.driver import IosDriver
from agent.platforms.linux_nftables.driver import NftablesDriver
from agent.platforms.snmp.driver import SnmpDriver


def local(platform: Platform, tmp: Path) -> Target:
    device = Device(
        name="lo-dev",
        role=DeviceRole.ACCESS_SWITCH,
        platform=platform,
        management=Management(address=ipaddress.IPv4Address("127.0.0.1"), interface="lo"),
        ssh=SshSettings(username="root", key="file:key", port=9),
        snmp=SnmpSettings(user="u", auth="file:a", priv="file:p", port=9),
    )
    return Target(device=device, site="s", base_dir=tmp, known_hosts=None)


@pytest.mark.parametrize("line", ["interface gi1\nreload", "no\rshutdown", "description x\x1b[2J"])
def test_ios_refuses_control_characters(tmp_path: Path, line: str) -> None:
    """A configuration line with a newline or other control character is never sent."""
    drv = IosDriver(local("cisco_ios", tmp_path))
    with pytest.raises(DeviceError, match="refused before sending"):
        drv.apply(ChangeSet(("interface gi1", line)))
    assert not drv.is_open()


def test_nftables_refuses_scripts_outside_its_table(tmp_path: Path) -> None:
    """`flush ruleset` is refused by the scope check, before any connection."""
    drv = NftablesDriver(local("linux_nftables", tmp_path))
    with pytest.raises(DeviceError, match="refused before sending: line 1"):
        drv.apply(ChangeSet(("flush ruleset",)))
    assert not drv.is_open()


def test_snmp_refuses_anything_but_admin_status(tmp_path: Path) -> None:
    """An SNMP change set line that is not `ifAdminStatus <if> up|down` is refused."""
    drv = SnmpDriver(local("cisco_ios", tmp_path))
    with pytest.raises(DeviceError, match="refused before sending"):
        drv.apply(ChangeSet(("sysName evil",)))
    assert not drv.is_open()

"""cisco_iosxe: a Cisco Catalyst switch running IOS-XE, reached over SSH (netmiko `cisco_xe`).
`render` writes interface shutdowns and an isolation state's packet rules as extended ACLs on the
switch's SVIs (`ip access-list extended CORDON-...`, `ip access-group ... in|out`), `driver`
converges the device to them, reads them back exactly (remarks carry the rule ids) and arms
IOS-XE's own revert timer (`configure terminal revert timer N` / `configure confirm`), `parse`
reads its outputs. `twin` starts its twin device (an IOS-XE CLI emulator behind sshd, its state in
a per-device daemon; only the lab imports it, through the registry).
An L3 switch: it bridges its VLANs and routes between the ones whose SVI has an address.
This module holds only the registration: netmiko loads when a driver is made."""

from __future__ import annotations

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms.cisco_iosxe.parse import config_lines, rule_comments_in
from agent.platforms.cisco_iosxe.render import (
    acl_comments,
    acl_script,
    counted_as,
    shut_lines,
)
from agent.platforms.spec import Rules, Spec


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.cisco_iosxe.driver import IosXeDriver  # noqa: PLC0415

    return IosXeDriver(target, timeouts)


SPEC = Spec(
    name="cisco_iosxe",
    driver=_driver,
    shuts_by="cli",
    shut_lines=shut_lines,
    rules=Rules(
        method="acl",
        script=acl_script,
        comments=acl_comments,
        comments_in=rule_comments_in,
        counted_as=counted_as,
        home="the CORDON-* extended ACLs",
    ),
    config_lines=config_lines,
    twin="agent.platforms.cisco_iosxe.twin",
    reverts_config=True,
    l3_switch=True,
)

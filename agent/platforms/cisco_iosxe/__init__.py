"""cisco_iosxe: a Cisco Catalyst switch running IOS-XE, reached over SSH (netmiko `cisco_xe`).
`render` writes interface shutdowns and an isolation state's packet rules as extended ACLs on the
switch's SVIs (`ip access-list extended CORDON-...`, `ip access-group ... in|out`), `driver`
converges the device to them, reads them back exactly (remarks carry the rule ids) and arms
IOS-XE's own revert timer (`configure terminal revert timer N` / `configure confirm`), `parse`
reads its outputs. `twin` starts its twin device (an IOS-XE CLI emulator behind sshd, its state in
a per-device daemon; only the lab imports it, through the registry).
An L3 switch: it bridges its VLANs and routes between the ones whose SVI has an address.
This module holds only the registration: netmiko loads when a driver is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.cisco_iosxe import parse as _parse
    from agent.platforms.cisco_iosxe import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.cisco_iosxe.parse")
    _render = lazy.module("agent.platforms.cisco_iosxe.render")


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.cisco_iosxe.driver import IosXeDriver  # noqa: PLC0415

    return IosXeDriver(target, timeouts)


SPEC = Spec(
    name="cisco_iosxe",
    driver=_driver,
    shuts_by="cli",
    shut_lines=_render.shut_lines,
    rules=Rules(
        method="acl",
        script=_render.acl_script,
        comments=_render.acl_comments,
        comments_in=_parse.rule_comments_in,
        counted_as=_render.counted_as,
        home="the CORDON-* extended ACLs",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.cisco_iosxe.twin",
    reverts_config=True,
    l3_switch=True,
)

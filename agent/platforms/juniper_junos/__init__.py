"""juniper_junos: a Juniper EX switch reached over NETCONF, an L3 switch (`Spec.l3_switch`): it
bridges its VLANs (access ports `ge-0/0/N`, trunks `xe-0/1/N`) and routes its site's zones where
its IRB units (`irb.110`) carry an address; without one it is an access switch. `render` writes
interface `disable` lines and Cordon's packet rules as stateless firewall filters applied to the
IRB units (`CORDON-...`), `driver` loads them as one candidate transaction with ncclient and
reads them back (`parse`); its native safety net is Junos's own `commit confirmed`. `twin`
starts its twin device (a NETCONF server behind sshd's `netconf` subsystem, its configuration
held by a small per-device daemon; only the lab imports it, through the registry).

`juniper_srx` is the same device family as an edge firewall (an SRX): the same NETCONF driver,
transaction, `commit confirmed` dead-man and twin, but Cordon's packet rules are stateful
security policies between the device's own security zones (`srx_render`, `srx_parse`,
`srx_driver`). It is a platform name of its own because the registry keys one rules method per
platform (the renderer sees the isolation state, not the device's role).
This module holds only the registrations: ncclient loads when a driver is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.juniper_junos import parse as _parse
    from agent.platforms.juniper_junos import render as _render
    from agent.platforms.juniper_junos import srx_parse as _srx_parse
    from agent.platforms.juniper_junos import srx_render as _srx_render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.juniper_junos.parse")
    _render = lazy.module("agent.platforms.juniper_junos.render")
    _srx_parse = lazy.module("agent.platforms.juniper_junos.srx_parse")
    _srx_render = lazy.module("agent.platforms.juniper_junos.srx_render")

NAME = "juniper_junos"
SRX_NAME = "juniper_srx"
PREFIX = "CORDON-"  # the names of Cordon's filters and policies (the renderers' too)
METHOD = (
    "junos-filter"  # the playbook method of the EX's packet rules (`render.METHOD` re-exports it)
)
SRX_METHOD = "junos-policy"  # the SRX's (its renderer names none of its own)


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.juniper_junos.driver import JunosDriver  # noqa: PLC0415

    return JunosDriver(target, timeouts)


def _srx_driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.juniper_junos.srx_driver import SrxDriver  # noqa: PLC0415

    return SrxDriver(target, timeouts)


SPEC = Spec(
    name=NAME,
    driver=_driver,
    shuts_by="cli",
    shut_lines=_render.disable_lines,
    rules=Rules(
        method=METHOD,
        script=_render.filters_script,
        comments=_render.filter_names,
        comments_in=_parse.names_in,
        counted_as=_render.counted_as,
        home=f"the {PREFIX} firewall filters",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.juniper_junos.twin",
    kernel_names=False,
    reverts_config=True,  # `commit confirmed` rolls the whole commit back (ports too)
    l3_switch=True,  # an EX bridges its VLANs and routes between its addressed IRB units
)

SRX_SPEC = Spec(
    name=SRX_NAME,
    driver=_srx_driver,
    shuts_by="cli",
    shut_lines=_render.disable_lines,
    rules=Rules(
        method=SRX_METHOD,
        script=_srx_render.script,
        comments=_srx_render.comments,
        comments_in=_srx_parse.names_in,
        counted_as=_srx_render.counted_as,
        home=f"the {PREFIX} security policies",
    ),
    config_lines=_srx_parse.config_lines,
    twin="agent.platforms.juniper_junos.twin",
    forwards=True,
    kernel_names=False,
    reverts_config=True,  # `commit confirmed` rolls the whole commit back (ports too)
)

"""aruba_aoscx: an HPE Aruba AOS-CX switch that routes its site's zones (VLAN interfaces): an L3
switch, bridging its VLANs and routing between the VLAN interfaces that carry an address.
`render` writes interface shutdown lines and Cordon's packet rules as AOS-CX ACLs applied
routed-in / routed-out on VLAN interfaces; `driver` sends both over the REST API (pinned HTTPS)
and reads them back (`parse`); its native dead-man is the switch's `checkpoint auto N` (over the
CLI, `cli`). `twin` starts its twin device (an emulated REST API and CLI whose effects are real
in the namespace; only the lab imports it, through the registry); the documented request and
response shapes it follows are in `fixtures/`.
This module holds only the registration: the driver's transports load when a driver is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.aruba_aoscx import parse as _parse
    from agent.platforms.aruba_aoscx import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.aruba_aoscx.parse")
    _render = lazy.module("agent.platforms.aruba_aoscx.render")


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.aruba_aoscx.driver import AoscxDriver  # noqa: PLC0415

    return AoscxDriver(target, timeouts)


SPEC = Spec(
    name="aruba_aoscx",
    driver=_driver,
    shuts_by="cli",
    shut_lines=_render.shut_lines,
    rules=Rules(
        method="aoscx_acl",
        script=_render.script,
        comments=_render.comments,
        comments_in=_parse.comments_in,
        counted_as=_render.counted_as,
        home="the switch's CORDON-* ACLs",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.aruba_aoscx.twin",
    reverts_config=True,
    kernel_names=False,
    l3_switch=True,
)

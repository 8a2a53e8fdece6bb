"""fortigate: a Fortinet FortiGate (FortiOS 7.x) reached over its REST API. `render` writes the
whole set of FortiOS objects Cordon owns (`cordon-` addresses, services and policies, its
policies first), `driver` converges the device to it over the pinned HTTPS API and reads it back
(`parse`), its dead-man is FortiOS's revert mode (`cfg-save revert`), `twin` starts its twin
device (an emulated REST API whose policies become the namespace's own nftables; only the lab
imports it, through the registry).
This module holds only the registration: the driver loads when one is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.fortigate import parse as _parse
    from agent.platforms.fortigate import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.fortigate.parse")
    _render = lazy.module("agent.platforms.fortigate.render")


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.fortigate.driver import FortiGateDriver  # noqa: PLC0415

    return FortiGateDriver(target, timeouts)


SPEC = Spec(
    name="fortigate",
    driver=_driver,
    shuts_by="cli",
    shut_lines=_render.shut_lines,
    rules=Rules(
        method="fortios",
        script=_render.script,
        comments=_render.comments,
        comments_in=_render.comments_in,
        counted_as=_render.counted_as,
        home="the FortiGate's cordon- policies",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.fortigate.twin",
    forwards=True,
    kernel_names=True,
)

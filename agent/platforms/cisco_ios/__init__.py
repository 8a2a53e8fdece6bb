"""cisco_ios: an IOS-style switch or router reached over SSH. `render` writes interface shutdown
lines, `driver` sends them in configuration mode with netmiko and reads back `show interface`
(`parse`). It has no native safety net here: the controller re-applies the fail-safe state when
the device answers again. `twin` starts its twin device (FRR's vtysh behind sshd; only the lab
imports it, through the registry).
This module holds only the registration: netmiko loads when a driver opens its first session,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Spec

if TYPE_CHECKING:
    from agent.platforms.cisco_ios import parse as _parse
    from agent.platforms.cisco_ios import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.cisco_ios.parse")
    _render = lazy.module("agent.platforms.cisco_ios.render")


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.cisco_ios.driver import IosDriver  # noqa: PLC0415

    return IosDriver(target, timeouts)


SPEC = Spec(
    name="cisco_ios",
    driver=_driver,
    shuts_by="cli",
    shut_lines=_render.ios_lines,
    config_lines=_parse.config_lines,
    twin="agent.platforms.cisco_ios.twin",
)

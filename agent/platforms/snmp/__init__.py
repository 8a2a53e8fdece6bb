"""snmp: not an inventory platform but a method every device with SNMP settings may be reached
and changed by (ifAdminStatus SETs), whatever its platform. `render` writes the change lines,
`driver` sends them (pysnmp, SNMPv3 authPriv) and reads back IF-MIB (`mib`, `parse`, `status`:
the poller's interface reads). `twin` starts its twin agent (snmpd; only the lab imports it,
through the registry).
This module holds only the registration: pysnmp loads when a driver is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Spec

if TYPE_CHECKING:
    from agent.platforms.snmp import render as _render
else:  # imported at a first call (#18)
    _render = lazy.module("agent.platforms.snmp.render")


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.snmp.driver import SnmpDriver  # noqa: PLC0415

    return SnmpDriver(target, timeouts)


SPEC = Spec(
    name="snmp",
    driver=_driver,
    via="snmp",
    shuts_by="snmp",
    shut_lines=_render.snmp_lines,
    twin="agent.platforms.snmp.twin",
)

"""juniper_junos: a Junos device (an EX switch that routes its site's zones on IRB interfaces, or
any Junos router) reached over NETCONF. `render` writes interface `disable` lines and Cordon's
packet rules as stateless firewall filters (`CORDON-...`), `driver` loads them as one candidate
transaction with ncclient and reads them back (`parse`); its native safety net is Junos's own
`commit confirmed`. `twin` starts its twin device (a NETCONF server behind sshd's `netconf`
subsystem, its configuration held by a small per-device daemon; only the lab imports it,
through the registry).
This module holds only the registration: ncclient loads when a driver is made."""

from __future__ import annotations

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms.juniper_junos.parse import config_lines, names_in
from agent.platforms.juniper_junos.render import (
    METHOD,
    PREFIX,
    counted_as,
    disable_lines,
    filter_names,
    filters_script,
)
from agent.platforms.spec import Rules, Spec

NAME = "juniper_junos"


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.juniper_junos.driver import JunosDriver  # noqa: PLC0415

    return JunosDriver(target, timeouts)


SPEC = Spec(
    name=NAME,
    driver=_driver,
    shuts_by="cli",
    shut_lines=disable_lines,
    rules=Rules(
        method=METHOD,
        script=filters_script,
        comments=filter_names,
        comments_in=names_in,
        counted_as=counted_as,
        home=f"the {PREFIX} firewall filters",
    ),
    config_lines=config_lines,
    twin="agent.platforms.juniper_junos.twin",
    forwards=True,
    kernel_names=False,
    reverts_config=True,  # `commit confirmed` rolls the whole commit back (ports too)
)

"""stormshield: a Stormshield SNS appliance (firmware 4.x LTSB) reached over its serverd HTTPS
API ("SSL API"). `render` writes Cordon's filter rules (commented `cordon ...`, first in the
active filter policy), `driver` converges them and activates the policy as one unit over a
pinned connection, reads them back (`parse`, `serverd`); `twin` starts its twin device (an
HTTPS emulation of the API whose rules become nftables in the namespace; only the lab imports
it, through the registry). SNS has no native safety net (no commit-confirm, no revert timer):
the controller's dead-man applies.
This module holds only the registration: the driver loads when one is made."""

from __future__ import annotations

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms.spec import Rules, Spec
from agent.platforms.stormshield.parse import config_lines
from agent.platforms.stormshield.render import comments, comments_in, counted_as, script

NAME = "stormshield"


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.stormshield.driver import StormshieldDriver  # noqa: PLC0415

    return StormshieldDriver(target, timeouts)


SPEC = Spec(
    name=NAME,
    driver=_driver,
    rules=Rules(
        method="sns",
        script=script,
        comments=comments,
        comments_in=comments_in,
        counted_as=counted_as,
        home="the active filter policy (rules commented 'cordon ...')",
    ),
    config_lines=config_lines,
    twin="agent.platforms.stormshield.twin",
    forwards=True,
    kernel_names=False,
)

"""stormshield: a Stormshield SNS appliance (firmware 4.x LTSB) reached over its serverd HTTPS
API ("SSL API"). `render` writes Cordon's filter rules (commented `cordon ...`, first in the
active filter policy), `driver` converges them and activates the policy as one unit over a
pinned connection, reads them back (`parse`, `serverd`); `twin` starts its twin device (an
HTTPS emulation of the API whose rules become nftables in the namespace; only the lab imports
it, through the registry). SNS has no native safety net (no commit-confirm, no revert timer):
the controller's dead-man applies.
This module holds only the registration: the driver loads when one is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.stormshield import parse as _parse
    from agent.platforms.stormshield import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.stormshield.parse")
    _render = lazy.module("agent.platforms.stormshield.render")

NAME = "stormshield"


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.stormshield.driver import StormshieldDriver  # noqa: PLC0415

    return StormshieldDriver(target, timeouts)


SPEC = Spec(
    name=NAME,
    driver=_driver,
    rules=Rules(
        method="sns",
        script=_render.script,
        comments=_render.comments,
        comments_in=_render.comments_in,
        counted_as=_render.counted_as,
        home="the active filter policy (rules commented 'cordon ...')",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.stormshield.twin",
    forwards=True,
    kernel_names=False,
)

"""linux_nftables: a Linux firewall reached over SSH. `render` writes the agent's whole
`table inet cordon`, `driver` loads it with `nft -c -f` then `nft -f` and reads it back (`parse`),
`revert` is its native safety net (a detached timer on the device that reloads the previous table
unless confirmed), `twin` starts its twin device (sshd in a namespace with its own nftables; only
the lab imports it, through the registry).
This module holds only the registration: paramiko loads when a driver is made,
its renderers and parsers at their first call (`agent.platforms.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms import lazy
from agent.platforms.spec import Rules, Spec

if TYPE_CHECKING:
    from agent.platforms.linux_nftables import parse as _parse
    from agent.platforms.linux_nftables import render as _render
else:  # imported at a first call (#18)
    _parse = lazy.module("agent.platforms.linux_nftables.parse")
    _render = lazy.module("agent.platforms.linux_nftables.render")

TABLE = "cordon"  # the agent's nftables table (`table inet cordon`), the renderer's too


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.linux_nftables.driver import NftablesDriver  # noqa: PLC0415

    return NftablesDriver(target, timeouts)


SPEC = Spec(
    name="linux_nftables",
    driver=_driver,
    rules=Rules(
        method="nft",
        script=_render.nft_table,
        comments=_render.nft_comments,
        comments_in=_parse.rule_comments_in,
        counted_as=_render.counted_as,
        home=f"table inet {TABLE}",
    ),
    config_lines=_parse.config_lines,
    twin="agent.platforms.linux_nftables.twin",
    forwards=True,
    kernel_names=True,
    local_exceptions=True,
)

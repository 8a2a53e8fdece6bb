"""linux_nftables: a Linux firewall reached over SSH. `render` writes the agent's whole
`table inet cordon`, `driver` loads it with `nft -c -f` then `nft -f` and reads it back (`parse`),
`revert` is its native safety net (a detached timer on the device that reloads the previous table
unless confirmed). Its twin is still in `agent.lab` (sshd in a namespace with its own nftables:
`agent.lab.daemons.start_sshd`, chosen by `agent.lab.build`).
This module holds only the registration: paramiko loads when a driver is made."""

from __future__ import annotations

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms.linux_nftables.render import nft_table
from agent.platforms.spec import Spec


def _driver(target: Target, timeouts: Timeouts | None) -> Driver:
    from agent.platforms.linux_nftables.driver import NftablesDriver  # noqa: PLC0415

    return NftablesDriver(target, timeouts)


SPEC = Spec(name="linux_nftables", driver=_driver, rules_by="nft", rules_script=nft_table)

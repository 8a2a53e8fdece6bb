"""Owns the linux_nftables twin device: a Linux firewall is its own network namespace (with its
own nftables) where a real sshd answers; the driver's `nft` commands run there as on the device.
Imports the lab's primitives only (`agent.lab.twins`); only the lab imports it, through
`agent.platforms.registry.twin`."""

from __future__ import annotations

from agent.lab.twins import Node


def start(node: Node) -> None:
    node.sshd()

"""Owns the SNMP twin agent: a net-snmp snmpd (SNMPv3 authPriv) in the namespace of a device that
declares SNMP, answering IF-MIB in the inventory's interface names. Imports the lab's primitives
(`agent.lab.daemons`, `netns`, `topology`, `twins`); only the lab imports it, through
`agent.platforms.registry.twin`."""

from __future__ import annotations

import json

from agent.lab import daemons, netns
from agent.lab.topology import DaemonSpec
from agent.lab.twins import Node


def start(node: Node) -> None:
    """Start the device's snmpd if it declares SNMP with a user (else nothing)."""
    snmp = node.device.snmp
    if not node.spec.snmp or snmp is None or snmp.user is None or node.snmp_secrets is None:
        return
    auth, priv = node.snmp_secrets
    node.record(
        daemons.start_snmpd(
            node.spec.ns,
            node.dir,
            node.spec.device,
            str(node.spec.mgmt_address),
            user=snmp.user,
            auth_pass=auth,
            priv_pass=priv,
            port=node.spec.snmp_port,
            if_names=_renamed_indexes(node.spec),
        )
    )


def _renamed_indexes(spec: DaemonSpec) -> dict[int, str]:
    """ifIndex -> inventory name of each interface the twin renamed (and its VLAN legs,
    `Gi1-0-48.23` -> `Gi1/0/48.23`), read from the device's namespace."""
    if not spec.renamed:
        return {}
    to_inventory = {kernel: name for name, kernel in spec.renamed}
    links = json.loads(netns.run(["ip", "-j", "link", "show"], netns=spec.ns).stdout or "[]")
    out: dict[int, str] = {}
    for link in links:
        kernel, _, leg = str(link.get("ifname", "")).partition(".")
        if kernel in to_inventory:
            out[int(link["ifindex"])] = to_inventory[kernel] + (f".{leg}" if leg else "")
    return out

"""Owns starting the aruba_aoscx twin device. An AOS-CX switch is an L3 switch (`Spec.l3_switch`):
the lab builds it with one bridge per VLAN, the bridge of a zone it is the gateway of named as
its VLAN interface (`vlan110`, carrying the inventory's address: the lab routes between them),
the others `vl<N>`, its access ports renamed `1-1-1`; a trunk port (a cabling end, `1/1/49`) is
one veth per VLAN (`1-1-49.110`, the twin has no 802.1Q), each in its VLAN's bridge, and its
admin state is theirs. Here two processes emulate the management plane: the REST API server
(`twin_api`, HTTPS on the management address, with the lab's certificate and password) and the
CLI (`twin_cli`, sshd's ForceCommand) for `checkpoint auto`.

Test-only time scale: `CORDON_LAB_AOSCX_MINUTE_S` (seconds in one of the switch's minutes,
default 60; a setting of `agent.settings`), read here at `lab up` only, so a twin test can see
`checkpoint auto 1` expire in seconds; the agent's driver never reads it.
Imports the lab's primitives (`agent.lab.daemons`, `netns`, `twins`), settings and errors; only
the lab imports it, through `agent.platforms.registry.twin`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from agent import settings
from agent.errors import LabError
from agent.lab import daemons, netns
from agent.lab.twins import Node

_VLAN_IF = re.compile(r"^vlan([0-9]{1,4})$")


def kernel_map(node: Node) -> dict[str, str]:
    """Inventory name -> kernel name of each interface the switch manages (not management)."""
    renamed = dict(node.spec.renamed)
    out: dict[str, str] = {}
    for iface in node.device.interfaces:
        if iface.name == node.device.management.interface:
            continue
        out[iface.name] = renamed.get(iface.name, iface.name)
    return out


def start(node: Node) -> None:
    if node.https is None or node.https.password is None or node.https.username is None:
        raise LabError(
            f"{node.spec.device}: an aruba_aoscx device needs https (username, password) "
            "in the inventory: its twin is the REST API"
        )
    ns = node.spec.ns
    names = kernel_map(node)
    have = {
        link["ifname"]
        for link in json.loads(netns.run(["ip", "-j", "link", "show"], netns=ns).stdout or "[]")
    }
    for name, kernel in list(names.items()):
        m = _VLAN_IF.match(name)
        if kernel not in have and m is not None and f"vl{m.group(1)}" in have:
            names[name] = f"vl{m.group(1)}"  # a VLAN interface no zone has as its gateway
    # a trunk port (a cabling end): the twin has no 802.1Q, so it is one veth per VLAN,
    # `<kernel>.<vid>`, each already in its VLAN's bridge; the port's state is theirs
    trunks = {
        name: sorted(
            h for h in have if h.startswith(f"{kernel}.") and h[len(kernel) + 1 :].isdigit()
        )
        for name, kernel in names.items()
        if kernel not in have
    }
    trunks = {name: legs for name, legs in trunks.items() if legs}
    missing = sorted(n for n, k in names.items() if k not in have and n not in trunks)
    if missing:
        raise LabError(
            f"{node.spec.device}: interface(s) {', '.join(missing)} have no counterpart in the "
            "twin (a VLAN interface needs at least one port of this switch in its VLAN)"
        )
    vids = {i.vlan for i in node.device.interfaces if i.vlan is not None}
    found = {vid: [b for b in (names.get(f"vlan{vid}"), f"vl{vid}") if b in have] for vid in vids}
    bridges = {vid: b[0] for vid, b in sorted(found.items()) if b}  # a VLAN's bridge in the twin
    start = {
        i.name: {
            "description": i.description,
            "vlan": i.vlan if i.address is None else None,
            "address": str(i.address) if i.address is not None else None,
            "trunk": [int(leg.rsplit(".", 1)[1]) for leg in trunks.get(i.name, [])],
        }
        for i in node.device.interfaces
        if i.name in names
    }
    ctl = node.dir / "aoscx-ctl.sock"
    cfg = {
        "hostname": node.spec.device,
        "address": str(node.spec.mgmt_address),
        "port": node.https.port,
        "cert": str(node.https.cert),
        "key": str(node.https.key),
        "username": node.https.username,
        "password": node.https.password,
        "interfaces": names,
        "trunks": trunks,
        "bridges": bridges,
        "start": start,
        "minute_s": settings.current().lab_aoscx_minute_s,
        "ctl": str(ctl),
    }
    path = node.dir / "aoscx-api.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(cfg, fh)
    node.record(
        daemons.start_api_server(
            ns,
            node.dir,
            node.spec.device,
            "aoscx-api",
            "agent.platforms.aruba_aoscx.twin_api",
            [str(path)],
            address=str(node.spec.mgmt_address),
            port=node.https.port,
        )
    )
    cli = Path(__file__).resolve().parent / "twin_cli.py"
    node.sshd(f"exec {sys.executable} -I {cli} {node.spec.device} {ctl}")

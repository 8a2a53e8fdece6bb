"""Owns starting the stormshield twin device: its configuration (the inventory's interfaces
with their kernel names, a baseline filter policy whose non-Cordon `pass` rule lets the site
work, the API credentials the lab generated) written 0600 in the device's directory, and its
HTTPS management API (`twin_api`, the SNS "SSL API" emulation) started as a journaled process
in the device's namespace on its management address. Imports the lab's primitives
(`agent.lab.daemons`, `agent.lab.twins`); only the lab imports it, through the registry."""

from __future__ import annotations

import json
import os

from agent.errors import LabError
from agent.lab import daemons
from agent.lab.twins import Node

MODULE = "agent.platforms.stormshield.twin_api"
KIND = "sns-api"


def baseline() -> dict[str, dict[str, object]]:
    """The appliance's filter slots as the site runs them: slot 05 (active) holds the site's
    own policy, a separator and a pass rule; slot 01 the factory 'block all'."""
    return {
        "01": {
            "name": "block all",
            "lines": [
                {"kind": "filter", "index": 1, "state": "on", "action": "block",
                 "srctarget": "any", "dsttarget": "any", "comment": "Block all"},
            ],
        },
        "05": {
            "name": "site policy",
            "lines": [
                {"kind": "separator", "comment": "Site rules"},
                {"kind": "filter", "index": 2, "state": "on", "action": "pass",
                 "srctarget": "any", "dsttarget": "any", "comment": "site: pass all"},
            ],
        },
    }  # fmt: skip


def start(node: Node) -> None:
    https = node.https
    if https is None or https.username is None or https.password is None:
        raise LabError(
            f"{node.spec.device}: a stormshield device needs https.username and https.password",
            hint="give the device an `https:` block with a username and a 'file:' password",
        )
    renamed = dict(node.spec.renamed)
    names = [i.name for i in node.device.interfaces]
    if node.device.management.interface not in names:
        names.append(node.device.management.interface)
    conf = {
        "device": node.device.name,
        "address": str(node.spec.mgmt_address),
        "port": https.port,
        "cert": str(https.cert),
        "key": str(https.key),
        "username": https.username,
        "password": https.password,
        "log": str(node.dir / f"{KIND}.log"),
        "interfaces": {n: {"kernel": renamed.get(n, n), "state": "1"} for n in names},
        "slots": baseline(),
        "active": "05",
    }
    node.dir.mkdir(parents=True, exist_ok=True)
    path = node.dir / "sns.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(conf, fh)
    node.record(
        daemons.start_api_server(
            node.spec.ns,
            node.dir,
            node.spec.device,
            KIND,
            MODULE,
            [str(path)],
            address=str(node.spec.mgmt_address),
            port=https.port,
        )
    )

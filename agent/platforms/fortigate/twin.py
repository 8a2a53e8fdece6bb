"""Owns the fortigate twin device: its baseline configuration (its interfaces from the inventory,
the site's own accept policy) written to the node's directory, and its emulated FortiOS REST API
(`twin_api`) started in the device's namespace with the certificate and token the lab generated.
Imports the lab's primitives only; only the lab imports it, through the registry."""

from __future__ import annotations

import json
import os

from agent.errors import LabError
from agent.lab import daemons
from agent.lab.twins import Node

# the site's own policy, placed after Cordon's: the site works normally (any to any, accept)
BASELINE_POLICY = {
    "policyid": 1000,
    "name": "site-allow-all",
    "srcintf": [{"name": "any"}],
    "dstintf": [{"name": "any"}],
    "srcaddr": [{"name": "all"}],
    "dstaddr": [{"name": "all"}],
    "service": [{"name": "ALL"}],
    "action": "accept",
    "schedule": "always",
    "status": "enable",
    "comments": "the hospital's own policy",
}


def start(node: Node) -> None:
    https = node.https
    if https is None or https.token is None:
        raise LabError(f"{node.spec.device}: a fortigate twin needs https with a token")
    config = node.dir / "fortigate.json"
    running = {
        "interface": [{"name": i.name, "status": "up"} for i in node.device.interfaces],
        "address": [],
        "service": [],
        "policy": [BASELINE_POLICY],
        "local-in-policy": [],  # FortiOS ships none: all local-in traffic allowed by default
    }
    config.write_text(json.dumps({"running": running}))
    token = node.dir / "api_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(https.token)
    address = str(node.spec.mgmt_address)
    node.record(
        daemons.start_api_server(
            node.spec.ns,
            node.dir,
            node.spec.device,
            "fortios-api",
            "agent.platforms.fortigate.twin_api",
            [
                "--dir",
                str(node.dir),
                "--address",
                address,
                "--port",
                str(https.port),
                "--cert",
                str(https.cert),
                "--key",
                str(https.key),
                "--token-file",
                str(token),
            ],
            address=address,
            port=https.port,
        )
    )

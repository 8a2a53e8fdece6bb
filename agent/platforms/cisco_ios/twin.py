"""Owns the cisco_ios twin device: an FRR instance (zebra, staticd) in the device's namespace,
whose vtysh is the IOS-style CLI that sshd's ForceCommand runs at login; where the twin had to
rename interfaces (`Gi1/0/1`), the CLI front translates names both ways so the driver sees the
inventory's. Imports the lab's primitives (`agent.lab.build`, `daemons`, `twins`); only the lab
imports it, through `agent.platforms.registry.twin`."""

from __future__ import annotations

import json

from agent.errors import LabError
from agent.lab import daemons
from agent.lab.build import frr_pathspace
from agent.lab.twins import Node


def start(node: Node) -> None:
    pathspace = frr_pathspace(node.lab, node.spec.device)
    frr_dir = daemons.frr_dir(pathspace)
    if frr_dir.exists():  # another FRR instance's: never record (and later delete) it
        raise LabError(
            f"FRR pathspace {pathspace} is in use ({frr_dir} exists)",
            hint="another twin or FRR instance uses that name; stop it first",
        )
    node.keep("frr_dirs", str(frr_dir))
    for proc in daemons.start_frr(node.spec.ns, node.dir, node.spec.device, pathspace):
        node.record(proc)
    force = daemons.vtysh_force_command(pathspace)
    if node.spec.renamed:  # the CLI answers in the inventory's names (`Gi1/0/1`)
        names_file = node.dir / "ifnames.json"
        names_file.write_text(json.dumps(dict(node.spec.renamed)), encoding="utf-8")
        force = daemons.translating_force_command(pathspace, names_file)
    node.sshd(force)

"""Helpers of the drivers' twin tests: targets, the flow matrix, a device's management link and
sshd log, and the audit records the drivers wrote. Observation only, through the twin's own
namespaces; every change a test makes goes through a driver under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.audit import current_log_dir
from agent.drivers.base import Target
from agent.inventory.models import Inventory
from agent.lab import flows, netns
from agent.lab.state import LabState
from agent.lab.topology import Blueprint


@dataclass(frozen=True)
class Lab:
    """The running twin as the drivers' tests see it (repr kept short and secret-free)."""

    inv: Inventory
    bp: Blueprint
    state: LabState

    def __repr__(self) -> str:
        return f"Lab({self.inv.path})"


def target(lab: Lab, device: str) -> Target:
    return Target.of(lab.inv, device)


def closed(lab: Lab) -> set[str]:
    """Names of the declared flows that do not connect right now (real TCP probes)."""
    return {o.flow.name for o in flows.observe(lab.inv, lab.bp) if not o.observed_open}


def kernel_name(lab: Lab, device: str, ifname: str) -> str:
    """The twin's kernel name of the device's interface `ifname` (the inventory's name:
    `GigabitEthernet1/0/1` is `Gi1-0-1` in the namespace, `gi1` stays `gi1`)."""
    return lab.bp.ifnames[device][ifname]


def link_up(lab: Lab, device: str, ifname: str) -> bool:
    """The kernel's administrative state of the device's interface `ifname` (inventory name)."""
    out = netns.run(
        ["ip", "-o", "link", "show", kernel_name(lab, device, ifname)],
        netns=lab.bp.device_ns[device],
    ).stdout
    return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


def nft_table(lab: Lab, device: str, table: str) -> str:
    """`nft list table inet <table>` seen from inside the device's namespace ('' if absent)."""
    done = netns.run(
        ["nft", "list", "table", "inet", table], netns=lab.bp.device_ns[device], check=False
    )
    return done.stdout if done.returncode == 0 else ""


@contextmanager
def management_cut(lab: Lab, device: str) -> Iterator[None]:
    """The device's management link down for the block, and back up whatever happens."""
    ns = lab.bp.device_ns[device]
    found = lab.inv.find_device(device)
    assert found is not None, device
    mgmt = kernel_name(lab, device, found[1].management.interface)
    netns.run(["ip", "link", "set", mgmt, "down"], netns=ns)
    try:
        yield
    finally:
        netns.run(["ip", "link", "set", mgmt, "up"], netns=ns)


def sshd_log(lab: Lab, device: str) -> str:
    """The device's sshd log (LogLevel VERBOSE: every accepted or failed authentication)."""
    return (lab.state.dir / device / "sshd.log").read_text(encoding="utf-8", errors="replace")


def audit_records(event: str, device: str | None = None) -> list[dict[str, Any]]:
    """Every record named `event` (of `device`) in the audit log this session writes to."""
    out = []
    for path in sorted(Path(current_log_dir()).glob("audit-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("event") == event and (device is None or rec.get("device") == device):
                out.append(rec)
    return out

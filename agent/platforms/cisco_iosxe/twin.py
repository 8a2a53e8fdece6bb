"""Owns starting the cisco_iosxe twin device: its daemon (`twin_device`: the running
configuration, its real effects in the namespace and the revert timer, journaled by PID) and its
sshd, whose ForceCommand is the CLI relay (`twin_cli`). The twin's minute lasts
CORDON_TWIN_IOSXE_MINUTE_S seconds (a setting of `agent.settings`, read here in the process that
builds the twin; default 60, IOS-XE's own unit; tests shorten it). Imports the lab's primitives
(`agent.lab.daemons`, `twins`) and the settings; only the lab imports it, through
`agent.platforms.registry.twin`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent import settings
from agent.errors import LabError
from agent.lab import daemons, netns
from agent.lab.twins import Node

MINUTE_ENV = "CORDON_TWIN_IOSXE_MINUTE_S"
ARCHIVE_PATH = "flash:cordon-archive"
_HERE = Path(__file__).resolve().parent


def minute_s() -> float:
    value = settings.current().twin_iosxe_minute_s  # a positive number, checked at load
    if not 0.5 <= value <= 60:
        raise LabError(f"{MINUTE_ENV} must be between 0.5 and 60 seconds, not {value:g}")
    return value


def device_config(
    node: Node, sock: Path, pidfile: Path, have: set[str] | None = None
) -> dict[str, object]:
    """What the daemon starts from: the inventory's interfaces (with their kernel names in the
    twin), their addresses, the archive (configured: `no archive` takes it away). `have`: the
    namespace's kernel links; a trunk port (a cabling end) has none of its own there, only its
    per-VLAN legs `<kernel>.<vid>` (the twin has no 802.1Q), which take its state."""
    have = have or set()
    renamed = dict(node.spec.renamed)
    dev = node.device
    names = [i.name for i in dev.interfaces]
    if dev.management.interface not in names:
        names.insert(0, dev.management.interface)
    by_name = {i.name: i for i in dev.interfaces}
    interfaces = []
    for name in names:
        iface = by_name.get(name)
        addr = iface.address if iface is not None else None
        if name == dev.management.interface:
            addr = None  # out of band: its address is the twin's, not shown as routed
        kernel = renamed.get(name, name)
        legs = (
            []
            if kernel in have
            else sorted(
                h for h in have if h.rpartition(".")[0] == kernel and h.rpartition(".")[2].isdigit()
            )
        )
        interfaces.append(
            {
                "name": name,
                "kernel": kernel,
                "description": (iface.description or "") if iface is not None else "",
                "addresses": [f"{addr.ip} {addr.netmask}"] if addr is not None else [],
                "vlan": iface.vlan if iface is not None and addr is None else None,
                "legs": legs,
            }
        )
    return {
        "hostname": dev.name,
        "interfaces": interfaces,
        "archive_path": ARCHIVE_PATH,
        "minute_s": minute_s(),
        "socket": str(sock),
        "pidfile": str(pidfile),
    }


def start(node: Node) -> None:
    node.dir.mkdir(parents=True, exist_ok=True)
    sock, pidfile = node.dir / "iosxe.sock", node.dir / "iosxe.pid"
    conf = node.dir / "iosxe.json"
    links = json.loads(netns.run(["ip", "-j", "link", "show"], netns=node.spec.ns).stdout or "[]")
    have = {str(link["ifname"]) for link in links}
    conf.write_text(json.dumps(device_config(node, sock, pidfile, have)), encoding="utf-8")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(_HERE.parents[2]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    pidfile.unlink(missing_ok=True)
    node.record(
        daemons._launch(
            "iosxe",
            node.spec.ns,
            node.spec.device,
            [sys.executable, "-m", "agent.platforms.cisco_iosxe.twin_device", str(conf)],
            env=env,
            out_path=node.dir / "iosxe.out",
            pidfile=pidfile,
            logfile=node.dir / "iosxe-device.log",
            ready=lambda pid: _ready(pidfile, sock, pid),
            cleanup=[pidfile, sock],
        )
    )
    node.sshd(f"exec {sys.executable} -I {_HERE / 'twin_cli.py'} {sock}")


def _ready(pidfile: Path, sock: Path, pid: int) -> bool:
    try:
        return int(pidfile.read_text().split()[0]) == pid and sock.exists()
    except (OSError, ValueError, IndexError):
        return False

"""Owns the juniper_junos twin device: its configuration daemon (`twin_device`, started with the
lab's primitives, journaled, stopped by PID at `lab down`) and its sshd, whose `netconf`
subsystem (RFC 6242) relays each session to the daemon (`twin_netconf`). The daemon starts from
the inventory's view of the device (host name, interface addresses) and knows the kernel name of
each interface (the twin renames `ge-0/0/1` to `ge-0-0-1`). An EX is an L3 switch: the lab gives
it one bridge per VLAN, named as its IRB unit where that unit is a zone's gateway (`irb.110`,
with the unit's address), and a trunk port (a cabling end, `xe-0/1/0`) is one veth per VLAN
(`xe-0-1-0.110`, the twin has no 802.1Q) in those bridges: the daemon is told those legs
(`junos-legs.json`), and the port's `disable` takes them all down.
A `commit confirmed N` lasts N minutes; `time_scale` lets a test make a minute shorter before the
twin is built (the lab's setting only: the driver and the device's replies still say minutes).
Imports the lab's primitives (`agent.lab.daemons`, `twins`); only the lab imports it, through
`agent.platforms.registry.twin`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from agent.lab import daemons, netns
from agent.lab.twins import Node

PORT = 8300  # the daemon's port on the device namespace's loopback (never reachable outside)
_minute_s = 60.0


def time_scale(seconds_per_minute: float) -> None:
    """Make a confirm minute last `seconds_per_minute` on twins built from now on (tests)."""
    global _minute_s  # noqa: PLW0603 - the lab's one knob, read when a device starts
    if not 0.1 <= seconds_per_minute <= 60:
        raise ValueError("a twin minute lasts 0.1 to 60 s")
    _minute_s = float(seconds_per_minute)


def initial_config(node: Node) -> list[str]:
    """The device's configuration at `lab up`, as Junos `set` lines."""
    dev = node.device
    lines = [f"set system host-name {dev.name}"]
    mgmt = dev.management
    lines.append(f"set interfaces {mgmt.interface} unit 0 family inet address {mgmt.address}/32")
    for iface in dev.interfaces:
        if iface.address is None or iface.name == mgmt.interface:
            continue
        ifd, _, unit = iface.name.partition(".")
        lines.append(f"set interfaces {ifd} unit {unit or '0'} family inet address {iface.address}")
    if dev.platform == "juniper_srx":
        lines += srx_security(node)
    return lines


def zone_name(interface: str, vlan: int | None) -> str:
    """The twin SRX's security zone of an interface: `vlan20` for a VLAN's gateway, else
    `if-ge-0-0-0` (a zone of its own per routed interface, as Cordon needs it)."""
    if vlan is not None:
        return f"vlan{vlan}"
    return "if-" + re.sub(r"[/.:]", "-", interface.split(".", maxsplit=1)[0])


def srx_security(node: Node) -> list[str]:
    """The twin SRX's own security configuration at `lab up`, as a site would have it: one zone
    per routed interface, the default policy `deny-all`, and a site policy `site-permit` in
    every zone pair (everything flows until Cordon's policies, placed before it, say not)."""
    dev = node.device
    zones: list[str] = []
    lines: list[str] = []
    for iface in dev.interfaces:
        if iface.address is None or iface.name == dev.management.interface:
            continue
        ifd, _, unit = iface.name.partition(".")
        zone = zone_name(iface.name, iface.vlan)
        zones.append(zone)
        lines.append(f"set security zones security-zone {zone} interfaces {ifd}.{unit or '0'}")
    for a in zones:
        for b in zones:
            if a == b:
                continue
            head = f"set security policies from-zone {a} to-zone {b} policy site-permit"
            lines += [
                f"{head} match source-address any",
                f"{head} match destination-address any",
                f"{head} match application any",
                f"{head} then permit",
            ]
    lines.append("set security policies default-policy deny-all")
    return lines


def trunk_legs(kernel: dict[str, str], have: set[str]) -> dict[str, list[str]]:
    """Inventory name -> the per-VLAN legs (`<kernel>.<vid>`) of each interface that has no
    kernel link of its own in the twin but has legs there (a trunk: a cabling end)."""
    out: dict[str, list[str]] = {}
    for name, kname in kernel.items():
        if kname in have:
            continue
        legs = sorted(
            h for h in have if h.rpartition(".")[0] == kname and h.rpartition(".")[2].isdigit()
        )
        if legs:
            out[name] = legs
    return out


def start(node: Node) -> None:
    renamed = dict(node.spec.renamed)
    names = [i.name for i in node.device.interfaces]
    if node.device.management.interface not in names:
        names.append(node.device.management.interface)
    kernel = {n: renamed.get(n, n) for n in names}
    links = json.loads(netns.run(["ip", "-j", "link", "show"], netns=node.spec.ns).stdout or "[]")
    have = {str(link["ifname"]) for link in links}
    node.dir.mkdir(parents=True, exist_ok=True)
    (node.dir / "junos-ifnames.json").write_text(json.dumps(kernel), encoding="utf-8")
    (node.dir / "junos-legs.json").write_text(
        json.dumps(trunk_legs(kernel, have)), encoding="utf-8"
    )
    (node.dir / "junos-initial.conf").write_text(
        "\n".join(initial_config(node)) + "\n", encoding="utf-8"
    )
    node.record(
        daemons.start_api_server(
            node.spec.ns,
            node.dir,
            node.spec.device,
            "junosd",
            "agent.platforms.juniper_junos.twin_device",
            ["--dir", str(node.dir), "--listen", f"127.0.0.1:{PORT}", "--minute", f"{_minute_s:g}"],
            address="127.0.0.1",
            port=PORT,
        )
    )
    relay = Path(__file__).with_name("twin_netconf.py")
    node.record(
        daemons.start_sshd(
            node.spec.ns,
            node.dir,
            node.spec.device,
            str(node.spec.mgmt_address),
            port=node.spec.ssh_port,
            host_key_path=node.host_key,
            authorized_keys_path=node.authorized_keys,
            subsystems=[("netconf", f"{sys.executable} -I -S {relay} 127.0.0.1 {PORT}")],
        )
    )

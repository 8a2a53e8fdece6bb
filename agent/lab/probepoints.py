"""The twin's probe points (#15): for each probe point the inventory declares, a namespace that
stands for the site's probe VM, with a leg on each of its zones' VLANs (a veth into the zone's
VLAN bridge on the switch that carries the zone's first access port, as a VM's vNIC on a port
group) and a management leg on the twin's out-of-band bridge, running the real probe process
(`python -m agent.probe`), started and stopped by PID through the twin's journal.

As a site VM should be set up: per-leg policy routing (a connection from a leg's address leaves
by that leg, to that zone's gateway), no forwarding, ARP answered only for the leg's own address,
and a packet filter: on the legs only replies to the probe's own connections come in, on the
management leg only the agent's address to the control port. The multi-homed probe must never
become a bridge between zones.

Key material: the daemon's identity where group.probe_identity points, each probe's in the
twin's state folder, the probes' pins appended to the group tls_pins file (all journaled, made
0600, removed by `lab down`). The daemon side reaches a probe only through the twin's management
veth. Imports the lab's own modules, the probe's channel (identities) and the inventory."""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.errors import LabError, SafetyError
from agent.inventory.models import Inventory, ProbePoint, Site, Zone
from agent.lab import daemons, netns
from agent.lab.state import LabState
from agent.lab.topology import SANDBOX, Blueprint, ns_name
from agent.probe import channel
from agent.secrets import ref_path

READY_S = 20.0


@dataclass(frozen=True)
class LegPlan:
    ifname: str  # in the probe's namespace
    switch_ns: str
    switch_if: str  # the veth's other end, made a port of `bridge`
    bridge: str
    cidr: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    table: int


@dataclass(frozen=True)
class ProbeNet:
    probe: ProbePoint
    site: str
    ns: str
    legs: tuple[LegPlan, ...]
    mgmt_cidr: ipaddress.IPv4Interface
    oob_if: str


def plan(inv: Inventory, bp: Blueprint) -> list[ProbeNet]:
    """Where each probe point plugs into the twin (pure). SafetyError if an address would leave
    198.18.0.0/15; LabError if a zone has no switch port to plug a leg into."""
    out = []
    n = 0
    mgmt = inv.group.management.subnet
    for site in inv.sites:
        for probe in site.probes:
            ns = ns_name(bp.lab, "p", probe.id)
            legs = []
            for i, leg in enumerate(probe.legs):
                zone = site.zone(leg.zone)
                if zone is None:
                    raise LabError(f"probe {probe.id}: no zone {leg.zone} at {site.name}")
                if leg.address not in SANDBOX:
                    raise SafetyError(f"probe {probe.id}: {leg.address} is outside {SANDBOX}")
                switch_ns, bridge = _bridge_of(bp, site, zone)
                legs.append(
                    LegPlan(
                        f"leg{i}",
                        switch_ns,
                        f"pb{n}l{i}",
                        bridge,
                        ipaddress.IPv4Interface(f"{leg.address}/{zone.subnet.prefixlen}"),
                        _gateway(site, zone),
                        100 + i,
                    )
                )
            if probe.control.address not in SANDBOX:
                raise SafetyError(f"probe {probe.id}: {probe.control.address} is outside {SANDBOX}")
            mgmt_cidr = ipaddress.IPv4Interface(f"{probe.control.address}/{mgmt.prefixlen}")
            out.append(ProbeNet(probe, site.name, ns, tuple(legs), mgmt_cidr, f"pb{n}m"))
            n += 1
    return out


def _bridge_of(bp: Blueprint, site: Site, zone: Zone) -> tuple[str, str]:
    for port in zone.ports:
        ns = bp.device_ns.get(port.device)
        kname = bp.ifnames.get(port.device, {}).get(port.interface)
        for br in bp.bridges:
            if br.ns == ns and kname in br.ports:
                return br.ns, br.name
    raise LabError(
        f"{site.name}/{zone.name}: no switch VLAN bridge carries the zone; a probe leg plugs "
        "into the bridge of the zone's access ports"
    )


def _gateway(site: Site, zone: Zone) -> ipaddress.IPv4Address | None:
    if zone.gateway is None:
        return None
    device = site.device(zone.gateway.device)
    iface = device.interface(zone.gateway.interface) if device else None
    return iface.address.ip if iface is not None and iface.address is not None else None


def _claim(state: LabState, path: Path) -> None:
    """Record a file before making it; refuse to overwrite one the twin did not make."""
    if path.exists():
        raise LabError(f"{path} already exists; the twin will not overwrite a file it did not make")
    for parent in reversed(path.parents):
        if not parent.exists():
            state.dirs.append(str(parent))
            parent.mkdir(mode=0o700)
    state.files.append(str(path))
    state.save()


def filter_rules(net: ProbeNet, agent: ipaddress.IPv4Address, port: int) -> str:
    """The probe VM's packet filter: legs take replies only; management takes the agent only."""
    return (
        "table inet probe_host {\n"
        "  chain input {\n    type filter hook input priority 0; policy drop;\n"
        '    iifname "lo" accept\n'
        "    ct state established,related accept\n"
        f'    iifname "mgmt0" ip saddr {agent} tcp dport {port} accept\n'
        "  }\n"
        "  chain forward {\n    type filter hook forward priority 0; policy drop;\n  }\n"
        "}\n"
    )


def start(inv: Inventory, bp: Blueprint, state: LabState) -> list[str]:
    """Build and start every probe point of `inv` (nothing when it declares none); returns once
    each answers, authenticated, through the twin's management veth. Journaled before made."""
    nets = plan(inv, bp)
    if not nets:
        return []
    ident = inv.group.probe_identity
    if ident is None:
        raise LabError("probe points are declared but group.probe_identity is not")
    base = Path(inv.path).parent
    daemon_cert = base / ident.certificate
    daemon_key = ref_path(ident.key, base)
    _claim(state, daemon_cert)
    _claim(state, daemon_key)
    channel.new_identity(daemon_cert, daemon_key, "cordon-daemon")
    pins = []
    for net in nets:
        state.namespaces.append(net.ns)
        state.save()
        _network(inv, net)
        pins.append(f"{net.probe.id} {_launch(inv, net, state, daemon_cert)}")
    _write_pins(inv, state, pins)
    return [f"probe {net.probe.id} in {net.ns}" for net in nets]


def _network(inv: Inventory, net: ProbeNet) -> None:
    netns.run(["ip", "netns", "add", net.ns])
    oob = ns_name(net.ns.split(".")[0], "oob")
    lines = [f"link add mgmt0 netns {net.ns} type veth peer name {net.oob_if} netns {oob}"]
    lines += [
        f"link add {leg.ifname} netns {net.ns} type veth peer name {leg.switch_if} "
        f"netns {leg.switch_ns}"
        for leg in net.legs
    ]
    _batch(lines)
    netns.run(["ip", "link", "set", net.oob_if, "master", "br0", "up"], netns=oob)
    for leg in net.legs:
        netns.run(
            ["ip", "link", "set", leg.switch_if, "master", leg.bridge, "up"], netns=leg.switch_ns
        )
    own = ["link set lo up", f"addr add {net.mgmt_cidr} dev mgmt0", "link set mgmt0 up"]
    for leg in net.legs:
        own += [f"addr add {leg.cidr} dev {leg.ifname}", f"link set {leg.ifname} up"]
        own += [
            f"rule add from {leg.cidr.ip} table {leg.table}",
            f"route add {leg.cidr.network} dev {leg.ifname} src {leg.cidr.ip} table {leg.table}",
        ]
        if leg.gateway is not None:
            own.append(f"route add default via {leg.gateway} dev {leg.ifname} table {leg.table}")
    _batch(own, net.ns)
    for key, value in (
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
    ):
        netns.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=net.ns)
    agent = inv.group.management.agent_address
    netns.run(
        ["nft", "-f", "-"], netns=net.ns, input=filter_rules(net, agent, net.probe.control.port)
    )


def _batch(lines: list[str], ns: str | None = None) -> None:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-b", "-"]
    done = netns.run(argv, input="\n".join(lines) + "\n", check=False)
    if done.returncode != 0:
        raise LabError(f"building the twin's probe points failed: {done.stderr.strip()}")


def _launch(inv: Inventory, net: ProbeNet, state: LabState, daemon_cert: Path) -> str:
    """Write the probe's identity and config, start it in its namespace; returns its pin."""
    folder = state.dir / f"probe-{net.probe.id}"
    folder.mkdir(mode=0o700, exist_ok=True)
    pin = channel.new_identity(folder / "probe.pem", folder / "probe.key", net.probe.id)
    config = {
        "id": net.probe.id,
        "listen": {"address": str(net.mgmt_cidr.ip), "port": net.probe.control.port},
        "certificate": "probe.pem",
        "key": "file:probe.key",
        "daemon_certificate": str(daemon_cert),
        "legs": [{"zone": leg.zone, "address": str(leg.address)} for leg in net.probe.legs],
        "allowed": [str(SANDBOX)],
        "pidfile": "probe.pid",
    }
    cfg_path = folder / "probe.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    pidfile = folder / "probe.pid"
    project = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(project),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = daemons._launch(  # the lab's one way of starting a journaled process
        "probe",
        net.ns,
        net.probe.id,
        [sys.executable, "-m", "agent.probe", str(cfg_path)],
        env=env,
        out_path=folder / "probe.out",
        pidfile=pidfile,
        logfile=folder / "probe.out",
        ready=lambda pid: daemons._pidfile_is(pidfile, pid),
        cleanup=[pidfile],
    )
    state.procs.append(proc.as_dict())
    state.save()
    return pin


def _write_pins(inv: Inventory, state: LabState, pins: list[str]) -> None:
    """The probes' pins in group.tls_pins: appended when the twin made that file already (for
    its HTTPS devices), else a new file."""
    if inv.group.tls_pins is None:
        raise LabError("the twin writes the probes' pins to group.tls_pins; set it")
    path = Path(inv.path).parent / inv.group.tls_pins
    if str(path) not in state.files:
        _claim(state, path)
        path.write_text("")
        os.chmod(path, 0o600)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(pins) + "\n")


def wait_ready(inv: Inventory, deadline: float) -> None:
    """Wait until every probe point answers its hello through the management veth (its links
    settle asynchronously, as the twin's do: `agent.lab.ready`)."""
    from agent.verify import probes  # noqa: PLC0415 - the daemon side, used as the daemon would

    last = ""
    while True:
        states = probes.health(inv, timeout_s=2.0)
        down = [h for h in states if not h.alive]
        if not down:
            return
        last = "; ".join(f"{h.id}: {h.detail}" for h in down)
        if time.monotonic() > deadline:
            raise LabError(f"probe points not ready within the bound: {last}")
        time.sleep(0.2)


__all__ = ["READY_S", "plan", "start", "wait_ready"]

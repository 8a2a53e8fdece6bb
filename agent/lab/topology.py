"""The digital twin's blueprint: which namespaces, veths, bridges, VLANs, addresses, routes,
daemons and TCP services stand for an inventory. Pure: computes, never touches the system.

Imports the inventory models, `agent.errors` and the platform registry (whether a device's
platform routes or bridges, and whether its interface names are kernel names: no platform is
named here); `agent.lab.build` applies the blueprint.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from agent.errors import SafetyError
from agent.inventory.models import (
    Device,
    Host,
    Inventory,
    Link,
    LinkKind,
    Platform,
    Site,
    SiteKind,
    Zone,
)
from agent.platforms import registry

SANDBOX = ipaddress.IPv4Network("198.18.0.0/15")
ROOT_LINK = "cordon-oob"  # the root namespace's end of the management veth
OOB_UPLINK = "uplink"

NodeKind = Literal["firewall", "switch", "host", "external", "oob"]


@dataclass(frozen=True)
class Node:
    ns: str
    kind: NodeKind
    hostname: str
    forwarding: bool = False
    mgmt_if: str | None = None  # a device's out-of-band interface (its kernel name in the twin)


@dataclass(frozen=True)
class Veth:
    a_ns: str
    a_if: str
    b_ns: str  # "" means the root namespace
    b_if: str


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge. This kernel has no 802.1Q support (CONFIG_VLAN_8021Q unset, no VLAN
    filtering), so a switch has one bridge per VLAN, and a trunk cable is one veth per VLAN
    carried (`lan0.110` <-> `gi0.110`): the firewall's sub-interface names stay the inventory's."""

    ns: str
    name: str
    ports: tuple[str, ...]


@dataclass(frozen=True)
class Address:
    ns: str
    ifname: str
    cidr: ipaddress.IPv4Interface


@dataclass(frozen=True)
class Route:
    ns: str
    dst: ipaddress.IPv4Network | Literal["default"]
    via: ipaddress.IPv4Address


@dataclass(frozen=True)
class DaemonSpec:
    """A device's daemons: sshd always, zebra for IOS-style CLIs, snmpd when SNMP is declared."""

    device: str
    site: str
    ns: str
    platform: Platform
    mgmt_address: ipaddress.IPv4Address
    ssh_port: int
    snmp: bool
    snmp_port: int
    # inventory name -> kernel name, for the names the twin had to rename (empty for most):
    # the device's CLI and SNMP agent answer in the inventory's names (see `kernel_names`)
    renamed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    ns: str
    address: ipaddress.IPv4Address
    port: int
    banner: str  # what a probe expects to read: proves it reached this host and service


@dataclass
class Blueprint:
    lab: str
    nodes: dict[str, Node] = field(default_factory=dict)
    veths: list[Veth] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    daemons: list[DaemonSpec] = field(default_factory=list)
    services: list[ServiceSpec] = field(default_factory=list)
    host_ns: dict[str, str] = field(default_factory=dict)  # "site/zone/host" -> namespace
    device_ns: dict[str, str] = field(default_factory=dict)  # device name -> namespace
    # device name -> {inventory interface name -> the kernel's name for it in the twin}
    ifnames: dict[str, dict[str, str]] = field(default_factory=dict)
    root_address: ipaddress.IPv4Interface | None = None
    mgmt_subnet: ipaddress.IPv4Network | None = None
    # in band: no out-of-band network; the root veth is a port of the agent's zone at the core,
    # and the root namespace reaches the twin's data networks through it (`root_routes`)
    in_band: bool = False
    root_routes: list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]] = field(
        default_factory=list
    )


def ns_name(lab: str, *parts: str) -> str:
    return ".".join((lab, *parts))


def banner(site: str, zone: str, host: str, service: str) -> str:
    return f"CORDON {site}/{zone}/{host} {service}"


def blueprint(inv: Inventory, lab: str = "cdn") -> Blueprint:
    """The twin of `inv`. Raises SafetyError if any address would leave 198.18.0.0/15."""
    _check_sandbox(inv)
    if inv.group.management.in_band:
        return _in_band_blueprint(inv, lab)
    bp = Blueprint(lab=lab)
    mgmt = inv.group.management
    bp.mgmt_subnet = mgmt.subnet
    bp.root_address = ipaddress.IPv4Interface(f"{mgmt.agent_address}/{mgmt.subnet.prefixlen}")
    oob = ns_name(lab, "oob")
    bp.nodes[oob] = Node(oob, "oob", "oob")
    bp.veths.append(Veth(oob, OOB_UPLINK, "", ROOT_LINK))
    oob_ports = [OOB_UPLINK]
    externals: dict[str, _External] = {}
    for site in inv.sites:
        if site.kind is SiteKind.EXTERNAL:
            externals[site.name] = _External(site, ns_name(lab, "x", site.name))
    for n, (site, device) in enumerate(inv.devices()):
        ns = ns_name(lab, device.name)
        bp.device_ns[device.name] = ns
        names = kernel_names(site, device)
        bp.ifnames[device.name] = names
        mgmt_if = names[device.management.interface]
        routes = registry.platform(device.platform).routes(device)
        kind: NodeKind = "firewall" if routes else "switch"
        bp.nodes[ns] = Node(ns, kind, device.name, forwarding=kind == "firewall", mgmt_if=mgmt_if)
        port = f"d{n}"
        bp.veths.append(Veth(ns, mgmt_if, oob, port))
        oob_ports.append(port)
        bp.addresses.append(
            Address(
                ns,
                mgmt_if,
                ipaddress.IPv4Interface(f"{device.management.address}/{mgmt.subnet.prefixlen}"),
            )
        )
        snmp = device.snmp
        bp.daemons.append(
            DaemonSpec(
                device.name,
                site.name,
                ns,
                device.platform,
                device.management.address,
                device.ssh.port,
                snmp is not None,
                snmp.port if snmp else 161,
                tuple((a, k) for a, k in names.items() if a != k),
            )
        )
    bp.bridges.append(Bridge(oob, "br0", tuple(oob_ports)))
    for site in inv.sites:
        if site.kind is not SiteKind.EXTERNAL:
            _site(bp, inv, site, externals)
    for ext in externals.values():
        _external(bp, inv, ext)
    return bp


# the data networks the root namespace reaches through its veth, in band (inside the sandbox)
IN_BAND_DATA = ipaddress.IPv4Network("198.18.0.0/16")


def _in_band_blueprint(inv: Inventory, lab: str) -> Blueprint:
    """The twin of a group managed in band: no out-of-band network. The root namespace's veth
    (the only way in, as out of band) is cabled to `agent_port`, a port of the agent's zone at
    the core; the agent reaches every device through the zones' gateways and the WAN (a route
    to the data networks through the zone's gateway). Each device answers at the address of its
    management interface: a firewall's is one of its routed interfaces, a switch's sits on the
    bridge of its management VLAN, with a default route through that zone's gateway."""
    mgmt = inv.group.management
    bp = Blueprint(lab=lab, in_band=True)
    bp.mgmt_subnet = mgmt.subnet
    bp.root_address = ipaddress.IPv4Interface(f"{mgmt.agent_address}/{mgmt.subnet.prefixlen}")
    agent_site = inv.site(mgmt.agent_site or "")
    zone = (
        next((z for z in agent_site.zones if mgmt.agent_address in z.subnet), None)
        if agent_site
        else None
    )
    gateway = _zone_gateway(agent_site, zone) if agent_site and zone else None
    if gateway is None or mgmt.agent_port is None:
        raise SafetyError(
            f"{inv.path}: in band, the twin needs the agent's zone, its gateway and agent_port",
            hint="`cordon inventory check` says which is missing",
        )
    bp.root_routes.append((IN_BAND_DATA, gateway))
    externals: dict[str, _External] = {}
    for site in inv.sites:
        if site.kind is SiteKind.EXTERNAL:
            externals[site.name] = _External(site, ns_name(lab, "x", site.name))
    for site, device in inv.devices():
        ns = ns_name(lab, device.name)
        bp.device_ns[device.name] = ns
        names = kernel_names(site, device)
        bp.ifnames[device.name] = names
        routes = registry.platform(device.platform).routes(device)
        kind: NodeKind = "firewall" if routes else "switch"
        bp.nodes[ns] = Node(ns, kind, device.name, forwarding=kind == "firewall")
        snmp = device.snmp
        bp.daemons.append(
            DaemonSpec(
                device.name,
                site.name,
                ns,
                device.platform,
                device.management.address,
                device.ssh.port,
                snmp is not None,
                snmp.port if snmp else 161,
                tuple((a, k) for a, k in names.items() if a != k),
            )
        )
    for site in inv.sites:
        if site.kind is not SiteKind.EXTERNAL:
            _site(bp, inv, site, externals)
    for ext in externals.values():
        _external(bp, inv, ext)
    return bp


def _agent_port(bp: Blueprint, inv: Inventory, site: Site) -> tuple[str, int, str] | None:
    """In band, at the agent's site: (switch, VLAN, kernel name) of the port the root veth is."""
    mgmt = inv.group.management
    if not bp.in_band or site.name != mgmt.agent_site or mgmt.agent_port is None:
        return None
    zone = next((z for z in site.zones if mgmt.agent_address in z.subnet), None)
    if zone is None or zone.vlan is None:
        raise SafetyError(f"{site.name}: the agent's zone has no VLAN; the twin cannot cable it")
    port = mgmt.agent_port
    return port.device, zone.vlan, bp.ifnames[port.device][port.interface]


def _in_band_switch_addresses(
    bp: Blueprint, site: Site, bridges: dict[tuple[str, int], str]
) -> None:
    """In band: each switch's management address on the bridge of its VLAN, and its way out."""
    for device in site.devices:
        if device.name not in {d for d, _ in bridges}:
            continue
        iface = device.interface(device.management.interface)
        if iface is None or iface.address is None or iface.vlan is None:
            continue
        bridge = bridges.get((device.name, iface.vlan))
        zone = next((z for z in site.zones if z.vlan == iface.vlan), None)
        gateway = _zone_gateway(site, zone) if zone else None
        if bridge is None or gateway is None:
            raise SafetyError(
                f"{site.name}/{device.name}: VLAN {iface.vlan} of its in-band management "
                "reaches no bridge or gateway in the twin"
            )
        bp.addresses.append(Address(bp.device_ns[device.name], bridge, iface.address))
        if iface.address.ip != gateway:
            bp.routes.append(Route(bp.device_ns[device.name], "default", gateway))


@dataclass
class _External:
    site: Site
    ns: str
    ports: list[tuple[str, ipaddress.IPv4Interface, str]] = field(default_factory=list)


def _site(bp: Blueprint, inv: Inventory, site: Site, externals: dict[str, _External]) -> None:
    # vlan_ports[switch][vid] = bridge members (access ports and trunk legs) of that VLAN
    vlan_ports: dict[str, dict[int, list[str]]] = {}
    switches = {d.name for d in site.devices if registry.platform(d.platform).bridges(d)}
    all_vlans = tuple(sorted(z.vlan for z in site.zones if z.vlan is not None))
    for cable in site.cabling:
        for vid in all_vlans if cable.vlans == "all" else cable.vlans:
            a_if = f"{bp.ifnames[cable.a.device][cable.a.interface]}.{vid}"
            b_if = f"{bp.ifnames[cable.b.device][cable.b.interface]}.{vid}"
            bp.veths.append(
                Veth(bp.device_ns[cable.a.device], a_if, bp.device_ns[cable.b.device], b_if)
            )
            for dev, ifname in ((cable.a.device, a_if), (cable.b.device, b_if)):
                if dev in switches:
                    vlan_ports.setdefault(dev, {}).setdefault(vid, []).append(ifname)
    _firewall_addresses(bp, site)
    for zone in site.zones:
        for host in zone.hosts:
            _host(bp, site, zone, host, vlan_ports)
    agent = _agent_port(bp, inv, site)
    if agent is not None:
        switch, vid, ifname = agent
        bp.veths.append(Veth(bp.device_ns[switch], ifname, "", ROOT_LINK))
        vlan_ports.setdefault(switch, {}).setdefault(vid, []).append(ifname)
    # an L3 switch's VLAN bridge is its SVI (the zone's gateway there, with its address)
    svis = {
        (z.gateway.device, z.vlan): bp.ifnames[z.gateway.device][z.gateway.interface]
        for z in site.zones
        if z.gateway is not None and z.vlan is not None
    }
    made: dict[tuple[str, int], str] = {}
    for dev_name, by_vlan in sorted(vlan_ports.items()):
        for vid, ports in sorted(by_vlan.items()):
            name = svis.get((dev_name, vid), f"vl{vid}")
            bp.bridges.append(Bridge(bp.device_ns[dev_name], name, tuple(ports)))
            made[(dev_name, vid)] = name
    if bp.in_band:
        _in_band_switch_addresses(bp, site, made)
    for link in site.links:
        _link(bp, inv, site, link, externals)


def _firewall_addresses(bp: Blueprint, site: Site) -> None:
    """Addresses of the routed (Linux) devices: links and zone gateways."""
    for device in site.devices:
        if not registry.platform(device.platform).routes(device):
            continue
        ns = bp.device_ns[device.name]
        for iface in device.interfaces:
            in_band_mgmt = bp.in_band  # in band, the management interface is a data interface
            if iface.address is not None and (
                in_band_mgmt or iface.name != device.management.interface
            ):
                bp.addresses.append(Address(ns, bp.ifnames[device.name][iface.name], iface.address))


def _link(
    bp: Blueprint, inv: Inventory, site: Site, link: Link, externals: dict[str, _External]
) -> None:
    """The veth of a link and the static routes it implies (hub and spoke through the core)."""
    device = site.device(link.device)
    iface = device.interface(link.interface) if device else None
    peer_site = inv.site(link.peer)
    if iface is None or iface.address is None or peer_site is None:
        raise SafetyError(f"link {site.name}/{link.name} is incomplete; check the inventory")
    ns = bp.device_ns[link.device]
    link_if = bp.ifnames[link.device][iface.name]
    own_subnets = [z.subnet for z in site.zones]
    peer_addr = link.peer_address or _other_address(iface.address)
    if peer_site.kind is SiteKind.EXTERNAL:
        ext = externals[peer_site.name]
        port = f"p{len(ext.ports)}"
        prefix = iface.address.network.prefixlen
        ext.ports.append((port, ipaddress.IPv4Interface(f"{peer_addr}/{prefix}"), site.name))
        bp.veths.append(Veth(ns, link_if, ext.ns, port))
        # a site with two links to one external site (two internet uplinks): the first one
        # declared carries the traffic both ways, as the planner's paths say
        _routes(bp, (Route(ext.ns, net, iface.address.ip) for net in own_subnets))
        if link.kind is LinkKind.INTERNET:
            _routes(bp, [Route(ns, "default", peer_addr)])
        else:
            _routes(bp, (Route(ns, z.subnet, peer_addr) for z in peer_site.zones))
        return
    if link.peer_device is None or link.peer_interface is None:
        raise SafetyError(
            f"link {site.name}/{link.name} to {peer_site.name} needs peer_device "
            "and peer_interface for the twin to cable it"
        )
    peer_ns = bp.device_ns[link.peer_device]
    peer_if = bp.ifnames[link.peer_device][link.peer_interface]
    bp.veths.append(Veth(ns, link_if, peer_ns, peer_if))
    for other in inv.sites:
        if other.name != site.name and other.kind is not SiteKind.EXTERNAL:
            bp.routes.extend(Route(ns, z.subnet, peer_addr) for z in other.zones)
    bp.routes.extend(Route(peer_ns, net, iface.address.ip) for net in own_subnets)


def _host(
    bp: Blueprint, site: Site, zone: Zone, host: Host, vlan_ports: dict[str, dict[int, list[str]]]
) -> None:
    ns = ns_name(bp.lab, "h", site.name, zone.name, host.name)
    key = f"{site.name}/{zone.name}/{host.name}"
    bp.host_ns[key] = ns
    bp.nodes[ns] = Node(ns, "host", host.name)
    bp.addresses.append(
        Address(ns, "eth0", ipaddress.IPv4Interface(f"{host.address}/{zone.subnet.prefixlen}"))
    )
    gateway = _zone_gateway(site, zone)
    if gateway is not None:
        bp.routes.append(Route(ns, "default", gateway))
    if host.port is not None:
        port_if = bp.ifnames[host.port.device][host.port.interface]
        bp.veths.append(Veth(ns, "eth0", bp.device_ns[host.port.device], port_if))
        if zone.vlan is None:
            raise SafetyError(f"zone {site.name}/{zone.name} has hosts on switch ports but no VLAN")
        by_vlan = vlan_ports.setdefault(host.port.device, {})
        by_vlan.setdefault(zone.vlan, []).append(port_if)
    for svc in host.services:
        bp.services.append(
            ServiceSpec(
                ns, host.address, svc.port, banner(site.name, zone.name, host.name, svc.name)
            )
        )


def _external(bp: Blueprint, inv: Inventory, ext: _External) -> None:
    bp.nodes[ext.ns] = Node(ext.ns, "external", ext.site.name, forwarding=True)
    for port, addr, _site_name in ext.ports:
        bp.addresses.append(Address(ext.ns, port, addr))
    for n_bridges, zone in enumerate(ext.site.zones):
        gw = ipaddress.IPv4Interface(f"{zone.subnet.network_address + 1}/{zone.subnet.prefixlen}")
        bridge = f"z{n_bridges}"
        bp.addresses.append(Address(ext.ns, bridge, gw))
        ports = []
        for i, host in enumerate(zone.hosts):
            ns = ns_name(bp.lab, "h", ext.site.name, zone.name, host.name)
            bp.host_ns[f"{ext.site.name}/{zone.name}/{host.name}"] = ns
            bp.nodes[ns] = Node(ns, "host", host.name)
            port = f"{bridge}h{i}"
            bp.veths.append(Veth(ns, "eth0", ext.ns, port))
            ports.append(port)
            bp.addresses.append(
                Address(
                    ns, "eth0", ipaddress.IPv4Interface(f"{host.address}/{zone.subnet.prefixlen}")
                )
            )
            bp.routes.append(Route(ns, "default", gw.ip))
            for svc in host.services:
                bp.services.append(
                    ServiceSpec(
                        ns,
                        host.address,
                        svc.port,
                        banner(ext.site.name, zone.name, host.name, svc.name),
                    )
                )
        bp.bridges.append(Bridge(ext.ns, bridge, tuple(ports)))


def _routes(bp: Blueprint, routes: Iterable[Route]) -> None:
    """Add routes; the first one to a destination in a namespace wins (no silent replace)."""
    have = {(r.ns, r.dst) for r in bp.routes}
    for r in routes:
        if (r.ns, r.dst) not in have:
            bp.routes.append(r)
            have.add((r.ns, r.dst))


IFNAMSIZ = 16  # the kernel's limit, its final NUL included: 15 characters
_KERNEL_BAD = frozenset("/: \t\n")
_LONG_PREFIX = re.compile(r"^(?P<kind>[A-Za-z]+)(?P<rest>[0-9].*)$")


def valid_kernel_name(name: str) -> bool:
    """Whether Linux accepts `name` as an interface name (dev_valid_name)."""
    return (
        0 < len(name) < IFNAMSIZ
        and name not in (".", "..")
        and not any(c in _KERNEL_BAD for c in name)
    )


def kernel_names(site: Site, device: Device) -> dict[str, str]:
    """The kernel name of each of `device`'s interfaces in the twin (its management interface
    included), deterministic. A name Linux accepts as is stays (the example's `gi1`, `lan0.110`,
    `mgmt0`); an IOS-style name is renamed: `Gi1/0/1` -> `Gi1-0-1`, `GigabitEthernet1/0/24` ->
    `Gi1-0-24`, and `p<N>` (N: its position) when that is still too long or taken. A trunk
    (a cabling end) needs room for its per-VLAN legs (`<name>.<vlan>`).

    Linux devices keep their names: they are real kernel names (`agent.inventory.checks`
    refuses one Linux would not take). Raises SafetyError if a name cannot be built."""
    declared = [i.name for i in device.interfaces]
    if device.management.interface not in declared:
        declared.append(device.management.interface)
    vids = [z.vlan for z in site.zones if z.vlan is not None]
    leg = 1 + max((len(str(v)) for v in vids), default=0)
    trunks = {
        end.interface
        for cable in site.cabling
        for end in (cable.a, cable.b)
        if end.device == device.name
    }

    def fits(name: str, original: str) -> bool:
        room = IFNAMSIZ - 1 - (leg if original in trunks else 0)
        return valid_kernel_name(name) and len(name) <= room

    out: dict[str, str] = {}
    if registry.platform(device.platform).kernel_names:
        out = {name: name for name in declared}
    else:
        taken = {n for n in declared if fits(n, n)}
        for i, name in enumerate(declared):
            if fits(name, name):
                out[name] = name
                continue
            m = _LONG_PREFIX.match(name)
            short = (m.group("kind")[:2] + m.group("rest")) if m else name
            candidate = short.replace("/", "-").replace(":", "-")
            if not fits(candidate, name) or candidate in taken:
                candidate = f"p{i}"
                while candidate in taken:
                    candidate += "x"
            taken.add(candidate)
            out[name] = candidate
    bad = [
        name
        for name, kname in out.items()
        if not valid_kernel_name(kname) or (name in trunks and not fits(kname, name))
    ]
    if bad:
        raise SafetyError(
            f"{site.name}/{device.name}: the twin cannot name interface(s) "
            f"{', '.join(bad)} in Linux (at most 15 characters with a trunk's '.<vlan>' legs, "
            "no '/' or ':')",
            hint="shorten the interface names of this Linux device in the inventory",
        )
    return out


def _zone_gateway(site: Site, zone: Zone) -> ipaddress.IPv4Address | None:
    if zone.gateway is None:
        return None
    device = site.device(zone.gateway.device)
    iface = device.interface(zone.gateway.interface) if device else None
    return iface.address.ip if iface is not None and iface.address is not None else None


def _other_address(addr: ipaddress.IPv4Interface) -> ipaddress.IPv4Address:
    hosts = [h for h in addr.network.hosts() if h != addr.ip]
    return hosts[0]


def _check_sandbox(inv: Inventory) -> None:
    """Every address the twin would configure must sit inside 198.18.0.0/15."""
    bad: list[str] = []

    def need(what: str, net: ipaddress.IPv4Network | ipaddress.IPv4Address) -> None:
        ok = net.subnet_of(SANDBOX) if isinstance(net, ipaddress.IPv4Network) else net in SANDBOX
        if not ok:
            bad.append(f"{what} {net}")

    need("management network", inv.group.management.subnet)
    for site in inv.sites:
        for zone in site.zones:
            need(f"{site.name}/{zone.name} subnet", zone.subnet)
        for device in site.devices:
            for iface in device.interfaces:
                if iface.address is not None:
                    need(f"{device.name}:{iface.name}", iface.address.network)
        for link in site.links:
            if link.peer_address is not None:
                need(f"{site.name} link {link.name} peer", link.peer_address)
    if bad:
        raise SafetyError(
            f"{inv.path}: the twin only builds networks inside {SANDBOX}; outside it: "
            + ", ".join(bad[:5])
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
            hint="build the twin from an inventory whose addresses are all in 198.18.0.0/15",
        )

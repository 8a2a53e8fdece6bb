"""In-band management: the path of the agent's management flows to every device of a group
managed in band (`group.management.mode: in_band`), the explicit exceptions that keep them open
through a cut, and where a state cuts them.

The agent sits in a zone of the group's core, cabled to `agent_port`; a device is managed at the
address of one of its interfaces (checked by `agent.inventory.checks`): a firewall of an
establishment at its WAN address (or a zone gateway, reached through the WAN), the core's
firewall at a gateway, a switch at an address in one of its site's zones (its VLAN interface),
behind that zone's gateway. Hub and spoke, as `agent.network.paths` routes flows.

A management flow is TCP from the agent to each management port of the device (`ports`): SSH
(every platform's `device check`, and the transport of the SSH and NETCONF drivers) and the HTTPS
API port where the device declares one. SNMP is UDP, which the rule model cannot name: it gets no
exception (`snmp_cut` says where a state cuts it, the planner refuses such a step).

Pure: imports the inventory models, `agent.network.paths` and `agent.network.state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import PlanError
from agent.inventory.models import Device, Inventory, LinkKind, Site, Zone
from agent.network.paths import Hop, PortHop, RouteHop, l2_hops
from agent.network.state import GroupState, NftRule, device_state

TAG_PREFIX = "management:"
SNMP_PORT = 161


def management_tag(device: str) -> str:
    """The tag of the exceptions that keep the agent's management of `device` open."""
    return f"{TAG_PREFIX}{device}"


def is_management(rule: NftRule) -> bool:
    return rule.tag.startswith(TAG_PREFIX)


@dataclass(frozen=True)
class ManagementPath:
    """The agent's management flows to one device: TCP from `src` to `dst` on `ports`."""

    device: str
    site: str
    src: str
    dst: str
    ports: tuple[int, ...]
    snmp: int | None  # the device's SNMP port if it declares SNMP (UDP: no exception possible)
    hops: tuple[Hop, ...]  # agent to device; routing hops where rules apply
    entry: str  # the device's own interface the agent's packets arrive on


def management_ports(device: Device) -> tuple[int, ...]:
    """The TCP ports the agent reaches `device` on: SSH, and its HTTPS API if it has one."""
    ports = {device.ssh.port}
    if device.https is not None:
        ports.add(device.https.port)
    return tuple(sorted(ports))


def management_paths(inv: Inventory) -> dict[str, ManagementPath]:
    """Every device's management path, in band; empty for a group managed out of band (the
    agent's network is its own there: no cut crosses it)."""
    mgmt = inv.group.management
    if not mgmt.in_band:
        return {}
    site = inv.site(mgmt.agent_site or "")
    zone = next((z for z in site.zones if mgmt.agent_address in z.subnet), None) if site else None
    if site is None or zone is None or zone.gateway is None or mgmt.agent_port is None:
        raise PlanError(
            f"{inv.path}: in-band management needs the agent's site, zone, gateway and port "
            "(`cordon inventory check` says which is missing)"
        )
    start = _Agent(site, zone, str(mgmt.agent_address), mgmt.agent_port.device)
    hops_up = [PortHop(mgmt.agent_port.device, mgmt.agent_port.interface)]
    return {
        device.name: _path(inv, start, hops_up, dev_site, device)
        for dev_site, device in inv.devices()
    }


@dataclass(frozen=True)
class _Agent:
    site: Site
    zone: Zone
    address: str
    switch: str


def _target(site: Site, device: Device) -> tuple[Zone | None, bool]:
    """(the zone the device is managed in, None on a link; whether it is that zone's gateway)."""
    iface = device.interface(device.management.interface)
    if iface is None:
        return None, True
    for z in site.zones:
        if z.gateway and (z.gateway.device, z.gateway.interface) == (device.name, iface.name):
            return z, True
    if iface.vlan is not None:
        zone = next((z for z in site.zones if z.vlan == iface.vlan), None)
        if zone is not None:
            return zone, False
    return None, True


def _path(
    inv: Inventory, agent: _Agent, up: list[PortHop], site: Site, device: Device
) -> ManagementPath:
    zone, routed = _target(site, device)
    agw = agent.zone.gateway
    assert agw is not None
    hops: list[Hop] = list(up)
    if site.name == agent.site.name:
        if zone is not None and zone.name == agent.zone.name and not routed:
            hops += l2_hops(site, agent.switch, device.name)
            entry = _last_port(hops, device.name)
        else:
            hops += l2_hops(site, agent.switch, agw.device)
            if routed and device.name == agw.device:
                entry = agw.interface
            else:
                zgw = _gateway(zone, device)
                if zgw.device != agw.device:
                    raise _unsupported(device, f"zone {zone and zone.name} has another gateway")
                hops.append(RouteHop(agw.device, agw.interface, zgw.interface))
                hops += l2_hops(site, zgw.device, device.name)
                entry = _last_port(hops, device.name)
    else:
        wan = next((lk for lk in site.links if lk.kind is LinkKind.WAN), None)
        if wan is None or wan.peer_device != agw.device or wan.peer_interface is None:
            raise _unsupported(device, f"{site.name}'s WAN does not end on {agw.device}")
        hops += l2_hops(agent.site, agent.switch, agw.device)
        hops += [
            RouteHop(agw.device, agw.interface, wan.peer_interface),
            PortHop(agw.device, wan.peer_interface),
            PortHop(wan.device, wan.interface),
        ]
        if device.name == wan.device and routed:
            entry = wan.interface
        else:
            zgw = _gateway(zone, device)
            if zgw.device != wan.device:
                raise _unsupported(device, f"its zone is not routed by {wan.device}")
            hops.append(RouteHop(wan.device, wan.interface, zgw.interface))
            hops += l2_hops(site, zgw.device, device.name)
            entry = _last_port(hops, device.name)
    snmp = device.snmp.port if device.snmp is not None else None
    return ManagementPath(
        device.name,
        site.name,
        agent.address,
        str(device.management.address),
        management_ports(device),
        snmp,
        tuple(hops),
        entry,
    )


def _gateway(zone: Zone | None, device: Device) -> PortHop:
    if zone is None or zone.gateway is None:
        raise _unsupported(device, "its management zone has no gateway")
    return PortHop(zone.gateway.device, zone.gateway.interface)


def _last_port(hops: list[Hop], device: str) -> str:
    ports = [h for h in hops if isinstance(h, PortHop) and h.device == device]
    return ports[-1].interface if ports else ""


def _unsupported(device: Device, why: str) -> PlanError:
    return PlanError(
        f"in-band management of {device.name}: {why}; the agent's path to it is unknown",
        hint="manage it on a zone's VLAN behind its site's firewall, or at the WAN address of "
        "the firewall that holds the site's WAN link",
    )


def management_rules(path: ManagementPath, device: str) -> list[NftRule]:
    """The explicit exceptions on `device` that keep `path` open: per routing hop and port, the
    agent's requests and the device's replies (`NftRule.reply`: stateful once rendered, so the
    managed device can open nothing toward the agent)."""
    tag = management_tag(path.device)
    out: list[NftRule] = []
    for hop in path.hops:
        if isinstance(hop, RouteHop) and hop.device == device:
            for port in path.ports:
                out.append(
                    NftRule("accept", hop.in_if, hop.out_if, path.src, path.dst, None, port, tag)
                )
                out.append(
                    NftRule("accept", hop.out_if, hop.in_if, path.dst, path.src, port, None, tag)
                )
    return out


def local_rules(path: ManagementPath) -> list[NftRule]:
    """The explicit exceptions on the managed device itself that keep `path` open through a cut
    of its own entry interface (`NftRule.local`): per port, the agent's requests to the device's
    address arriving on `path.entry` (local in), and the device's replies out of it (local out,
    stateful). Only for a platform that holds them (`Spec.local_exceptions`)."""
    tag = management_tag(path.device)
    out: list[NftRule] = []
    for port in path.ports:
        out.append(NftRule("accept", path.entry, None, path.src, path.dst, None, port, tag))
        out.append(NftRule("accept", None, path.entry, path.dst, path.src, port, None, tag))
    return out


def where_cut(state: GroupState, path: ManagementPath, port: int) -> str | None:
    """Where `state` cuts the agent's connection to `path.device` on `port` (None: it opens):
    a port shut on the way, a routing hop that drops the request or its reply, or the device's
    own entry interface shut or cut for its own traffic (a drop by that interface alone, which
    every platform also applies to the device's own traffic, with no local exception for the
    agent's request or its reply: `DeviceState.local`)."""
    for hop in path.hops:
        dev = device_state(state, hop.device)
        if isinstance(hop, PortHop):
            if hop.interface in dev.down_interfaces:
                return f"{hop.device}:{hop.interface} is shut"
            continue
        if {hop.in_if, hop.out_if} & dev.down_interfaces:
            return f"{hop.device} has {hop.in_if} or {hop.out_if} shut"
        there = dev.forward(hop.in_if, hop.out_if, path.src, path.dst, None, port)
        back = dev.forward(hop.out_if, hop.in_if, path.dst, path.src, port, None, reply=True)
        if there == "drop" or back == "drop":
            return f"{hop.device} drops it between {hop.in_if} and {hop.out_if}"
    own = device_state(state, path.device)
    if path.entry in own.down_interfaces:
        return f"its own interface {path.entry} is shut"
    there = own.local("in", path.entry, path.src, path.dst, None, port)
    back = own.local("out", path.entry, path.dst, path.src, port, None, reply=True)
    if there == "drop" or back == "drop":
        return (
            f"its own traffic on {path.entry} is dropped (a cut by interface alone also "
            "drops the device's own traffic, and no exception there lets the agent in)"
        )
    return None


def through(paths: Mapping[str, ManagementPath], device: str) -> list[ManagementPath]:
    """The management paths routed by `device` (where exceptions for them would apply)."""
    return [
        p
        for p in paths.values()
        if any(isinstance(h, RouteHop) and h.device == device for h in p.hops)
    ]

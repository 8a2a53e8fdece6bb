"""Cross-reference checks of a validated inventory: unique names, dangling references, addresses
outside their subnet, overlapping subnets, missing credentials, platforms nobody registered.
Pure: reads the model and the registered platform names, reports.

Imports only `agent.inventory.models`, `agent.inventory.platforms` (the registered platform names),
`agent.yamlfile` (the `Issue` type) and the standard library.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from agent.inventory import platforms
from agent.inventory.models import (
    Device,
    Endpoint,
    HttpsSettings,
    Inventory,
    Link,
    PortRef,
    ProbePoint,
    Site,
    SiteKind,
    SnmpSettings,
    SshSettings,
    Zone,
)
from agent.yamlfile import Loc, Report, format_loc


def check(inv: Inventory, report: Report) -> None:
    """Report every cross-reference problem of `inv` (call `report(loc, message)` for each)."""
    _unique(report, ("sites",), [s.name for s in inv.sites], "site")
    _unique(report, ("flows",), [f.name for f in inv.flows], "flow")
    _check_group(inv, report)
    device_names: dict[str, Loc] = {}
    mgmt_addresses: dict[ipaddress.IPv4Address, Loc] = {}
    data_addresses: dict[ipaddress.IPv4Address, Loc] = {}
    subnets: list[tuple[ipaddress.IPv4Network, Loc]] = []
    for si, site in enumerate(inv.sites):
        sloc: Loc = ("sites", si)
        _check_site(inv, site, sloc, report)
        for di, device in enumerate(site.devices):
            dloc: Loc = (*sloc, "devices", di)
            if device.name in device_names:
                report(
                    (*dloc, "name"),
                    f"device {device.name!r} is already defined at "
                    f"{_fmt(device_names[device.name])}; device names are unique in the group",
                )
            device_names.setdefault(device.name, dloc)
            addr = device.management.address
            if addr in mgmt_addresses:
                report(
                    (*dloc, "management", "address"),
                    f"management address {addr} is also used at {_fmt(mgmt_addresses[addr])}",
                )
            mgmt_addresses.setdefault(addr, (*dloc, "management", "address"))
            if inv.group.management.in_band:
                _check_in_band(inv, site, device, dloc, report)
            elif addr not in inv.group.management.subnet:
                report(
                    (*dloc, "management", "address"),
                    f"management address {addr} is outside the management network "
                    f"{inv.group.management.subnet}",
                )
            for ii, iface in enumerate(device.interfaces):
                if iface.address is not None:
                    _claim(
                        data_addresses,
                        iface.address.ip,
                        (*dloc, "interfaces", ii, "address"),
                        report,
                    )
        for zi, zone in enumerate(site.zones):
            zloc: Loc = (*sloc, "zones", zi)
            subnets.append((zone.subnet, (*zloc, "subnet")))
            for hi, host in enumerate(zone.hosts):
                _claim(data_addresses, host.address, (*zloc, "hosts", hi, "address"), report)
    _check_overlaps(subnets, inv, report)
    for fi, flow in enumerate(inv.flows):
        floc: Loc = ("flows", fi)
        _check_endpoint(inv, flow.source, (*floc, "from"), report, needs_service=False)
        _check_endpoint(inv, flow.destination, (*floc, "to"), report, needs_service=True)
    _check_probes(inv, device_names, mgmt_addresses, data_addresses, report)


def _check_probes(
    inv: Inventory,
    device_names: dict[str, Loc],
    mgmt_addresses: dict[ipaddress.IPv4Address, Loc],
    data_addresses: dict[ipaddress.IPv4Address, Loc],
    report: Report,
) -> None:
    """Probe points: unique ids (not a device's name: both live in the tls_pins file), each leg
    in a zone of the site, its address inside the zone's subnet and nobody else's, the control
    address on the management network, and only flows whose source is in one of its legs'
    zones. Probes need the daemon's identity (group.probe_identity)."""
    seen: dict[str, Loc] = {}
    for si, site in enumerate(inv.sites):
        for pi, probe in enumerate(site.probes):
            ploc: Loc = ("sites", si, "probes", pi)
            if probe.id in seen:
                report(
                    (*ploc, "id"),
                    f"probe {probe.id!r} is already defined at {_fmt(seen[probe.id])}",
                )
            elif probe.id in device_names:
                report(
                    (*ploc, "id"),
                    f"probe id {probe.id!r} is the name of the device at "
                    f"{_fmt(device_names[probe.id])}; probe ids and device names share the "
                    "group's tls_pins file, so they must differ",
                )
            seen.setdefault(probe.id, ploc)
            _check_probe(inv, site, probe, ploc, mgmt_addresses, data_addresses, report)
    if seen and inv.group.probe_identity is None:
        report(
            ("group",),
            "probe points are declared but group.probe_identity is not: the daemon needs its "
            "own certificate and key (by reference) to open the probes' mutual-TLS channel",
        )


def _check_probe(
    inv: Inventory,
    site: Site,
    probe: ProbePoint,
    ploc: Loc,
    mgmt_addresses: dict[ipaddress.IPv4Address, Loc],
    data_addresses: dict[ipaddress.IPv4Address, Loc],
    report: Report,
) -> None:
    if not probe.legs:
        report((*ploc, "legs"), "a probe point needs at least one leg (zone and address)")
    _unique(report, (*ploc, "legs"), [leg.zone for leg in probe.legs], "leg zone", key="zone")
    for li, leg in enumerate(probe.legs):
        lloc: Loc = (*ploc, "legs", li, "address")
        zone = site.zone(leg.zone)
        if zone is None:
            report(
                (*ploc, "legs", li, "zone"),
                f"zone {leg.zone!r} is not defined in site {site.name!r}",
            )
            continue
        if leg.address not in zone.subnet:
            report(lloc, f"probe address {leg.address} is outside the zone subnet {zone.subnet}")
            continue
        if leg.address in (zone.subnet.network_address, zone.subnet.broadcast_address):
            report(
                lloc,
                f"probe address {leg.address} is the network or broadcast address of {zone.subnet}",
            )
            continue
        _claim(data_addresses, leg.address, lloc, report)
    control = probe.control.address
    cloc: Loc = (*ploc, "control", "address")
    if control not in inv.group.management.subnet:
        report(
            cloc,
            f"control address {control} is outside the management network "
            f"{inv.group.management.subnet}: the daemon reaches probes out of band only",
        )
    elif control == inv.group.management.agent_address:
        report(cloc, f"control address {control} is the agent's own management address")
    else:
        _claim(mgmt_addresses, control, cloc, report)
    zones = {leg.zone for leg in probe.legs}
    first: dict[str, int] = {}
    for fi, name in enumerate(probe.flows):
        floc: Loc = (*ploc, "flows", fi)
        flow = inv.flow(name)
        if name in first:
            report(
                floc,
                f"flow {name} is listed twice (first at {_fmt((*ploc, 'flows', first[name]))})",
            )
        first.setdefault(name, fi)
        if flow is None:
            report(floc, f"flow {name!r} is not declared under flows")
        elif flow.source.site != site.name or flow.source.zone not in zones:
            report(
                floc,
                f"flow {name} starts in {flow.source.site}/{flow.source.zone}; probe "
                f"{probe.id} has legs only in {site.name}/{{{', '.join(sorted(zones))}}}: a "
                "probe tests a flow from its own address in the flow's source zone",
            )


def _check_group(inv: Inventory, report: Report) -> None:
    g = inv.group
    core = inv.site(g.core)
    if core is None:
        report(("group", "core"), f"core site {g.core!r} is not defined under sites")
    elif core.kind is not SiteKind.CORE:
        report(
            ("group", "core"),
            f"site {g.core!r} is the group's core but has kind "
            f"{core.kind.value!r}; set its kind to 'core'",
        )
    if g.management.agent_address not in g.management.subnet:
        report(
            ("group", "management", "agent_address"),
            f"{g.management.agent_address} is outside {g.management.subnet}",
        )
    if g.management.in_band:
        _check_agent_in_band(inv, report)
    elif g.management.agent_site is not None or g.management.agent_port is not None:
        report(
            ("group", "management"),
            "agent_site and agent_port are for in-band management only: set mode: in_band, "
            "or remove them (out of band, the agent sits on the management network)",
        )


def agent_zone(inv: Inventory) -> Zone | None:
    """The zone the agent sits in, in band: the zone of `agent_site` whose subnet holds the
    agent's address (None out of band, or if there is none)."""
    mgmt = inv.group.management
    site = inv.site(mgmt.agent_site) if mgmt.in_band and mgmt.agent_site else None
    if site is None:
        return None
    return next((z for z in site.zones if mgmt.agent_address in z.subnet), None)


def _check_agent_in_band(inv: Inventory, report: Report) -> None:
    mgmt = inv.group.management
    loc: Loc = ("group", "management")
    if mgmt.agent_site is None:
        report(
            (*loc, "agent_site"),
            "in-band management needs agent_site: the site the agent sits at (the group's core)",
        )
        return
    site = inv.site(mgmt.agent_site)
    if site is None:
        report((*loc, "agent_site"), f"site {mgmt.agent_site!r} is not defined under sites")
        return
    if site.name != inv.group.core:
        report(
            (*loc, "agent_site"),
            f"the agent sits at {site.name!r}, but in band it must sit at the group's core "
            f"({inv.group.core!r}): its management flows reach the establishments through the "
            "WAN, hub and spoke",
        )
    zone = agent_zone(inv)
    if zone is None:
        report(
            (*loc, "agent_address"),
            f"{mgmt.agent_address} is in no zone of {site.name}; in band the agent sits in a zone "
            "of its site (declare the zone, with the agent's port)",
        )
        return
    if zone.subnet != mgmt.subnet:
        report(
            (*loc, "subnet"),
            f"in band, subnet is the agent's zone's subnet: {zone.subnet} (zone {zone.name}), "
            f"not {mgmt.subnet}",
        )
    if zone.gateway is None:
        report((*loc, "agent_address"), f"the agent's zone {zone.name} has no gateway")
    if mgmt.agent_port is None:
        report(
            (*loc, "agent_port"),
            f"in-band management needs agent_port: the switch port of zone {zone.name} the agent "
            "is cabled to ('device:interface')",
        )
    elif (mgmt.agent_port.device, mgmt.agent_port.interface) not in {
        (p.device, p.interface) for p in zone.ports
    }:
        report(
            (*loc, "agent_port"),
            f"port {mgmt.agent_port} is not one of the ports of the agent's zone "
            f"{site.name}/{zone.name}; list it under the zone's ports",
        )


def _check_in_band(inv: Inventory, site: Site, device: Device, dloc: Loc, report: Report) -> None:
    """An in-band device is managed at the address of one of its interfaces, reached through its
    site's network: a zone's gateway, its WAN link, or an interface on a zone's VLAN."""
    loc: Loc = (*dloc, "management")
    mgmt = device.management
    iface = device.interface(mgmt.interface)
    if iface is None:
        report(
            (*loc, "interface"),
            f"{mgmt.interface!r} is not one of {device.name}'s interfaces; in band, a device is "
            "managed at the address of one of its own interfaces",
        )
        return
    if iface.address is None or iface.address.ip != mgmt.address:
        has = f"it has {iface.address}" if iface.address is not None else "it has no address"
        report(
            (*loc, "address"),
            f"in band, the management address {mgmt.address} must be the address of "
            f"{device.name}:{iface.name} ({has})",
        )
        return
    gateway_of = [
        z
        for z in site.zones
        if z.gateway and z.gateway.device == device.name and z.gateway.interface == iface.name
    ]
    wan = [
        lk
        for lk in site.links
        if lk.kind.value == "wan" and lk.device == device.name and lk.interface == iface.name
    ]
    on_vlan = [z for z in site.zones if iface.vlan is not None and z.vlan == iface.vlan]
    holds_wan = any(lk.kind.value == "wan" and lk.device == device.name for lk in site.links)
    core = site.name == inv.group.core
    if not (gateway_of or wan or on_vlan):
        report(
            (*loc, "interface"),
            f"in band, {device.name} must be managed on a zone's gateway, on its WAN link or on "
            f"an interface in a zone's VLAN; {iface.name} is none of them",
        )
    elif on_vlan and not gateway_of:
        zone = on_vlan[0]
        if mgmt.address not in zone.subnet:
            report(
                (*loc, "address"),
                f"{mgmt.address} is outside {site.name}/{zone.name} ({zone.subnet}), the zone of "
                f"VLAN {iface.vlan} that {device.name} is managed on",
            )
        elif zone.gateway is None:
            report(
                (*loc, "interface"),
                f"{device.name} is managed in zone {zone.name}, which has no gateway: the agent "
                "could not route to it",
            )
        else:
            _check_in_band_gateway(inv, site, device, zone, loc, report)
    elif not core and not holds_wan:
        report(
            (*loc, "interface"),
            f"in band, a routed device of an establishment is reached through the site's WAN "
            f"link; {device.name} holds none (manage it on a zone's VLAN instead)",
        )


def _check_site(inv: Inventory, site: Site, sloc: Loc, report: Report) -> None:
    _unique(report, (*sloc, "devices"), [d.name for d in site.devices], "device")
    _unique(report, (*sloc, "zones"), [z.name for z in site.zones], "zone")
    _unique(report, (*sloc, "links"), [lk.name for lk in site.links], "link")
    vlans = [z.vlan for z in site.zones if z.vlan is not None]
    _unique(
        report,
        (*sloc, "zones"),
        [str(v) for v in vlans],
        "VLAN",
        key="vlan",
        positions=[i for i, z in enumerate(site.zones) if z.vlan is not None],
    )
    if site.kind is SiteKind.EXTERNAL and (site.devices or site.links):
        report(
            sloc,
            "an external site (internet, remote users, vendors) has no devices or links "
            "of ours; declare the link on our side, with this site as its peer",
        )
    for di, device in enumerate(site.devices):
        _check_device(inv, device, (*sloc, "devices", di), report)
    _check_zones(site, sloc, report)
    _check_links(inv, site, sloc, report)
    _check_cabling(site, sloc, report)


def _check_zones(site: Site, sloc: Loc, report: Report) -> None:
    for zi, zone in enumerate(site.zones):
        _check_zone(site, zone, (*sloc, "zones", zi), report)


def _check_zone(site: Site, zone: Zone, zloc: Loc, report: Report) -> None:
    _unique(report, (*zloc, "hosts"), [h.name for h in zone.hosts], "host")
    if zone.gateway is not None:
        iface = _port(site, zone.gateway, (*zloc, "gateway"), report)
        if iface is not None:
            if iface.address is None:
                report((*zloc, "gateway"), f"gateway {zone.gateway} has no address")
            elif iface.address.ip not in zone.subnet:
                report(
                    (*zloc, "gateway"),
                    f"gateway address {iface.address.ip} of "
                    f"{zone.gateway} is outside the zone subnet {zone.subnet}",
                )
    ports = set()
    for pi, port in enumerate(zone.ports):
        _port(site, port, (*zloc, "ports", pi), report)
        ports.add((port.device, port.interface))
    for hi, host in enumerate(zone.hosts):
        hloc: Loc = (*zloc, "hosts", hi)
        if host.address not in zone.subnet:
            report(
                (*hloc, "address"),
                f"address {host.address} is outside the zone subnet {zone.subnet}",
            )
        elif host.address in (zone.subnet.network_address, zone.subnet.broadcast_address):
            report(
                (*hloc, "address"),
                f"address {host.address} is the network or broadcast address of {zone.subnet}",
            )
        _unique(report, (*hloc, "services"), [s.name for s in host.services], "service")
        if host.port is not None and (host.port.device, host.port.interface) not in ports:
            report(
                (*hloc, "port"),
                f"port {host.port} is not one of the zone's ports; list it under the zone's ports",
            )


def _check_links(inv: Inventory, site: Site, sloc: Loc, report: Report) -> None:
    for li, link in enumerate(site.links):
        _check_link(inv, site, link, (*sloc, "links", li), report)


def _check_in_band_gateway(
    inv: Inventory, site: Site, device: Device, zone: Zone, loc: Loc, report: Report
) -> None:
    """The gateway of the zone a device is managed in must be on the agent's way: the device
    that holds the site's WAN link (hub and spoke), or at the core the agent's zone's gateway."""
    assert zone.gateway is not None
    gw = zone.gateway.device
    if site.name == inv.group.core:
        agent = agent_zone(inv)
        ok = agent is None or agent.gateway is None or agent.gateway.device == gw
        way = "the gateway of the agent's zone"
    else:
        ok = any(lk.kind.value == "wan" and lk.device == gw for lk in site.links)
        way = f"the device that holds {site.name}'s WAN link"
    if not ok:
        report(
            (*loc, "interface"),
            f"{device.name} is managed in zone {zone.name}, routed by {gw}, which is not {way}: "
            "the agent's path to it is unknown",
        )


def _check_link(inv: Inventory, site: Site, link: Link, lloc: Loc, report: Report) -> None:
    iface = _port(site, PortRef(device=link.device, interface=link.interface), lloc, report)
    if iface is not None and iface.address is None:
        report(lloc, f"link interface {link.device}:{link.interface} has no address")
    peer = inv.site(link.peer)
    if peer is None:
        report((*lloc, "peer"), f"peer site {link.peer!r} is not defined")
        return
    if peer.name == site.name:
        report((*lloc, "peer"), "a link cannot have its own site as peer")
    if link.peer_device is not None:
        pdev = peer.device(link.peer_device)
        if pdev is None:
            report(
                (*lloc, "peer_device"),
                f"device {link.peer_device!r} is not defined in site {peer.name!r}",
            )
        elif link.peer_interface is not None and pdev.interface(link.peer_interface) is None:
            report(
                (*lloc, "peer_interface"),
                f"interface {link.peer_interface!r} is not defined on {link.peer_device}",
            )
    elif link.peer_interface is not None:
        report((*lloc, "peer_interface"), "peer_interface needs peer_device")
    if link.peer_address is not None and iface is not None and iface.address is not None:
        if link.peer_address not in iface.address.network:
            report(
                (*lloc, "peer_address"),
                f"peer address {link.peer_address} is outside "
                f"the link subnet {iface.address.network}",
            )
        elif link.peer_address == iface.address.ip:
            report((*lloc, "peer_address"), "peer address equals our own address")


def _check_cabling(site: Site, sloc: Loc, report: Report) -> None:
    zone_vlans = {z.vlan for z in site.zones if z.vlan is not None}
    for ci, cable in enumerate(site.cabling):
        cloc: Loc = (*sloc, "cabling", ci)
        _port(site, cable.a, (*cloc, "a"), report)
        _port(site, cable.b, (*cloc, "b"), report)
        if cable.vlans != "all":
            for vi, vlan in enumerate(cable.vlans):
                if vlan not in zone_vlans:
                    report((*cloc, "vlans", vi), f"VLAN {vlan} is not the VLAN of any zone here")


def _check_device(inv: Inventory, device: Device, dloc: Loc, report: Report) -> None:
    registered = platforms.known()
    found = registered.get(device.platform)
    if found is None:
        report(
            (*dloc, "platform"),
            f"no platform {device.platform!r} is registered; registered platforms: "
            f"{', '.join(sorted(registered))}",
        )
    _unique(report, (*dloc, "interfaces"), [i.name for i in device.interfaces], "interface")
    ssh = _merged_ssh(inv.group.defaults.ssh, device.ssh)
    if ssh.username is None:
        report(
            (*dloc, "ssh", "username"),
            "no SSH username: set it on the device or under group.defaults.ssh",
        )
    if ssh.key is None and ssh.password is None:
        report(
            (*dloc, "ssh"),
            "no SSH credential reference (key or password): set it on the "
            "device or under group.defaults.ssh",
        )
    if ssh.host_key is None and inv.group.known_hosts is None:
        report(
            (*dloc, "ssh", "host_key"),
            "no pinned host key: set ssh.host_key, or "
            "group.known_hosts; unknown host keys are never accepted",
        )
    snmp = _merged_snmp(inv.group.defaults.snmp, device.snmp)
    if snmp is not None:
        sloc = (*dloc, "snmp")
        if snmp.version == "v3":
            missing = [k for k in ("user", "auth", "priv") if getattr(snmp, k) is None]
            if missing:
                report(
                    sloc,
                    f"SNMPv3 needs authPriv: missing {', '.join(missing)} "
                    "(on the device or under group.defaults.snmp)",
                )
            if snmp.community is not None:
                report((*sloc, "community"), "a community is only for version v2c")
        elif snmp.community is None:
            report((*sloc, "community"), "SNMP v2c needs a community reference")
    if found is not None and found.kernel_names:
        for ii, iface in enumerate(device.interfaces):
            if len(iface.name) > 15 or "/" in iface.name or ":" in iface.name:
                report(
                    (*dloc, "interfaces", ii, "name"),
                    f"{iface.name!r} is not a valid Linux "
                    "interface name (at most 15 characters, no '/' or ':')",
                )


def merged_ssh(defaults: SshSettings, own: SshSettings) -> SshSettings:
    """Device SSH settings with the group defaults filled in where the device says nothing."""
    return _merged_ssh(defaults, own)


def _merged_ssh(defaults: SshSettings, own: SshSettings) -> SshSettings:
    update = {k: v for k, v in own.model_dump(exclude_unset=True).items()}
    return defaults.model_copy(update=update)


def merged_snmp(defaults: SnmpSettings | None, own: SnmpSettings | None) -> SnmpSettings | None:
    return _merged_snmp(defaults, own)


def merged_https(defaults: HttpsSettings | None, own: HttpsSettings | None) -> HttpsSettings | None:
    """Device HTTPS settings with the group defaults filled in; None for a device without an
    HTTPS API (the defaults apply only to a device that declares `https`)."""
    if own is None:
        return None
    if defaults is None:
        return own
    return defaults.model_copy(update=own.model_dump(exclude_unset=True))


def _merged_snmp(defaults: SnmpSettings | None, own: SnmpSettings | None) -> SnmpSettings | None:
    if own is None:
        return defaults
    if defaults is None:
        return own
    return defaults.model_copy(update=own.model_dump(exclude_unset=True))


def _port(site: Site, ref: PortRef, loc: Loc, report: Report) -> Any:
    device = site.device(ref.device)
    if device is None:
        report(loc, f"device {ref.device!r} is not defined in site {site.name!r}")
        return None
    iface = device.interface(ref.interface)
    if iface is None:
        report(loc, f"interface {ref.interface!r} is not defined on device {ref.device!r}")
    return iface


def _check_endpoint(
    inv: Inventory, ep: Endpoint, loc: Loc, report: Report, *, needs_service: bool
) -> None:
    site = inv.site(ep.site)
    if site is None:
        report(loc, f"site {ep.site!r} is not defined")
        return
    zone = site.zone(ep.zone)
    if zone is None:
        report(loc, f"zone {ep.zone!r} is not defined in site {ep.site!r}")
        return
    host = zone.host(ep.host)
    if host is None:
        report(loc, f"host {ep.host!r} is not defined in zone {ep.site}/{ep.zone}")
        return
    if needs_service:
        if ep.service is None:
            report(loc, f"the destination needs a service: write '{ep}:SERVICE'")
        elif host.service(ep.service) is None:
            known = ", ".join(s.name for s in host.services) or "none"
            report(loc, f"service {ep.service!r} is not declared on host {ep} (declared: {known})")
    elif ep.service is not None:
        report(loc, "the source of a flow has no service; remove ':" + ep.service + "'")


def _check_overlaps(
    subnets: list[tuple[ipaddress.IPv4Network, Loc]], inv: Inventory, report: Report
) -> None:
    ordered = sorted(subnets, key=lambda s: (s[0].network_address, s[0].prefixlen))
    for (a, aloc), (b, bloc) in itertools.pairwise(ordered):
        if a.overlaps(b):
            report(bloc, f"subnet {b} overlaps {a} at {_fmt(aloc)}")
    if inv.group.management.in_band:
        return  # in band, the agent's network is one of the zones
    mgmt = inv.group.management.subnet
    for net, loc in subnets:
        if net.overlaps(mgmt):
            report(loc, f"subnet {net} overlaps the management network {mgmt}")


def _claim(
    seen: dict[ipaddress.IPv4Address, Loc], addr: ipaddress.IPv4Address, loc: Loc, report: Report
) -> None:
    if addr in seen:
        report(loc, f"address {addr} is already used at {_fmt(seen[addr])}")
    else:
        seen[addr] = loc


def _unique(
    report: Report,
    loc: Loc,
    names: Sequence[str],
    what: str,
    *,
    key: str = "name",
    positions: Iterable[int] | None = None,
) -> None:
    index = list(positions) if positions is not None else list(range(len(names)))
    first: dict[str, int] = {}
    for pos, name in zip(index, names, strict=True):
        if name in first:
            report(
                (*loc, pos, key),
                f"duplicate {what} {name!r} (first at {_fmt((*loc, first[name]))})",
            )
        else:
            first[name] = pos


def _fmt(loc: Loc) -> str:
    return format_loc(loc)

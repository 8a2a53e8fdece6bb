"""The path of every declared flow through the group's devices, from the inventory alone: the
switch ports it crosses, and the routing hops (device, in-interface, out-interface) it takes.

Pure: imports only the inventory models and `agent.errors`. Topology assumptions (checked, with a
PlanError when they do not hold): a zone's gateway device also carries the site's links;
establishments reach the core, each other and any external side they have no link to through
their WAN link to the core (hub and spoke).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from agent.errors import PlanError
from agent.inventory.models import (
    Cable,
    Endpoint,
    Flow,
    Inventory,
    Link,
    LinkKind,
    Site,
    SiteKind,
    Zone,
)


@dataclass(frozen=True)
class PortHop:
    """The packet crosses this interface (an access port, a trunk end, a link interface)."""

    device: str
    interface: str


@dataclass(frozen=True)
class RouteHop:
    """The packet is routed by `device` from `in_if` to `out_if` (where firewall rules apply)."""

    device: str
    in_if: str
    out_if: str


Hop = PortHop | RouteHop


@dataclass(frozen=True)
class FlowPath:
    flow: Flow
    src: str  # addresses and port, for rule evaluation
    dst: str
    port: int
    hops: tuple[Hop, ...]


def _zone(inv: Inventory, ep: Endpoint) -> tuple[Site, Zone]:
    site = inv.site(ep.site)
    zone = site.zone(ep.zone) if site else None
    if site is None or zone is None:
        raise PlanError(f"endpoint {ep} is not in the inventory")
    return site, zone


Edges = dict[str, list[tuple[str, PortHop, PortHop]]]
# a site's cabling as a graph, by the identity of its cabling tuple (kept alive with it, so an
# id is never reused while it is here): built once, not for every flow (#18). Bounded.
_EDGES: dict[int, tuple[tuple[Cable, ...], Edges]] = {}


def _edges(site: Site) -> Edges:
    found = _EDGES.get(id(site.cabling))
    if found is not None and found[0] is site.cabling:
        return found[1]
    edges: Edges = {}
    for cable in site.cabling:
        a = PortHop(cable.a.device, cable.a.interface)
        b = PortHop(cable.b.device, cable.b.interface)
        edges.setdefault(a.device, []).append((b.device, a, b))
        edges.setdefault(b.device, []).append((a.device, b, a))
    if len(_EDGES) >= 4096:
        _EDGES.clear()
    _EDGES[id(site.cabling)] = (site.cabling, edges)
    return edges


def _l2(site: Site, start: str, goal: str) -> list[PortHop]:
    """Ports crossed between two devices of a site, through its cabling (shortest path)."""
    if start == goal:
        return []
    edges = _edges(site)
    seen = {start}
    queue: deque[tuple[str, list[PortHop]]] = deque([(start, [])])
    while queue:
        node, hops = queue.popleft()
        for nxt, mine, theirs in edges.get(node, []):
            if nxt in seen:
                continue
            if nxt == goal:
                return [*hops, mine, theirs]
            seen.add(nxt)
            queue.append((nxt, [*hops, mine, theirs]))
    raise PlanError(f"site {site.name}: no cabling between {start} and {goal}")


def l2_hops(site: Site, start: str, goal: str) -> list[PortHop]:
    """Ports crossed between two devices of a site, through its cabling (shortest path)."""
    return _l2(site, start, goal)


def _host_side(site: Site, zone: Zone, host_name: str) -> tuple[list[PortHop], str | None]:
    """Ports from a host up to its zone's gateway device (None for a site without devices)."""
    host = zone.host(host_name)
    if host is None or host.port is None or zone.gateway is None:
        return [], None
    hops = [PortHop(host.port.device, host.port.interface)]
    hops += _l2(site, host.port.device, zone.gateway.device)
    return hops, zone.gateway.device


def _link_to(site: Site, peer: str) -> Link | None:
    return next((lk for lk in site.links if lk.peer == peer), None)


def _wan(site: Site) -> Link | None:
    return next((lk for lk in site.links if lk.kind is LinkKind.WAN), None)


def _core_port(site: Site) -> PortHop | None:
    """The core's end of `site`'s WAN link."""
    wan = _wan(site)
    if wan is None or wan.peer_device is None or wan.peer_interface is None:
        return None
    return PortHop(wan.peer_device, wan.peer_interface)


def _site_sequence(inv: Inventory, src: Site, dst: Site) -> list[Site]:
    """The sites a packet crosses: directly when a link joins them, else through the core."""
    core = inv.site(inv.group.core)
    external = SiteKind.EXTERNAL
    if src.kind is external and _link_to(dst, src.name) is not None:
        return [src, dst]
    if dst.kind is external and _link_to(src, dst.name) is not None:
        return [src, dst]
    if SiteKind.CORE in (src.kind, dst.kind) or core is None:
        return [src, dst]
    return [src, core, dst]


def _junction(a: Site, b: Site) -> tuple[PortHop | None, PortHop | None]:
    """(exit interface of a's gateway toward b, entry interface of b's gateway from a)."""
    if b.kind is SiteKind.EXTERNAL:
        link = _link_to(a, b.name)
        return (PortHop(link.device, link.interface) if link else None), None
    if a.kind is SiteKind.EXTERNAL:
        link = _link_to(b, a.name)
        return None, (PortHop(link.device, link.interface) if link else None)
    if b.kind is SiteKind.CORE:
        wan = _wan(a)
        return (PortHop(wan.device, wan.interface) if wan else None), _core_port(a)
    wan = _wan(b)
    return _core_port(b), (PortHop(wan.device, wan.interface) if wan else None)


def flow_path(inv: Inventory, flow: Flow) -> FlowPath:
    """The hops of `flow`, source to destination."""
    src_site, src_zone = _zone(inv, flow.source)
    dst_site, dst_zone = _zone(inv, flow.destination)
    src_host = src_zone.host(flow.source.host)
    dst_host = dst_zone.host(flow.destination.host)
    svc = dst_host.service(flow.destination.service or "") if dst_host else None
    if src_host is None or dst_host is None or svc is None:
        raise PlanError(f"flow {flow.name}: endpoints not in the inventory")
    up, src_gw = _host_side(src_site, src_zone, src_host.name)
    down, dst_gw = _host_side(dst_site, dst_zone, dst_host.name)
    down = list(reversed(down))
    hops: list[Hop] = []
    if src_site.name == dst_site.name and src_zone.name == dst_zone.name:
        hops = _same_zone(src_site, src_zone, src_host.name, dst_host.name)
    elif src_site.name == dst_site.name:
        if src_gw is None or src_gw != dst_gw:
            raise PlanError(
                f"flow {flow.name}: zones {src_zone.name} and {dst_zone.name} have "
                "different gateway devices (unsupported topology)"
            )
        assert src_zone.gateway is not None
        assert dst_zone.gateway is not None
        hops = [
            *up,
            RouteHop(src_gw, src_zone.gateway.interface, dst_zone.gateway.interface),
            *down,
        ]
    else:
        hops = _between_sites(
            inv, flow, (src_site, src_zone, up, src_gw), (dst_site, dst_zone, down, dst_gw)
        )
    return FlowPath(flow, str(src_host.address), str(dst_host.address), svc.port, tuple(hops))


def _same_zone(site: Site, zone: Zone, a: str, b: str) -> list[Hop]:
    ha, hb = zone.host(a), zone.host(b)
    assert ha is not None
    assert hb is not None
    if ha.port is None or hb.port is None:
        return []
    return [
        PortHop(ha.port.device, ha.port.interface),
        *_l2(site, ha.port.device, hb.port.device),
        PortHop(hb.port.device, hb.port.interface),
    ]


def _between_sites(
    inv: Inventory,
    flow: Flow,
    src: tuple[Site, Zone, list[PortHop], str | None],
    dst: tuple[Site, Zone, list[PortHop], str | None],
) -> list[Hop]:
    src_site, src_zone, up, _ = src
    dst_site, dst_zone, down, _ = dst
    sites = _site_sequence(inv, src_site, dst_site)
    junctions = [_junction(a, b) for a, b in itertools.pairwise(sites)]
    hops: list[Hop] = list(up)
    for i, site in enumerate(sites):
        if site.kind is SiteKind.EXTERNAL:
            continue
        entry = junctions[i - 1][1] if i > 0 else None
        exit_ = junctions[i][0] if i < len(junctions) else None
        if (i > 0 and entry is None) or (i < len(junctions) and exit_ is None):
            raise PlanError(
                f"flow {flow.name}: no link between "
                f"{' -> '.join(x.name for x in sites)} at {site.name}"
            )
        zone = src_zone if i == 0 else dst_zone if i == len(sites) - 1 else None
        in_if = entry.interface if entry else _gw(zone, flow)
        out_if = exit_.interface if exit_ else _gw(zone, flow)
        device = (entry or exit_ or _gw_port(zone, flow)).device
        if entry:
            hops.append(entry)
        hops.append(RouteHop(device, in_if, out_if))
        if exit_:
            hops.append(exit_)
    hops.extend(down)
    return hops


def _gw_port(zone: Zone | None, flow: Flow) -> PortHop:
    if zone is None or zone.gateway is None:
        raise PlanError(f"flow {flow.name}: a zone on its path has no gateway")
    return PortHop(zone.gateway.device, zone.gateway.interface)


def _gw(zone: Zone | None, flow: Flow) -> str:
    return _gw_port(zone, flow).interface

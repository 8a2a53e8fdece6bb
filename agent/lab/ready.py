"""Is the twin ready? The kernel's own state (every link oper-UP, every bridge port forwarding)
and then every declared flow of the baseline, probed from inside its source namespace; past a
bound, a LabError naming the flows, the device and the hop where the packet stops.

Why `lab up` must wait (measured, see README "The two commands"): the kernel applies carrier
changes asynchronously. A veth gets its carrier when its peer is set up, but its operational
state (and so the bridge port it belongs to, which leaves `disabled` only on that NETDEV_CHANGE,
and its transmit queue) follows later, from the `linkwatch` work: events it deems not urgent (a
bridge; a veth whose ifindex equals its peer's, common in fresh namespaces) are handled at most
once a second, 100 devices at a time. On the example group (815 devices) the last switch trunk
ports were forwarding 2.3 s after their `ip -batch` returned: the flows of the last-built sites
then lose their first ARP and time out.

Imports the inventory, the blueprint, the flow paths, the prober, netns and the settings; touches
nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent import settings
from agent.errors import LabError
from agent.inventory.models import Flow, Inventory, SiteKind
from agent.lab import flows, netns
from agent.lab.probe import ProbeTarget, Status, probe_tcp
from agent.lab.topology import Blueprint, ns_name
from agent.network.paths import FlowPath, RouteHop, flow_path

BOUND_S = 30.0  # override: CORDON_LAB_READY_S
FLOW_TIMEOUT_S = flows.OPEN_TIMEOUT_S  # one probe: covers a lost SYN on a busy machine
RETRY_PAUSE_S = 0.2
POLL_S = 0.05
REACH_PORT = 9  # "discard": an answer (banner, refusal) proves the address was reached
REACH_TIMEOUT_S = 1.5
_REACHED = (Status.OK, Status.REFUSED, Status.WRONG_BANNER)
_SHOWN = 8  # flows diagnosed and named in the error, at most


def bound() -> float:
    """The readiness bound in seconds (CORDON_LAB_READY_S, default BOUND_S)."""
    return settings.current().lab_ready_s or BOUND_S


# ----------------------------------------------------------------------------- kernel state


@dataclass(frozen=True)
class LinkProblem:
    ns: str
    ifname: str
    what: str  # "administratively down", "oper down", "bridge port disabled", ...
    settles: bool  # False when waiting cannot help (nobody will set it up again)


def link_problems(ns: str) -> list[LinkProblem]:
    """Every link of namespace `ns` (but lo) that is not up, oper-UP and, if it is a bridge
    port, forwarding, read from the kernel (`ip -d -j link`)."""
    out = netns.run(["ip", "-d", "-j", "link", "show"], netns=ns).stdout.strip()
    found: list[LinkProblem] = []
    for link in json.loads(out) if out else []:
        name = str(link.get("ifname", "?"))
        if name == "lo":
            continue
        flags = link.get("flags", [])
        if "UP" not in flags:
            found.append(LinkProblem(ns, name, "administratively down", settles=False))
            continue
        oper = str(link.get("operstate", "UNKNOWN"))
        if oper != "UP":
            carrier = "carrier, not yet applied" if "LOWER_UP" in flags else "no carrier"
            found.append(LinkProblem(ns, name, f"oper {oper.lower()} ({carrier})", settles=True))
        info = link.get("linkinfo", {})
        if info.get("info_slave_kind") == "bridge":
            state = str(info.get("info_slave_data", {}).get("state", "unknown"))
            if state != "forwarding":
                found.append(LinkProblem(ns, name, f"bridge port {state}", settles=True))
    return found


def _scan(namespaces: Iterable[str]) -> dict[str, list[LinkProblem]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        spaces = list(namespaces)
        return dict(zip(spaces, pool.map(link_problems, spaces), strict=True))


def wait_links(bp: Blueprint, deadline: float) -> float:
    """Wait until every link of the twin is oper-UP and every bridge port forwarding (only the
    namespaces not yet settled are read again). Returns the seconds waited; LabError naming each
    device and interface left if the deadline passes, or at once for a link that is down."""
    t0 = time.monotonic()
    pending = sorted(bp.nodes)
    while True:
        left = {ns: p for ns, p in _scan(pending).items() if p}
        stuck = [p for ps in left.values() for p in ps if not p.settles]
        if not left:
            return time.monotonic() - t0
        if stuck or time.monotonic() > deadline:
            problems = stuck or [p for ps in left.values() for p in ps]
            raise LabError(
                f"the twin's network did not settle{'' if stuck else ' in time'}: "
                + _name_problems(bp, problems),
                hint="the kernel applies link changes asynchronously (linkwatch); on a very "
                "busy machine raise CORDON_LAB_READY_S, else look at the interfaces named",
            )
        pending = sorted(left)
        time.sleep(POLL_S)


def _name_problems(bp: Blueprint, problems: Sequence[LinkProblem], most: int = 6) -> str:
    shown = [f"{who(bp, p.ns)}: {p.ifname} {p.what}" for p in problems[:most]]
    more = len(problems) - most
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def who(bp: Blueprint, ns: str) -> str:
    """A namespace as the inventory names it: a device, a site/zone/host, an external side."""
    for key, space in bp.host_ns.items():
        if space == ns:
            return f"host {key}"
    node = bp.nodes.get(ns)
    if node is None:
        return ns
    if node.kind in ("firewall", "switch"):
        return f"device {node.hostname}"
    if node.kind == "external":
        return f"external side {node.hostname}"
    return f"management network ({ns})"


# ----------------------------------------------------------------------------- flows


def wait_flows(
    inv: Inventory, bp: Blueprint, deadline: float, *, diagnose: bool = True
) -> list[flows.FlowObservation]:
    """Probe every declared flow (real TCP and the service's banner, from inside its source
    namespace) until all connect; only the failing ones are probed again. Past `deadline`,
    LabError naming each failing flow, the device and the hop where its packets stop."""
    pending = list(inv.flows)
    seen: dict[str, flows.FlowObservation] = {}
    while True:
        for o in flows.observe(inv, bp, flows=pending, timeout=FLOW_TIMEOUT_S):
            seen[o.flow.name] = o
        pending = [f for f in pending if not seen[f.name].observed_open]
        if not pending:
            return [seen[f.name] for f in inv.flows]
        if time.monotonic() > deadline:
            break
        time.sleep(RETRY_PAUSE_S)
    lines = []
    for f in pending[:_SHOWN]:
        status = seen[f.name].status.value
        where = diagnose_flow(inv, bp, f) if diagnose else "not diagnosed"
        lines.append(f"flow {f.name} ({f.source} -> {f.destination}): {status}; {where}")
    more = len(pending) - _SHOWN
    raise LabError(
        f"the twin is not ready: {len(pending)} of {len(inv.flows)} declared flows do not work "
        "in the normal state:\n  "
        + "\n  ".join(lines)
        + (f"\n  (and {more} more: `cordon lab flows` lists them)" if more > 0 else ""),
        hint="every declared flow must work on a freshly built twin; the hop named is where "
        "its packets stop",
    )


def check(
    inv: Inventory, bp: Blueprint, within: float | None = None
) -> list[flows.FlowObservation]:
    """The one readiness check of a twin: kernel state settled, then every flow open, within
    `within` seconds (default `bound()`). Returns the flows' observations (all open)."""
    deadline = time.monotonic() + (bound() if within is None else within)
    wait_links(bp, deadline)
    return wait_flows(inv, bp, deadline)


# ----------------------------------------------------------------------------- where it stops


def path_namespaces(inv: Inventory, bp: Blueprint, path: FlowPath) -> list[str]:
    """The namespaces a flow's packets cross, source to destination."""
    flow = path.flow
    out = [bp.host_ns[_key(flow.source.site, flow.source.zone, flow.source.host)]]
    src_site = inv.site(flow.source.site)
    if src_site is not None and src_site.kind is SiteKind.EXTERNAL:
        out.append(ns_name(bp.lab, "x", src_site.name))
    for hop in path.hops:
        ns = bp.device_ns[hop.device]
        if ns not in out:
            out.append(ns)
    dst_site = inv.site(flow.destination.site)
    if dst_site is not None and dst_site.kind is SiteKind.EXTERNAL:
        out.append(ns_name(bp.lab, "x", dst_site.name))
    out.append(
        bp.host_ns[_key(flow.destination.site, flow.destination.zone, flow.destination.host)]
    )
    return out


def _key(site: str, zone: str, host: str) -> str:
    return f"{site}/{zone}/{host}"


def diagnose_flow(inv: Inventory, bp: Blueprint, flow: Flow) -> str:
    """Where the packets of `flow` stop, found by walking its path:
    1. the kernel state of every namespace it crosses (a link down, a port not forwarding);
    2. from the source, each routing hop's address in turn (the first one that does not
       answer: the packet stops there); then that hop alone from the one before it, to tell a
       broken segment (ports, cables) from a router that does not forward;
    3. the destination's listener, and the port from its own gateway."""
    path = flow_path(inv, flow)
    spaces = path_namespaces(inv, bp, path)
    found = [p for problems in _scan(spaces).values() for p in problems]
    if found:  # a link that nobody will set up again is the cause; its peer's state follows
        found.sort(key=lambda p: p.settles)
        first = found[0]
        also = f" (also {_name_problems(bp, found[1:])})" if found[1:] else ""
        return f"stops at {who(bp, first.ns)}: {first.ifname} {first.what}{also}"
    src_ns, dst_ns = spaces[0], spaces[-1]
    src_name, dst_name = who(bp, src_ns), who(bp, dst_ns)
    # the routing hops, then the destination: (ns, name, address to reach, how it is reached,
    # the hop it routes the flow through)
    stops: list[tuple[str, str, str, str, str]] = []
    for i, hop in enumerate(path.hops):
        if isinstance(hop, RouteHop):
            addr = _address(inv, hop.device, hop.in_if)
            if addr is not None:
                ports = _ports_before(path, i)
                reach = f"{hop.device} {hop.in_if}" + (f" through {ports}" if ports else "")
                route = f"{hop.device} {hop.in_if} -> {hop.out_if}"
                stops.append((bp.device_ns[hop.device], f"device {hop.device}", addr, reach, route))
    ports = _ports_before(path, len(path.hops))
    reach = f"{dst_name} {path.dst}" + (f" through {ports}" if ports else "")
    stops.append((dst_ns, dst_name, path.dst, reach, ""))
    prev_ns, prev_name, prev_route = src_ns, src_name, ""
    for ns, name, addr, reach, route in stops:
        if not _reaches(src_ns, addr):
            if prev_ns != src_ns and _reaches(prev_ns, addr):
                return (
                    f"stops at {prev_name}: it reaches {name} ({addr}) itself but does not "
                    f"forward {src_name}'s packets there (hop {prev_route})"
                )
            return (
                f"stops between {prev_name} and {name}: {addr} does not answer "
                f"{'' if prev_ns == src_ns else 'even from ' + prev_name + ' '}(hop {reach})"
            )
        prev_ns, prev_name, prev_route = ns, name, route
    own = probe_tcp([ProbeTarget(dst_ns, path.dst, path.port)], REACH_TIMEOUT_S)[0]
    if own.status is not Status.OK:
        return f"stops at {dst_name}: nothing answers on {path.dst}:{path.port} ({own.status})"
    routers = [h.device for h in path.hops if isinstance(h, RouteHop)]
    if routers:
        last = bp.device_ns[routers[-1]]
        near = probe_tcp([ProbeTarget(last, path.dst, path.port)], REACH_TIMEOUT_S)[0]
        if near.status is not Status.OK:
            return (
                f"stops at {dst_name}: port {path.port} does not answer its gateway "
                f"{routers[-1]} ({near.status})"
            )
    return (
        f"every hop answers but TCP port {path.port} does not get through: a filter on "
        f"{', '.join(routers) or 'the path'} ({_tables(bp, routers)})"
    )


def _ports_before(path: FlowPath, index: int) -> str:
    """The switch ports crossed just before routing hop `index` (since the previous one)."""
    ports: list[str] = []
    for hop in reversed(path.hops[:index]):
        if isinstance(hop, RouteHop):
            break
        ports.insert(0, f"{hop.device} {hop.interface}")
    return ", ".join(ports)


def _address(inv: Inventory, device: str, interface: str) -> str | None:
    found = inv.find_device(device)
    iface = found[1].interface(interface) if found else None
    return str(iface.address.ip) if iface is not None and iface.address is not None else None


def _reaches(ns: str, address: str) -> bool:
    """Does anything at `address` answer a TCP connection from `ns` (a banner or a refusal)?"""
    result = probe_tcp([ProbeTarget(ns, address, REACH_PORT)], REACH_TIMEOUT_S)[0]
    return result.status in _REACHED


def _tables(bp: Blueprint, devices: Sequence[str]) -> str:
    """The nftables tables on those devices, the twin's own base table aside."""
    parts = []
    for d in devices:
        out = netns.run(["nft", "list", "tables"], netns=bp.device_ns[d], check=False).stdout
        tables = [ln.split()[-1] for ln in out.splitlines() if ln.startswith("table")]
        extra = [t for t in tables if t != "twin_base"]
        parts.append(f"{d}: {', '.join(extra) if extra else 'no table but the base'}")
    return "; ".join(parts)

"""Planning: a playbook and an inventory (and the devices' current state) become an exact plan:
per site, per step, per device the commands and their undo, and the impact on every declared flow.
Refuses a plan that would cut a must-survive flow or a management interface, unless the playbook
names the flow in `allow_cut`. Also plans the re-isolation of zones a soak found unhealthy.
Pure: reads state, changes nothing. Imports the renderer, the network model, the platform registry,
the inventory and playbook models and `agent.errors`; never a driver, the run or the twin."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from agent.engine import render
from agent.errors import PlanError
from agent.inventory.models import Flow, Inventory, Platform, Site, Zone
from agent.inventory.select import select_sites
from agent.network import management as mg
from agent.network.paths import FlowPath, RouteHop, flow_path
from agent.network.state import NORMAL, DeviceState, NftRule, allow_rules, device_state, flow_open
from agent.platforms import registry
from agent.playbook.models import (
    CHANGE_ACTIONS,
    AllowFlow,
    BlockZones,
    CutLink,
    Playbook,
    QuarantineZone,
    ReconnectZone,
    RestoreBaseline,
    RestoreLinks,
    ShutPort,
    ShutZonePorts,
    ZoneSet,
)


@dataclass(frozen=True)
class DeviceChange:
    site: str
    device: str
    platform: Platform
    method: str  # a platform's rules method (nft) or a shutdown method (cli, snmp)
    commands: tuple[str, ...]
    undo: tuple[str, ...]
    before: DeviceState = NORMAL  # the device's whole recorded state before this step
    after: DeviceState = NORMAL  # and after it


@dataclass(frozen=True)
class StepPlan:
    site: str
    step: str
    action: str
    changes: tuple[DeviceChange, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowImpact:
    flow: str
    must_survive: bool
    before: bool  # open before the run
    after: bool  # open after the run

    @property
    def change(self) -> str:
        if self.before == self.after:
            return "stays open" if self.after else "stays cut"
        return "cut" if self.before else "reopened"


@dataclass(frozen=True)
class Plan:
    playbook: str
    level: str
    sites: tuple[str, ...]
    steps: tuple[StepPlan, ...]
    impact: tuple[FlowImpact, ...]
    final_state: Mapping[str, DeviceState] = field(default_factory=dict)
    refusals: tuple[str, ...] = ()

    @property
    def changes(self) -> list[DeviceChange]:
        return [c for s in self.steps for c in s.changes]

    @property
    def empty(self) -> bool:
        return not self.changes


def plan(
    pb: Playbook,
    inv: Inventory,
    *,
    sites: Sequence[str] | None = None,
    current: Mapping[str, DeviceState] | None = None,
) -> Plan:
    """The plan of `pb` on the selected sites, starting from `current` (default: normal)."""
    chosen = _sites(pb, inv, sites)
    paths = {f.name: flow_path(inv, f) for f in inv.flows}
    mpaths = mg.management_paths(inv)  # empty out of band
    start: dict[str, DeviceState] = dict(current or {})
    state = _Tracked(start)
    steps: list[StepPlan] = []
    # must-survive flows open at the start, by the sites they touch: checked after every step,
    # since a flow cut by one step and reopened by a later one is still cut in between (and for
    # good if that later step fails)
    guarded: dict[str, list[str]] = {}
    open_at_start = {f.name: flow_open(start, paths[f.name]) for f in inv.flows}
    for f in inv.flows:
        if f.must_survive and f.name not in pb.allow_cut and open_at_start[f.name]:
            for name in {f.source.site, f.destination.site}:
                guarded.setdefault(name, []).append(f.name)
    transient: dict[str, str] = {}  # flow -> the first step that cuts it
    snapshots: list[tuple[str, int, dict[str, DeviceState]]] = []  # in band: state after a step
    for site in chosen:
        for step in pb.steps:
            if step.action not in CHANGE_ACTIONS:
                steps.append(StepPlan(site.name, step.name, step.action, ()))
                continue
            state.take()  # from here, the devices this step touches
            notes = _apply(step, inv, site, state, paths, mpaths)
            if mpaths:
                notes += _keep_management(inv, state, mpaths)
            changes = _diff(inv, site, state.take(), state)
            steps.append(StepPlan(site.name, step.name, step.action, tuple(changes), tuple(notes)))
            if mpaths and changes:
                snapshots.append((f"step {step.name} at {site.name}", len(steps) - 1, dict(state)))
            if changes:
                for name in guarded.get(site.name, []):
                    if name not in transient and not flow_open(state, paths[name]):
                        transient[name] = f"step {step.name} at {site.name}"
    impact = tuple(
        FlowImpact(f.name, f.must_survive, open_at_start[f.name], flow_open(state, paths[f.name]))
        for f in inv.flows
    )
    refusals = _refusals(pb, inv, impact, state)
    refusals += _stranded(inv, steps, snapshots, mpaths)
    final_cut = {fi.flow for fi in impact if fi.must_survive and fi.before and not fi.after}
    refusals += [
        f"{where} would cut must-survive flow {name} until a later step reopens it"
        for name, where in transient.items()
        if name not in final_cut
    ]
    return Plan(
        pb.name,
        pb.level,
        tuple(s.name for s in chosen),
        tuple(steps),
        impact,
        dict(state),
        tuple(refusals),
    )


class _Tracked(dict[str, DeviceState]):
    """The group's state while planning, remembering the state each device had before it was
    first written since the last `take()`: a step's change is found among the devices it
    touched, not by comparing every device of the group (#18: planning 2,000 devices)."""

    def __init__(self, start: Mapping[str, DeviceState]) -> None:
        super().__init__(start)
        self._before: dict[str, DeviceState] = {}

    def _touch(self, device: str) -> None:
        if device not in self._before:
            self._before[device] = self.get(device, NORMAL)

    def __setitem__(self, device: str, value: DeviceState) -> None:
        self._touch(device)
        super().__setitem__(device, value)

    def pop(self, device: str, *default: Any) -> Any:
        self._touch(device)
        return super().pop(device, *default)

    def __delitem__(self, device: str) -> None:
        self._touch(device)
        super().__delitem__(device)

    def update(self, *args: Any, **kwargs: DeviceState) -> None:
        for device, value in dict(*args, **kwargs).items():
            self[device] = value

    def setdefault(self, device: str, default: DeviceState = NORMAL) -> DeviceState:
        if device not in self:
            self[device] = default
        return self[device]

    def __ior__(self, other: Any) -> _Tracked:  # type: ignore[override,misc]
        self.update(other)
        return self

    def popitem(self) -> tuple[str, DeviceState]:
        raise TypeError("a planning state removes devices by name (pop), never an arbitrary one")

    def clear(self) -> None:
        raise TypeError("a planning state is never cleared")

    def take(self) -> dict[str, DeviceState]:
        """The touched devices' earlier states (since the last take), and start afresh."""
        before, self._before = self._before, {}
        return before


def require_safe(p: Plan) -> Plan:
    if p.refusals:
        raise PlanError(
            "plan refused:\n  " + "\n  ".join(p.refusals),
            hint="keep a must-survive flow open with an allow_flow step; name it under "
            "allow_cut only if cutting it is intended; never cut a management interface",
        )
    return p


def _sites(pb: Playbook, inv: Inventory, names: Sequence[str] | None) -> list[Site]:
    selected = select_sites(inv, pb.targets.selector())
    limit = pb.limits.max_sites
    if not names:
        if limit is not None and len(selected) > limit:
            raise PlanError(
                f"playbook {pb.name} acts on at most {limit} site(s) at a time; "
                f"{len(selected)} are targets",
                hint="name the site with --site",
            )
        return selected
    if limit is not None and len(set(names)) > limit:
        raise PlanError(f"playbook {pb.name} acts on at most {limit} site(s) at a time")
    known = {s.name for s in selected}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PlanError(
            f"sites {', '.join(unknown)} are not targets of playbook {pb.name} "
            f"(targets: {', '.join(sorted(known)) or 'none'})"
        )
    return [s for s in selected if s.name in names]


def _apply(
    step: object,
    inv: Inventory,
    site: Site,
    state: dict[str, DeviceState],
    paths: Mapping[str, FlowPath],
    mpaths: Mapping[str, mg.ManagementPath] | None = None,
) -> list[str]:
    """Apply one intent-level step to `state` for `site`; returns notes for the plan."""
    if isinstance(step, CutLink):
        return _cut_links(step, inv, site, state, paths, mpaths or {})
    if isinstance(step, ShutZonePorts):
        return _shut_zone_ports(step, site, state)
    if isinstance(step, ShutPort):
        if site.device(step.device) is None:
            return [f"{step.device} is not at {site.name}"]
        state[step.device] = device_state(state, step.device).shut(step.interface, step.method)
        return []
    if isinstance(step, BlockZones):
        return _block_zones(step, inv, site, state, paths)
    return _apply_other(step, inv, site, state, paths)


def _apply_other(
    step: object,
    inv: Inventory,
    site: Site,
    state: dict[str, DeviceState],
    paths: Mapping[str, FlowPath],
) -> list[str]:
    if isinstance(step, QuarantineZone):
        return _quarantine(step, inv, site, state)
    if isinstance(step, ReconnectZone):
        return _reconnect(step, inv, site, state, paths)
    if isinstance(step, RestoreLinks):
        return _restore_links(step, inv, site, state)
    if isinstance(step, RestoreBaseline):
        for dev in site.devices:
            state.pop(dev.name, None)
        return []
    if isinstance(step, AllowFlow):
        path = paths[step.flow]
        for device in {h.device for h in path.hops}:
            if site.device(device) is not None and _holds_rules(inv, device):
                state[device] = device_state(state, device).with_rules(
                    _allows(inv, path, device, f"{step.name}: allow {step.flow}")
                )
        return []
    raise PlanError(f"step {getattr(step, 'name', step)!r}: no planner for this action")


def probe_tag(probe: str, flow: str) -> str:
    """The tag of the accepts that let probe point `probe` test `flow` through a cut."""
    return f"probe:{probe}:{flow}"


def probe_addresses(inv: Inventory, flow: str) -> list[tuple[str, str]]:
    """(probe id, its address in the flow's source zone) for every probe point declared to test
    `flow` (`sites[].probes[].flows`)."""
    declared = inv.flow(flow)
    site = inv.site(declared.source.site) if declared else None
    if declared is None or site is None:
        return []
    out = []
    for probe in site.probes:
        leg = probe.leg(declared.source.zone)
        if flow in probe.flows and leg is not None:
            out.append((probe.id, str(leg.address)))
    return out


def _allows(
    inv: Inventory, path: FlowPath, device: str, tag: str, *, reconnect: str | None = None
) -> list[NftRule]:
    """The accepts that keep a declared flow open through `device` (`allow_rules`) and, for each
    probe point declared to test that flow, the same accepts from the probe's address in the
    flow's source zone (same destination, same port; tagged `probe:<id>:<flow>`, under the
    reconnect tag when a reconnection keeps the flow, so that a re-isolation removes them too).
    Without them a probe's test of a kept flow would be dropped by the very cut that keeps it.
    No probe declared for the flow: exactly `allow_rules`."""
    rules = allow_rules(path, device, tag)
    for probe, address in probe_addresses(inv, path.flow.name):
        ptag = probe_tag(probe, path.flow.name)
        if reconnect is not None:
            ptag = f"{reconnect} {ptag}"
        rules += allow_rules(replace(path, src=address), device, ptag)
    return rules


def _cut_links(
    step: CutLink,
    inv: Inventory,
    site: Site,
    state: dict[str, DeviceState],
    paths: Mapping[str, FlowPath],
    mpaths: Mapping[str, mg.ManagementPath],
) -> list[str]:
    """Cut the links. With `keep_must_survive`, a must-survive flow routed through a cut link of
    a firewall (a flow that crosses sites) is kept by explicit rules, as `block_zones` keeps
    those crossing its block; without it the plan refuses to cut such a flow."""
    links = [lk for lk in site.links if lk.kind in step.kinds]
    notes: list[str] = []
    for link in links:
        mpath = mpaths.get(link.device)
        if mpath is not None and mpath.entry == link.interface and _holds_rules(inv, link.device):
            notes.append(_cut_managed_link(inv, mpath, state, step.name))
        else:
            _cut_interface(inv, site, link.device, link.interface, state, step.name)
        if not step.keep_must_survive or not _holds_rules(inv, link.device):
            continue
        for flow in inv.flows:
            path = paths[flow.name]
            through = any(
                isinstance(h, RouteHop)
                and h.device == link.device
                and link.interface in (h.in_if, h.out_if)
                for h in path.hops
            )
            if flow.must_survive and through:
                state[link.device] = device_state(state, link.device).with_rules(
                    _allows(inv, path, link.device, f"must survive: {flow.name}")
                )
                notes.append(
                    f"keeps must-survive flow {flow.name} open through the cut {link.name}"
                )
    if links:
        return notes
    return [f"no {'/'.join(k.value for k in step.kinds)} link at {site.name}"]


def _shut_zone_ports(step: ShutZonePorts, site: Site, state: dict[str, DeviceState]) -> list[str]:
    for zone in site.zones:
        if zone.name in step.zones:
            for port in zone.ports:
                state[port.device] = device_state(state, port.device).shut(
                    port.interface, step.method
                )
    missing = set(step.zones) - {z.name for z in site.zones}
    return [f"no zone {z} at {site.name}" for z in sorted(missing)]


def _holds_rules(inv: Inventory, device: str) -> bool:
    """Does `device`'s platform hold packet rules (a firewall)?"""
    found = inv.find_device(device)
    return found is not None and registry.holds_rules(found[1].platform)


def _rules_platforms() -> str:
    return " or ".join(registry.names(holds_rules=True))


def _cut_interface(
    inv: Inventory, site: Site, device: str, interface: str, state: dict[str, DeviceState], tag: str
) -> None:
    dev = device_state(state, device)
    if _holds_rules(inv, device):
        state[device] = dev.with_rules(
            [NftRule("drop", iif=interface, tag=tag), NftRule("drop", oif=interface, tag=tag)]
        )
    else:
        state[device] = dev.shut(interface, "cli")


def _local_exceptions(inv: Inventory, device: str) -> bool:
    """Does `device`'s platform hold exceptions for its own traffic (`NftRule.local`)?"""
    found = inv.find_device(device)
    return found is not None and registry.platform(found[1].platform).local_exceptions


def _cut_managed_link(
    inv: Inventory, mpath: mg.ManagementPath, state: dict[str, DeviceState], tag: str
) -> str:
    """Cut the link a firewall is managed in band through (`mpath.entry`). Where its platform
    holds local exceptions and it declares no SNMP (UDP: no exception can keep it): the whole
    link, its own traffic too, with the agent's management of it kept open by local exceptions
    (`_keep_management` places them). Elsewhere: what it forwards only (`_cut_forwarding`), its
    own services staying reachable there. The note says which."""
    device, interface = mpath.device, mpath.entry
    ports = ", ".join(str(p) for p in mpath.ports)
    if _local_exceptions(inv, device) and mpath.snmp is None:
        state[device] = device_state(state, device).with_rules(
            [NftRule("drop", iif=interface, tag=tag), NftRule("drop", oif=interface, tag=tag)]
        )
        return (
            f"{device} is managed in band through {interface}: the cut drops all its traffic "
            f"there, its own too (every other port of its own), but the agent's management "
            f"(tcp {ports} from {mpath.src} to {mpath.dst})"
        )
    _cut_forwarding(inv, device, interface, state, tag)
    why = (
        "it declares SNMP (UDP, no exception can keep it)"
        if _local_exceptions(inv, device)
        else "its platform holds no exception for its own traffic"
    )
    return (
        f"{device} is managed in band through {interface}: the cut drops what it forwards, not "
        f"its own traffic there: {why}, so its own ports stay reachable through {interface}"
    )


def _cut_forwarding(
    inv: Inventory, device: str, interface: str, state: dict[str, DeviceState], tag: str
) -> None:
    """Cut `interface` for the traffic `device` forwards only (a drop to and from each of its
    other interfaces): a drop by the interface alone would also drop the device's own traffic
    there, its in-band management, where no platform takes an exception."""
    found = inv.find_device(device)
    assert found is not None
    others = [i.name for i in found[1].interfaces if i.name != interface]
    state[device] = device_state(state, device).with_rules(
        rule
        for other in others
        for rule in (
            NftRule("drop", iif=interface, oif=other, tag=tag),
            NftRule("drop", iif=other, oif=interface, tag=tag),
        )
    )


def _keep_management(
    inv: Inventory, state: dict[str, DeviceState], mpaths: Mapping[str, mg.ManagementPath]
) -> list[str]:
    """In band: on every device that holds rules and drops something, the explicit exceptions
    that keep the agent's management flows through it open (placed before the drops: accepts of
    named addresses come first); on a device that drops nothing, none (a table of exceptions
    alone would be a change of no use). A device managed in band whose own entry interface is
    cut by interface (its own traffic dropped there) gets local exceptions for its own management
    (`mg.local_rules`) where its platform holds them. Returns notes for the exceptions this step
    adds."""
    notes = []
    for device, dev in sorted(state.items()):
        if not _holds_rules(inv, device):
            continue
        base = dev.without_rules(mg.is_management)
        keep: list[NftRule] = []
        if any(r.verdict == "drop" for r in base.rules):
            for path in mg.through(mpaths, device):
                keep += mg.management_rules(path, device)
        own = mpaths.get(device)
        if own is not None and _local_exceptions(inv, device) and own.entry in _own_cut(base):
            keep += mg.local_rules(own)
        new = base.with_rules(keep)
        if new != dev:
            added = sorted({r.tag for r in new.rules - dev.rules if mg.is_management(r)})
            if added:
                managed = ", ".join(t.removeprefix(mg.TAG_PREFIX) for t in added)
                notes.append(f"keeps the agent's management of {managed} open through {device}")
            state[device] = new
    return notes


def _own_cut(state: DeviceState) -> set[str]:
    """The interfaces whose traffic to and from the device itself `state` drops (a drop by one
    interface alone)."""
    return {r.iif or r.oif or "" for r in state.rules if r.own and r.verdict == "drop"}


def _stranded(
    inv: Inventory,
    steps: Sequence[StepPlan],
    snapshots: Sequence[tuple[str, int, Mapping[str, DeviceState]]],
    mpaths: Mapping[str, mg.ManagementPath],
) -> list[str]:
    """In band: a step that would leave the agent unable to reach a device that the rollback
    (a device changed by this step or an earlier one) or a later step needs, named."""
    first_change: dict[str, int] = {}
    for i, s in enumerate(steps):
        for c in s.changes:
            first_change.setdefault(c.device, i)
    out: list[str] = []
    reported: set[tuple[str, str]] = set()
    for where, index, state in snapshots:
        for device, first in sorted(first_change.items()):
            path = mpaths.get(device)
            if path is None:
                continue
            if first <= index:
                need = "the rollback needs it"
            else:
                later = steps[first]
                need = f"step {later.step} at {later.site} needs it"
            for port in path.ports:
                cut = mg.where_cut(state, path, port)
                if cut is not None and (where, device) not in reported:
                    reported.add((where, device))
                    out.append(
                        f"{where} would strand {device} (managed in band at {path.dst}, tcp "
                        f"{port}): {cut}; {need}"
                    )
            if path.snmp is not None and (where, device) not in reported:
                cut = mg.where_cut(state, path, path.snmp)
                if cut is not None:
                    reported.add((where, device))
                    out.append(
                        f"{where} would cut SNMP (udp {path.snmp}) to {device}, managed in band: "
                        f"{cut}; no exception can keep UDP open (remove snmp from {device}, or "
                        "manage it out of band)"
                    )
    return out


def _rules_gateway(inv: Inventory, site: Site, zone: Zone, what: str) -> tuple[str, str]:
    if zone.gateway is None:
        raise PlanError(f"{site.name}: zone {zone.name} has no gateway; {what} needs one")
    gw = zone.gateway.device
    if not _holds_rules(inv, gw):
        raise PlanError(
            f"{site.name}: {what} needs a {_rules_platforms()} gateway; {gw} is not one"
        )
    return gw, zone.gateway.interface


def _quarantine(
    step: QuarantineZone, inv: Inventory, site: Site, state: dict[str, DeviceState]
) -> list[str]:
    for zone in (z for z in site.zones if z.name in step.zones):
        gw, zif = _rules_gateway(inv, site, zone, "quarantine_zone")
        state[gw] = device_state(state, gw).with_rules(
            [NftRule("drop", iif=zif, tag=step.name), NftRule("drop", oif=zif, tag=step.name)]
        )
    missing = set(step.zones) - {z.name for z in site.zones}
    return [f"no zone {z} at {site.name}" for z in sorted(missing)]


def reconnect_tag(step: str, zone: str) -> str:
    """The tag of the rules that reconnect `zone` (the soak gate finds its counters by it)."""
    return f"{step}: reconnect {zone}"


def zone_of_tag(tag: str) -> str | None:
    _, sep, zone = tag.partition(": reconnect ")
    return zone.split(" ", 1)[0] if sep else None


def _reconnect(
    step: ReconnectZone,
    inv: Inventory,
    site: Site,
    state: dict[str, DeviceState],
    paths: Mapping[str, FlowPath],
) -> list[str]:
    """Each zone gets: accepts for its declared flows through the WAN, a counter of any other
    new connection toward the core, and an accept of the rest, both ways. Nothing if the WAN
    is not cut (the zone is connected already)."""
    wans = [lk for lk in site.links if lk.kind.value == "wan"]
    notes: list[str] = []
    zones = zones_of(site, step.zones)
    if not zones:
        return [f"no zone of {step.name} at {site.name}"]
    for zone in zones:
        gw, zif = _rules_gateway(inv, site, zone, "reconnect_zone")
        links = [lk for lk in wans if lk.device == gw]
        if not links:
            raise PlanError(
                f"{site.name}: zone {zone.name} is routed by {gw}, which has no WAN link; "
                "reconnect_zone needs the zone's gateway to hold the WAN uplink"
            )
        dev = device_state(state, gw)
        cut = [lk.interface for lk in links if dev.cuts(lk.interface)]
        if not cut:
            notes.append(f"zone {zone.name}: the WAN of {site.name} is not cut, nothing to do")
            continue
        tag = reconnect_tag(step.name, zone.name)
        rules: list[NftRule] = []
        for wan in cut:
            for name, path in paths.items():
                if any(
                    isinstance(h, RouteHop) and h.device == gw and {h.in_if, h.out_if} == {zif, wan}
                    for h in path.hops
                ):
                    rules += _allows(inv, path, gw, f"{tag} declared {name}", reconnect=tag)
            rules += [
                NftRule("count", iif=zif, oif=wan, tag=tag),
                NftRule("accept", iif=zif, oif=wan, tag=tag),
                NftRule("accept", iif=wan, oif=zif, tag=tag),
            ]
        state[gw] = dev.with_rules(rules)
    return notes


def _restore_links(
    step: RestoreLinks, inv: Inventory, site: Site, state: dict[str, DeviceState]
) -> list[str]:
    links = [lk for lk in site.links if lk.kind in step.kinds]
    for link in links:
        dev = device_state(state, link.device)
        state[link.device] = dev.reopen(link.interface).without_rules(
            partial(_on_interface, link.interface)
        )
    if links:
        return []
    return [f"no {'/'.join(k.value for k in step.kinds)} link at {site.name}"]


def _on_interface(interface: str, rule: NftRule) -> bool:
    return interface in (rule.iif, rule.oif)


def zones_of(site: Site, zs: ZoneSet) -> list[Zone]:
    return [z for z in site.zones if zs.matches(z)]


def _block_zones(
    step: BlockZones,
    inv: Inventory,
    site: Site,
    state: dict[str, DeviceState],
    paths: Mapping[str, FlowPath],
) -> list[str]:
    side_a, side_b = zones_of(site, step.between), zones_of(site, step.and_)
    notes: list[str] = []
    rules: dict[str, list[NftRule]] = {}
    for za in side_a:
        for zb in side_b:
            if za.name == zb.name or za.gateway is None or zb.gateway is None:
                continue
            if za.gateway.device != zb.gateway.device:
                raise PlanError(
                    f"{site.name}: zones {za.name} and {zb.name} are routed by "
                    "different devices; block_zones needs one gateway device"
                )
            gw = za.gateway.device
            if not _holds_rules(inv, gw):
                raise PlanError(
                    f"{site.name}: block_zones needs a {_rules_platforms()} gateway; "
                    f"{gw} is not one"
                )
            a_if, b_if = za.gateway.interface, zb.gateway.interface
            rules.setdefault(gw, []).extend(
                [
                    NftRule("drop", a_if, b_if, tag=step.name),
                    NftRule("drop", b_if, a_if, tag=step.name),
                ]
            )
    names_a = {z.name for z in side_a}
    names_b = {z.name for z in side_b}
    for flow in _flows_at(inv, site.name):
        ends = {
            (flow.source.site, flow.source.zone),
            (flow.destination.site, flow.destination.zone),
        }
        crosses = any((site.name, a) in ends for a in names_a) and any(
            (site.name, b) in ends for b in names_b
        )
        if flow.must_survive and crosses:
            for gw, gw_rules in rules.items():
                gw_rules.extend(_allows(inv, paths[flow.name], gw, f"must survive: {flow.name}"))
            notes.append(f"keeps must-survive flow {flow.name} open through the block")
    for gw, extra in rules.items():
        state[gw] = device_state(state, gw).with_rules(extra)
    return notes


# the flows with an end at each site, by the identity of the inventory's flows tuple (kept
# alive with it): a site's step looks at its own flows, not the group's (#18). Bounded.
_FLOWS_AT: dict[int, tuple[tuple[Flow, ...], dict[str, list[Flow]]]] = {}


def _flows_at(inv: Inventory, site: str) -> list[Flow]:
    """The flows of `inv` with an end at `site`, in the inventory's order."""
    found = _FLOWS_AT.get(id(inv.flows))
    if found is None or found[0] is not inv.flows:
        by_site: dict[str, list[Flow]] = {}
        for flow in inv.flows:
            for name in dict.fromkeys((flow.source.site, flow.destination.site)):
                by_site.setdefault(name, []).append(flow)
        if len(_FLOWS_AT) >= 64:
            _FLOWS_AT.clear()
        found = (inv.flows, by_site)
        _FLOWS_AT[id(inv.flows)] = found
    return found[1].get(site, [])


def _diff(
    inv: Inventory, site: Site, before: Mapping[str, DeviceState], after: Mapping[str, DeviceState]
) -> list[DeviceChange]:
    """The changes of the devices in `before` (those a step touched, with their earlier
    state) to their state in `after`, in device-name order."""
    out = []
    for device in sorted(before):
        b, a = before.get(device, NORMAL), after.get(device, NORMAL)
        if a == b:
            continue
        found = inv.find_device(device)
        assert found is not None
        dev_site, dev = found
        out += _rendered(dev_site.name, device, dev.platform, b, a)
    return out


def _rendered(
    site: str, device: str, platform: Platform, before: DeviceState, after: DeviceState
) -> list[DeviceChange]:
    """The change of one device from `before` to `after`, as the renderer writes it."""
    return [
        DeviceChange(site, device, platform, method, tuple(commands), tuple(undo), before, after)
        for method, commands, undo in render.render(platform, before, after)
    ]


def reisolation(site: Site, zones: Collection[str], current: Mapping[str, DeviceState]) -> StepPlan:
    """Cut again the `zones` a soak found unhealthy at `site`, starting from the recorded
    `current` state: every rule that reconnects one of them removed (a new step, `reisolate
    ZONES`, one change per device that holds such rules, in the site's device order)."""
    name = f"reisolate {','.join(zones)}"
    changes: list[DeviceChange] = []
    for dev in site.devices:
        cur = current.get(dev.name, NORMAL)
        new = cur.without_rules(lambda r: zone_of_tag(r.tag) in zones)
        if new != cur:
            changes += _rendered(site.name, dev.name, dev.platform, cur, new)
    return StepPlan(site.name, name, "reisolate", tuple(changes))


def _refusals(
    pb: Playbook, inv: Inventory, impact: Sequence[FlowImpact], state: Mapping[str, DeviceState]
) -> list[str]:
    out = []
    for fi in impact:
        if fi.must_survive and fi.before and not fi.after and fi.flow not in pb.allow_cut:
            out.append(
                f"would cut must-survive flow {fi.flow} (keep it open with an allow_flow "
                "step; name it under allow_cut only if cutting it is intended)"
            )
    for _site, device in inv.devices() if not inv.group.management.in_band else ():
        dev = state.get(device.name, NORMAL)
        mgmt = device.management.interface
        touched = mgmt in dev.down_interfaces or any(
            mgmt in (r.iif, r.oif) for r in dev.rules if r.verdict == "drop"
        )
        if touched:
            out.append(
                f"would cut {device.name}'s management interface {mgmt}: the agent "
                "would lose the device"
            )
    return out

"""Selectors: pick sites, devices and zones of an inventory by name, kind, role, tag, criticality.

Pure functions over the frozen models; playbooks use them to name their targets. Imports only
`agent.inventory.models`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from agent.inventory.models import (
    Criticality,
    Device,
    DeviceRole,
    Inventory,
    Name,
    Site,
    SiteKind,
    Tag,
    Zone,
    ZoneRole,
)


class Selector(BaseModel):
    """Every given criterion must match (AND); each list matches any of its items (OR).

    An empty selector selects every establishment (never the core or external sites unless
    `kinds` says so: a containment playbook must not cut the clean core by accident).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: tuple[Name, ...] = ()
    exclude_sites: tuple[Name, ...] = ()
    kinds: tuple[SiteKind, ...] = (SiteKind.ESTABLISHMENT,)
    site_tags: tuple[Tag, ...] = ()
    roles: tuple[DeviceRole, ...] = ()
    device_tags: tuple[Tag, ...] = ()
    zones: tuple[Name, ...] = ()
    criticality: tuple[Criticality, ...] = ()
    zone_roles: tuple[ZoneRole, ...] = ()
    zone_tags: tuple[Tag, ...] = ()


def _any(wanted: Iterable[object], have: Iterable[object]) -> bool:
    wanted = tuple(wanted)
    return not wanted or any(w in tuple(have) for w in wanted)


def select_sites(inv: Inventory, sel: Selector) -> list[Site]:
    return [
        s
        for s in inv.sites
        if (not sel.sites or s.name in sel.sites)
        and s.name not in sel.exclude_sites
        and s.kind in sel.kinds
        and _any(sel.site_tags, s.tags)
    ]


def select_devices(inv: Inventory, sel: Selector) -> list[tuple[Site, Device]]:
    return [
        (site, d)
        for site in select_sites(inv, sel)
        for d in site.devices
        if (not sel.roles or d.role in sel.roles) and _any(sel.device_tags, d.tags)
    ]


def select_zones(inv: Inventory, sel: Selector) -> list[tuple[Site, Zone]]:
    return [
        (site, z)
        for site in select_sites(inv, sel)
        for z in site.zones
        if (not sel.zones or z.name in sel.zones)
        and (not sel.criticality or z.criticality in sel.criticality)
        and (not sel.zone_roles or z.role in sel.zone_roles)
        and _any(sel.zone_tags, z.tags)
    ]


def zone_in_set(
    zone: Zone,
    *,
    names: Iterable[str] = (),
    criticality: Iterable[Criticality] = (),
    roles: Iterable[ZoneRole] = (),
    tags: Iterable[str] = (),
    exclude_roles: Iterable[ZoneRole] = (),
) -> bool:
    """A playbook's set of zones: named, or of one of these criticality levels, roles or tags
    (any of them: a union), minus the zones of the excluded roles. Naming zones ties a playbook
    to one group; criticality, role and tag serve every group."""
    if zone.role is not None and zone.role in tuple(exclude_roles):
        return False
    return (
        zone.name in tuple(names)
        or zone.criticality in tuple(criticality)
        or (zone.role is not None and zone.role in tuple(roles))
        or any(t in tuple(tags) for t in zone.tags)
    )

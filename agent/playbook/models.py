"""Playbook models: intent-level steps (cut a link kind, shut a zone's ports, block zones, allow a
flow, SNMP admin-down, backup, verify, wait, soak, approval) with targets, ordering and failure
policy. Frozen, validated once; imports only pydantic and the inventory's scalar types."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.inventory.models import (
    Criticality,
    IfName,
    Label,
    LinkKind,
    Name,
    SiteKind,
    Tag,
)
from agent.inventory.select import Selector

Level = Literal["L1", "L2", "L3", "L4"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Model):
    name: Name
    description: Label = ""
    on_failure: Literal["stop", "continue", "rollback"] | None = None  # default: the playbook's


class CutLink(_Step):
    """Cut the site's links of these kinds (L1: internet, remote access, vendor; L2: WAN)."""

    action: Literal["cut_link"]
    kinds: tuple[LinkKind, ...] = Field(min_length=1)
    fail_direction: Literal["closed", "open"] = "closed"


class ZoneSet(_Model):
    zones: tuple[Name, ...] = ()
    criticality: tuple[Criticality, ...] = ()


class BlockZones(_Step):
    """L3: drop routed traffic between two sets of zones (both directions), on the zones'
    gateway device; flows marked must-survive (and `allow` flows) are kept by explicit rules."""

    action: Literal["block_zones"]
    between: ZoneSet
    and_: ZoneSet = Field(alias="and")
    fail_direction: Literal["closed", "open"] = "closed"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ShutZonePorts(_Step):
    """L3/L4: shut every access port of the named zones (the zone becomes an island, or dark)."""

    action: Literal["shut_zone_ports"]
    zones: tuple[Name, ...] = Field(min_length=1)
    method: Literal["cli", "snmp"] = "cli"
    fail_direction: Literal["closed", "open"] = "closed"


class ShutPort(_Step):
    """L4: shut one switch port (one host)."""

    action: Literal["shut_port"]
    device: Name
    interface: IfName
    method: Literal["cli", "snmp"] = "cli"
    fail_direction: Literal["closed", "open"] = "closed"


class AllowFlow(_Step):
    """Keep (or reopen) one declared flow through cuts already in place."""

    action: Literal["allow_flow"]
    flow: Name


class BackupConfig(_Step):
    action: Literal["backup_config"]


class VerifyFlows(_Step):
    """Probe declared flows and compare with the plan's expectation (twin or production probes)."""

    action: Literal["verify_flows"]
    must_survive_only: bool = False


class Wait(_Step):
    action: Literal["wait"]
    seconds: float = Field(gt=0, le=86400)


class Soak(_Step):
    """Watch for the given time; advance only when healthy throughout."""

    action: Literal["soak"]
    seconds: float = Field(gt=0, le=7 * 86400)
    interval: float = Field(default=5.0, gt=0)


class Approval(_Step):
    action: Literal["approval"]
    timeout_seconds: float = Field(default=3600, gt=0)
    on_timeout: Literal["abort", "proceed"] = "abort"


Step = Annotated[
    CutLink
    | BlockZones
    | ShutZonePorts
    | ShutPort
    | AllowFlow
    | BackupConfig
    | VerifyFlows
    | Wait
    | Soak
    | Approval,
    Field(discriminator="action"),
]

CHANGE_ACTIONS = ("cut_link", "block_zones", "shut_zone_ports", "shut_port", "allow_flow")


class SiteTargets(_Model):
    """Which sites a playbook acts on. Which devices and zones it touches within a site is said
    by each step (links by kind, zones by name or criticality, one port), so device-level
    criteria here would be ignored: they are refused instead."""

    sites: tuple[Name, ...] = ()
    exclude_sites: tuple[Name, ...] = ()
    kinds: tuple[SiteKind, ...] = (SiteKind.ESTABLISHMENT,)
    site_tags: tuple[Tag, ...] = ()

    def selector(self) -> Selector:
        return Selector(
            sites=self.sites,
            exclude_sites=self.exclude_sites,
            kinds=self.kinds,
            site_tags=self.site_tags,
        )


class Limits(_Model):
    """Blast-radius limits."""

    max_parallel_sites: int = Field(default=16, ge=1)
    failure_budget_per_site: int = Field(default=1, ge=0)
    # never change both switches of a site at the same time (a redundant pair)
    one_switch_at_a_time: bool = True


class Playbook(_Model):
    name: Name
    description: Label = ""
    level: Level
    emergency: bool = False  # on-call may trigger it (break-glass with a reason)
    approval: Literal["none", "two_person"] = "none"
    targets: SiteTargets = SiteTargets()
    # parallel: each site runs its steps on its own; serial: one site after the other;
    # waves: every site finishes a step before any site starts the next (L1 everywhere first)
    order: Literal["parallel", "serial", "waves"] = "parallel"
    on_failure: Literal["stop", "continue", "rollback"] = "stop"
    limits: Limits = Limits()
    allow_cut: tuple[Name, ...] = ()  # must-survive flows this playbook may cut, named explicitly
    steps: tuple[Step, ...] = Field(min_length=1)

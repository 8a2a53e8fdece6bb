"""Playbook models: intent-level steps (cut a link kind, shut a zone's ports, block zones, allow a
flow, SNMP admin-down, backup, verify, wait, soak, approval) with targets, ordering and failure
policy. Frozen, validated once; imports only pydantic, the inventory's models and its
selectors (`agent.inventory.select`)."""

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
    Zone,
    ZoneRole,
)
from agent.inventory.select import Selector, zone_in_set

# L1 outside links cut, L2 inter-site links too, L3 segmentation inside a site, L4 one zone or
# port; L0: a recovery playbook (reconnect, restore) that cuts nothing new
Level = Literal["L0", "L1", "L2", "L3", "L4"]


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
    # a must-survive flow routed through a cut firewall link (one that crosses sites) stays
    # open by explicit rules shown in the plan; if false, the plan refuses to cut it
    keep_must_survive: bool = False


class ZoneSet(_Model):
    """Zones of a site: named, or of these criticality levels, roles or tags (a union), minus
    those of `exclude_roles`. A shipped playbook selects by criticality and role, never by name,
    so it serves every group's inventory."""

    zones: tuple[Name, ...] = ()
    criticality: tuple[Criticality, ...] = ()
    roles: tuple[ZoneRole, ...] = ()
    tags: tuple[Tag, ...] = ()
    exclude_roles: tuple[ZoneRole, ...] = ()

    def empty(self) -> bool:
        """Selects by nothing (exclude_roles alone selects nothing either)."""
        return not (self.zones or self.criticality or self.roles or self.tags)

    def matches(self, zone: Zone) -> bool:
        return zone_in_set(
            zone,
            names=self.zones,
            criticality=self.criticality,
            roles=self.roles,
            tags=self.tags,
            exclude_roles=self.exclude_roles,
        )


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


class QuarantineZone(_Step):
    """L3/L4: cut the zones from every other network at their gateway (routed traffic in and
    out dropped); hosts inside a zone still reach each other."""

    action: Literal["quarantine_zone"]
    zones: tuple[Name, ...] = Field(min_length=1)
    fail_direction: Literal["closed", "open"] = "closed"


class ReconnectZone(_Step):
    """Recovery: reconnect these zones of an isolated site to the clean core through its WAN
    (declared flows explicitly, everything else watched: new connections toward the core are
    counted for the soak that follows). Preconditions, checked before anything is sent: an
    operator's attestation per zone (who and why), and the site's devices back to their
    recorded baseline configuration apart from the isolation rules."""

    action: Literal["reconnect_zone"]
    zones: ZoneSet
    attest: bool = True
    baseline_check: bool = True
    # if the agent loses the device mid-way, it goes back to isolated (the fail-safe state)
    fail_direction: Literal["closed", "open"] = "closed"


class RestoreLinks(_Step):
    """Recovery: lift the cuts of these link kinds (and the per-zone reconnection rules that
    only made sense against them)."""

    action: Literal["restore_links"]
    kinds: tuple[LinkKind, ...] = Field(min_length=1)
    fail_direction: Literal["closed", "open"] = "closed"


class RestoreBaseline(_Step):
    """Back to the pre-incident baseline: everything Cordon changed on the site's devices is
    removed (ports reopened, its nftables table deleted)."""

    action: Literal["restore_baseline"]
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
    """Watch the zones reconnected so far for `seconds` (checks every `interval`): advance
    when healthy for the whole time; on an anomaly re-isolate the zone at fault and stop.

    Checks: new connections from a reconnected zone toward the core outside its declared
    flows (the firewall's counters), packets out of the WAN uplink (SNMP counters), and the
    site's declared flows as expected (probes)."""

    action: Literal["soak"]
    seconds: float = Field(gt=0, le=7 * 86400)
    interval: float = Field(default=5.0, gt=0, le=3600)
    max_new_connections_per_s: float = Field(default=1.0, ge=0)
    max_uplink_pps: float | None = Field(default=None, gt=0)
    probes: bool = True


class Approval(_Step):
    action: Literal["approval"]
    timeout_seconds: float = Field(default=3600, gt=0)
    on_timeout: Literal["abort", "proceed"] = "abort"


Step = Annotated[
    CutLink
    | BlockZones
    | ShutZonePorts
    | ShutPort
    | QuarantineZone
    | ReconnectZone
    | RestoreLinks
    | RestoreBaseline
    | AllowFlow
    | BackupConfig
    | VerifyFlows
    | Wait
    | Soak
    | Approval,
    Field(discriminator="action"),
]

CHANGE_ACTIONS = (
    "cut_link",
    "block_zones",
    "shut_zone_ports",
    "shut_port",
    "quarantine_zone",
    "reconnect_zone",
    "restore_links",
    "restore_baseline",
    "allow_flow",
)
# Steps that open what was cut: their fail-safe state is the one they start from.
OPENING_ACTIONS = ("reconnect_zone", "restore_links", "restore_baseline", "allow_flow")


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
    # at most this many sites per run (segment: 1, so the site must be named)
    max_sites: int | None = Field(default=None, ge=1)
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
    # what the daemon does when polling finds a device back in a state this isolation forbids
    on_drift: Literal["alarm", "reapply"] = "alarm"
    # run-time parameters (`--param zone=guest`): a step value written "$zone" is replaced,
    # then validated like any other value (names, interface names: injection-safe)
    params: tuple[Name, ...] = ()
    steps: tuple[Step, ...] = Field(min_length=1)

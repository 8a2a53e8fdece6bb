"""Drift: how a device differs from the isolation state Cordon recorded for it, and what
re-applying that record sends back. Pure: the daemon's poller reads the devices through the
drivers; this module only compares what was read with what the journal says.

What is compared, per device:
- the administrative state of the interfaces that matter (`watched`): those the record shuts,
  and the device's link interfaces (internet, WAN, remote access, vendor), which must be up
  when nothing recorded shuts them (a link left shut is a leftover too);
- on devices that hold packet rules, the exact set of rule comments in the agent's table (the
  same comments the executor's read-back checks, `Rules.comments`), or the table's absence when
  the record holds no rule.

On which platforms rules are read, which comments a recorded state shows and where the rules live
is the platform's (`Spec.rules`, through the registry): no platform is named here. Imports the
renderer, the network state types, the inventory models and the platform registry; never a driver.

Re-applying the record only ever closes: it reloads the whole recorded table and re-sends the
recorded shutdowns. It never sends `no shutdown` and never deletes a leftover table of a device
recorded as normal: reopening is a person's decision (a rollback), never the poller's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from agent.engine import render
from agent.inventory.models import Platform
from agent.network.state import NORMAL, DeviceState
from agent.platforms import registry
from agent.platforms.spec import Rules

DriftKind = Literal[
    "interface_up",  # recorded shut, found up: an isolation was undone on the device
    "interface_down",  # found shut, nothing recorded shuts it
    "interface_missing",  # a watched interface the device does not list
    "table_missing",  # the recorded rules' table is gone
    "rule_missing",  # one recorded rule is not in the table
    "rule_unexpected",  # a rule in the table that the record does not hold
    "rule_duplicated",  # a recorded rule present more than once
    "table_unexpected",  # the table exists on a device whose record holds no rule
]
Scope = Literal["interfaces", "table"]

# Drifts that re-applying the record repairs (the others need a person: reopening, hardware).
FIXABLE: frozenset[str] = frozenset(
    {"interface_up", "table_missing", "rule_missing", "rule_unexpected", "rule_duplicated"}
)


@dataclass(frozen=True)
class Drift:
    """One way a device differs from its recorded state. `subject` (an interface name or a rule
    comment) with `device` and `kind` identifies the alarm across polls."""

    device: str
    kind: DriftKind
    detail: str
    subject: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.device, self.kind, self.subject)

    @property
    def scope(self) -> Scope:
        return scope_of(self.kind)

    @property
    def fixable(self) -> bool:
        """Does re-applying the record repair it?"""
        return self.kind in FIXABLE


def scope_of(kind: str) -> Scope:
    """What must have been read for a drift of this kind to be seen (or seen gone)."""
    return "interfaces" if kind.startswith("interface_") else "table"


@dataclass(frozen=True)
class Readback:
    """What was read back from one device. A part not read is not compared.

    `admin`: interface -> administratively up, for the watched interfaces the device lists;
    `missing`: watched interfaces it does not list; `interfaces_read`: whether those two were
    read. `rules`: the comments of the rules of the agent's table ("" for a rule without one;
    a list, so duplicates show), None when the table does not exist; `table_read`: whether that
    was read (devices that hold packet rules only).
    """

    admin: Mapping[str, bool] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    interfaces_read: bool = False
    rules: tuple[str, ...] | None = None
    table_read: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "admin", MappingProxyType(dict(self.admin)))
        object.__setattr__(self, "missing", frozenset(self.missing))
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(self.rules))

    @property
    def scopes(self) -> frozenset[Scope]:
        out: set[Scope] = set()
        if self.interfaces_read:
            out.add("interfaces")
        if self.table_read:
            out.add("table")
        return frozenset(out)


def watched(recorded: DeviceState, links: Iterable[str] = ()) -> frozenset[str]:
    """The interfaces whose admin state is read: those the record shuts, and `links` (the
    device's link interfaces)."""
    return recorded.down_interfaces | frozenset(links)


def detect(device: str, recorded: DeviceState, seen: Readback, platform: str) -> list[Drift]:
    """Every difference between `recorded` and what was `seen` on `device` (of `platform`), in a
    stable order."""
    out: list[Drift] = []
    if seen.interfaces_read:
        out += _interfaces(device, recorded, seen)
    rules = registry.platform(platform).rules
    if seen.table_read and rules is not None:
        out += _table(device, recorded, seen.rules, rules)
    return sorted(out, key=lambda d: (d.scope, d.kind, d.subject))


def _interfaces(device: str, recorded: DeviceState, seen: Readback) -> list[Drift]:
    out: list[Drift] = []
    how = dict(recorded.down)
    for name in sorted(seen.missing):
        why = f" (the recorded isolation shuts it by {how[name]})" if name in how else ""
        out.append(
            Drift(
                device,
                "interface_missing",
                f"interface {name} not found on the device{why}",
                name,
            )
        )
    for name, up in sorted(seen.admin.items()):
        if name in how and up:
            out.append(
                Drift(
                    device,
                    "interface_up",
                    f"interface {name} is up, the recorded isolation has it shut (by {how[name]})",
                    name,
                )
            )
        elif name not in how and not up:
            out.append(
                Drift(
                    device,
                    "interface_down",
                    f"interface {name} is shut, no recorded isolation shuts it",
                    name,
                )
            )
    return out


def _table(
    device: str, recorded: DeviceState, rules: tuple[str, ...] | None, how: Rules
) -> list[Drift]:
    want, table = how.comments(recorded), how.home
    if rules is None:
        if not want:
            return []
        return [
            Drift(
                device,
                "table_missing",
                f"{table} is missing: the recorded isolation has {len(want)} rules in it",
                table,
            )
        ]
    have = Counter(rules)
    if not want:
        n = sum(have.values())
        what = f"{n} rule{'s' if n != 1 else ''}" if n else "no rule"
        return [
            Drift(
                device,
                "table_unexpected",
                f"{table} is present ({what}), the recorded state has no rule: a leftover",
                table,
            )
        ]
    out: list[Drift] = []
    for c in sorted(want - set(have)):
        out.append(Drift(device, "rule_missing", f"rule {c!r} missing from {table}", c))
    for c in sorted(set(have) - want):
        shown = repr(c) if c else "without a comment"
        out.append(Drift(device, "rule_unexpected", f"{table} has an unexpected rule {shown}", c))
    for c in sorted(c for c, n in have.items() if n > 1 and c in want):
        out.append(
            Drift(
                device,
                "rule_duplicated",
                f"rule {c!r} appears {have[c]} times in {table}",
                c,
            )
        )
    return out


def reapply_lines(platform: Platform, recorded: DeviceState) -> list[tuple[str, list[str]]]:
    """(method, lines) that put `recorded` back on the device: the whole table of its rules
    (by its rules method, loaded atomically) and the recorded shutdowns (cli, snmp). Empty for
    a normal record: re-applying "normal" would reopen, which is not the poller's to do."""
    if recorded == NORMAL:
        return []
    return [(method, cmds) for method, cmds, _undo in render.render(platform, NORMAL, recorded)]

"""Playbooks: load and validate once, against an inventory, into frozen models.

`load(path, inventory)` raises `PlaybookError` listing every problem (file, path, line, cause) and
touches nothing. Imports the platform registry (which platforms shut a port by `cli`: none is
named here), no driver or engine code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent import yamlfile
from agent.errors import Issue, PlaybookError
from agent.inventory.models import Inventory
from agent.platforms import registry
from agent.playbook.models import (
    AllowFlow,
    BlockZones,
    Playbook,
    QuarantineZone,
    ReconnectZone,
    ShutPort,
    ShutZonePorts,
)

__all__ = ["Playbook", "find", "load"]

PLAYBOOK_DIR = Path("playbooks")


def find(name_or_path: str) -> Path:
    """A playbook file by path, or by name in ./playbooks."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return PLAYBOOK_DIR / f"{name_or_path}.yaml"


def load(path: Path | str, inv: Inventory, params: Mapping[str, str] | None = None) -> Playbook:
    """Load and check a playbook; `params` give the values of its declared parameters."""
    path = Path(path)
    doc = yamlfile.load(path, what="playbook")
    issues: list[Issue] = list(doc.issues)
    if doc.data is None:
        raise PlaybookError(issues)
    if not isinstance(doc.data, dict):
        raise PlaybookError(
            [*issues, doc.issue((), "a playbook is a mapping with name, level and steps")]
        )
    data = _bind(doc, dict(params or {}), issues)
    if issues:
        raise PlaybookError(issues)
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError([*issues, *yamlfile.validation_issues(doc, exc)]) from None
    _check(pb, inv, lambda loc, msg: issues.append(doc.issue(loc, msg)))
    if issues:
        raise PlaybookError(issues)
    return pb


def _bind(doc: yamlfile.YamlDocument, values: dict[str, str], issues: list[Issue]) -> Any:
    """Replace every "$name" string by the value of the declared parameter `name`. The values
    are then validated with the rest (a zone must be a Name, an interface an IfName)."""
    declared = doc.data.get("params", []) if isinstance(doc.data, dict) else []
    names = {str(n) for n in declared} if isinstance(declared, list) else set()
    for name in sorted(set(values) - names):
        issues.append(
            doc.issue(("params",), f"no parameter {name!r} (declared: {sorted(names) or 'none'})")
        )
    for name in sorted(names - set(values)):
        issues.append(
            doc.issue(("params",), f"parameter {name!r} needs a value: --param {name}=VALUE")
        )

    def walk(node: Any, loc: yamlfile.Loc) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*loc, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and node.startswith("$"):
            if node[1:] not in names:
                issues.append(doc.issue(loc, f"{node} is not a declared parameter"))
                return node
            return values.get(node[1:], node)
        return node

    return walk(doc.data, ())


def _check(pb: Playbook, inv: Inventory, report: yamlfile.Report) -> None:
    """References to the inventory: sites, zones, devices, interfaces and flows must exist."""
    _check_header(pb, inv, report)
    zones = {z.name for s in inv.sites for z in s.zones}
    names: set[str] = set()
    for si, step in enumerate(pb.steps):
        loc: yamlfile.Loc = ("steps", si)
        if step.name in names:
            report((*loc, "name"), f"duplicate step name {step.name!r}")
        names.add(step.name)
        if isinstance(step, ShutZonePorts | QuarantineZone):
            _known_zones(step.zones, zones, (*loc, "zones"), report)
        elif isinstance(step, ReconnectZone):
            if step.zones.empty():
                report((*loc, "zones"), "select zones by name, criticality, role or tag")
            _known_zones(step.zones.zones, zones, (*loc, "zones", "zones"), report)
        elif isinstance(step, BlockZones):
            for key, zs in (("between", step.between), ("and", step.and_)):
                if zs.empty():
                    report((*loc, key), "select zones by name, criticality, role or tag")
                _known_zones(zs.zones, zones, (*loc, key, "zones"), report)
        elif isinstance(step, ShutPort):
            _check_port(step, inv, loc, report)
        elif isinstance(step, AllowFlow) and inv.flow(step.flow) is None:
            report((*loc, "flow"), f"flow {step.flow!r} is not in the inventory")


def _check_header(pb: Playbook, inv: Inventory, report: yamlfile.Report) -> None:
    sel = pb.targets
    for key, sites in (("sites", sel.sites), ("exclude_sites", sel.exclude_sites)):
        for i, name in enumerate(sites):
            if inv.site(name) is None:
                report(("targets", key, i), f"site {name!r} is not in the inventory")
    for i, name in enumerate(pb.allow_cut):
        flow = inv.flow(name)
        if flow is None:
            report(("allow_cut", i), f"flow {name!r} is not in the inventory")
        elif not flow.must_survive:
            report(
                ("allow_cut", i),
                f"flow {name!r} is not must-survive; allow_cut only "
                "names must-survive flows this playbook may cut",
            )


def _known_zones(
    names: tuple[str, ...], zones: set[str], loc: yamlfile.Loc, report: yamlfile.Report
) -> None:
    for i, zone in enumerate(names):
        if zone not in zones:
            report((*loc, i), f"zone {zone!r} is in no site of the inventory")


def _check_port(step: ShutPort, inv: Inventory, loc: yamlfile.Loc, report: yamlfile.Report) -> None:
    found = inv.find_device(step.device)
    if found is None:
        report((*loc, "device"), f"device {step.device!r} is not in the inventory")
    elif found[1].interface(step.interface) is None:
        report((*loc, "interface"), f"interface {step.interface!r} is not defined on {step.device}")
    elif step.method != "snmp" and registry.platform(found[1].platform).shuts_by != step.method:
        shuts = ", ".join(registry.names(shuts_by=step.method)) or "no platform"
        report(
            (*loc, "method"),
            f"{step.device} is {found[1].platform}: shut a port with method {step.method} "
            f"on {shuts}, or with method snmp",
        )

"""`cordon inventory check|show`: validate an inventory file and show what it describes.

Rendering only; loading and validation belong to `agent.inventory`. Imports click, `agent.inventory`
and `agent.errors` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.errors import InventoryError
from agent.inventory import default_path, load
from agent.inventory.models import Inventory, SiteKind


@click.group()
def inventory() -> None:
    """Validate and show the group's inventory."""


@inventory.command("check")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check_cmd(file: Path | None, as_json: bool) -> None:
    """Validate FILE (every problem is listed with file, path, line and cause)."""
    path = file or default_path()
    try:
        inv = load(path)
    except InventoryError as err:
        if as_json:
            click.echo(
                json.dumps({"ok": False, "issues": [i.as_dict() for i in err.issues]}, indent=2)
            )
            raise SystemExit(err.exit_code) from None
        raise
    counts = _counts(inv)
    if as_json:
        click.echo(json.dumps({"ok": True, "file": str(path), **counts}, indent=2))
    else:
        click.echo(f"{path}: valid: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@inventory.command("show")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The validated model as JSON (no secrets: the inventory holds references only).",
)
def show_cmd(file: Path | None, as_json: bool) -> None:
    """Show sites, devices, zones by criticality, links and must-survive flows."""
    inv = load(file or default_path())
    if as_json:
        click.echo(inv.model_dump_json(indent=2, by_alias=True))
        return
    click.echo(render(inv))


def _counts(inv: Inventory) -> dict[str, int]:
    return {
        "sites": len(inv.sites),
        "devices": sum(len(s.devices) for s in inv.sites),
        "zones": sum(len(s.zones) for s in inv.sites),
        "hosts": sum(len(z.hosts) for s in inv.sites for z in s.zones),
        "links": sum(len(s.links) for s in inv.sites),
        "flows": len(inv.flows),
        "must_survive_flows": sum(f.must_survive for f in inv.flows),
    }


def render(inv: Inventory) -> str:
    """A compact, readable overview of the group."""
    g = inv.group
    lines = [f"{g.display_name or g.name}  (core: {g.core}, management {g.management.subnet})", ""]
    for site in inv.sites:
        head = f"{site.name} [{site.kind.value}]"
        if site.display_name:
            head += f"  {site.display_name}"
        if site.city:
            head += f", {site.city}"
        lines.append(head)
        if site.kind is SiteKind.EXTERNAL:
            continue
        for d in site.devices:
            lines.append(
                f"  device {d.name:<12} {d.role.value:<14} {d.platform:<15} "
                f"mgmt {d.management.address}"
            )
        by_crit: dict[str, list[str]] = {}
        for z in site.zones:
            by_crit.setdefault(z.criticality.value, []).append(z.name)
        for crit, names in by_crit.items():
            lines.append(f"  zones  {crit:<14} {', '.join(names)}")
        if site.links:
            lines.append(
                "  links  "
                + ", ".join(
                    f"{lk.kind.value}->{lk.peer} ({lk.device}:{lk.interface})" for lk in site.links
                )
            )
    must = [f for f in inv.flows if f.must_survive]
    lines += ["", f"flows: {len(inv.flows)} declared, {len(must)} must survive degraded mode"]
    lines += [f"  {f.name:<28} {f.source} -> {f.destination}" for f in must]
    return "\n".join(lines)

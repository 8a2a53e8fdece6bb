"""The inventory of a hospital group: load and validate once into frozen models.

`load(path)` is the only way in; it raises `InventoryError` listing every problem (file, path, line,
cause) and touches nothing. Imports no driver, engine or network code (`agent.settings` for the
default path).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from agent import settings, yamlfile
from agent.errors import InventoryError, Issue
from agent.inventory.checks import check, merged_https, merged_snmp, merged_ssh
from agent.inventory.models import Inventory

__all__ = ["DEFAULT_INVENTORY", "Inventory", "default_path", "load"]

DEFAULT_INVENTORY = Path("inventory/hospi-grand-ouest.yaml")


def default_path() -> Path:
    """`$CORDON_INVENTORY`, else the built-in example (relative to the working directory)."""
    return settings.current().inventory


def load(path: Path | str) -> Inventory:
    """Load, validate and cross-check an inventory file; defaults resolved into each device."""
    path = Path(path)
    doc = yamlfile.load(path, what="inventory")
    issues: list[Issue] = list(doc.issues)
    if doc.data is None:
        raise InventoryError(issues)
    if not isinstance(doc.data, dict):
        raise InventoryError(
            [*issues, doc.issue((), "an inventory is a mapping with group, sites and flows")]
        )
    try:
        inv = Inventory.model_validate(doc.data)
    except ValidationError as exc:
        raise InventoryError([*issues, *yamlfile.validation_issues(doc, exc)]) from None
    check(inv, lambda loc, message: issues.append(doc.issue(loc, message)))
    if issues:
        raise InventoryError(issues)
    resolved = _resolve_defaults(inv)
    resolved._path = str(path.resolve())
    return resolved


def _resolve_defaults(inv: Inventory) -> Inventory:
    defaults = inv.group.defaults
    sites = []
    for site in inv.sites:
        devices = tuple(
            d.model_copy(
                update={
                    "ssh": merged_ssh(defaults.ssh, d.ssh),
                    "snmp": merged_snmp(defaults.snmp, d.snmp),
                    "https": merged_https(defaults.https, d.https),
                }
            )
            for d in site.devices
        )
        sites.append(site.model_copy(update={"devices": devices}))
    return inv.model_copy(update={"sites": tuple(sites)})

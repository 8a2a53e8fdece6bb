"""Owns turning a device's isolation state change into commands, through the platform registry:
no platform is named here. Each platform's renderer lives in its folder under `agent.platforms`.
Pure; imports the network state types, the registry and the error tree."""

from __future__ import annotations

from agent.errors import PlanError
from agent.network.state import DeviceState
from agent.platforms import registry


def render(
    platform: str, before: DeviceState, after: DeviceState
) -> list[tuple[str, list[str], list[str]]]:
    """(method, commands, undo) for each way the change reaches the device; empty if none.

    Packet rules go by the platform's rules method (the whole script of `after`, undone by the
    script of `before`); interface shutdowns by the method each was recorded with: the
    platform's own (`cli`) or a cross-platform one (`snmp`), in the methods' name order."""
    spec = registry.platform(platform)
    out: list[tuple[str, list[str], list[str]]] = []
    if before.rules != after.rules:
        if spec.rules is None:
            where = " or ".join(registry.names(holds_rules=True))
            raise PlanError(f"packet rules need a {where} device, not {platform!s}")
        script = spec.rules.script
        out.append((spec.rules.method, script(after).splitlines(), script(before).splitlines()))
    added = after.down - before.down
    removed = before.down - after.down
    for method in sorted({m for _, m in added | removed}):
        shut = [i for i, m in added if m == method]
        reopen = [i for i, m in removed if m == method]
        by = spec if spec.shuts_by == method else registry.shared(method)
        if by is None or by.shut_lines is None:
            where = ", ".join(registry.names(shuts_by=method)) or "no platform"
            raise PlanError(
                f"interface shutdown by {method.upper()} is rendered for {where} only, not "
                f"{platform!s}; use method snmp"
            )
        lines = by.shut_lines
        cmds = lines(shut, down=True) + lines(reopen, down=False)
        undo = lines(shut, down=False) + lines(reopen, down=True)
        out.append((method, cmds, undo))
    return out

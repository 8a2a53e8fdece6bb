"""The `cordon` commands, one module per command group; `COMMANDS` is the one place that lists
them for the top-level group (`agent.cli.app`): each name with the module and attribute of its
click command, imported only when that command is used (or for `cordon --help`), so `cordon run`
never pays for the demo, the drills, the twin's commands or the audit report (#18).

Imports nothing: `load` imports the one command module asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

__all__ = ["COMMANDS", "load"]

COMMANDS: dict[str, tuple[str, str]] = {
    "inventory": ("inventory", "inventory"),
    "lab": ("lab", "lab"),
    "device": ("device", "device"),
    "daemon": ("daemon", "daemon_cmd"),
    "status": ("status", "status_cmd"),
    "plan": ("plan", "plan_cmd"),
    "run": ("run", "run_cmd"),
    "approve": ("run", "approve_cmd"),
    "attest": ("run", "attest_cmd"),
    "rollback": ("run", "rollback_cmd"),
    "runs": ("runs", "runs_cmd"),
    "show": ("runs", "show_cmd"),
    "incident": ("incident", "incident_group"),
    "resume": ("resume", "resume_cmd"),
    "demo": ("demo", "demo"),
    "drill": ("drill", "drill"),
    "audit": ("audit", "audit"),
    "probe": ("probe", "probe"),
    "api": ("api", "api"),
}


def load(name: str) -> click.Command | None:
    """The click command `name` (its module imported now), None for an unknown name."""
    where = COMMANDS.get(name)
    if where is None:
        return None
    module = importlib.import_module(f"agent.cli.commands.{where[0]}")
    command: click.Command = getattr(module, where[1])
    return command

"""The `cordon` commands, one module per command group; `COMMANDS` is the one place that lists
them for the top-level group (`agent.cli.app`), in the order `cordon --help` shows them.

Imports click, the command modules (the demo, `demo.py`, is a command of its own).
"""

from __future__ import annotations

import click

from agent.cli.commands.api import api
from agent.cli.commands.audit import audit
from agent.cli.commands.daemon import daemon_cmd
from agent.cli.commands.demo import demo
from agent.cli.commands.device import device
from agent.cli.commands.drill import drill
from agent.cli.commands.incident import incident_group
from agent.cli.commands.inventory import inventory
from agent.cli.commands.lab import lab
from agent.cli.commands.plan import plan_cmd
from agent.cli.commands.probe import probe
from agent.cli.commands.resume import resume_cmd
from agent.cli.commands.run import approve_cmd, attest_cmd, rollback_cmd, run_cmd
from agent.cli.commands.runs import runs_cmd, show_cmd
from agent.cli.commands.status import status_cmd

__all__ = ["COMMANDS"]

COMMANDS: tuple[click.Command, ...] = (
    inventory,
    lab,
    device,
    daemon_cmd,
    status_cmd,
    plan_cmd,
    run_cmd,
    approve_cmd,
    attest_cmd,
    rollback_cmd,
    runs_cmd,
    show_cmd,
    incident_group,
    resume_cmd,
    demo,
    drill,
    audit,
    probe,
    api,
)

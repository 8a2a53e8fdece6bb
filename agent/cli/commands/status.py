"""`cordon status`: every site's mode, drift alarms, open runs, open incidents.

Imports click and `agent.cli.{options,session,render}`.
"""

from __future__ import annotations

import click

from agent.cli.options import Opts, common
from agent.cli.render import echo_json
from agent.cli.render.status import render_status
from agent.cli.session import connect

__all__ = ["status_cmd"]


@click.command("status")
@common
def status_cmd(o: Opts) -> None:
    """Every site: mode, level, since when, by whom, the run holding it, drift alarms; open runs
    and what they wait for; open incidents."""
    with connect(o) as conn:
        data = conn.client.status()
    if o.json:
        echo_json(data.wire())
    else:
        click.echo(render_status(o, data))

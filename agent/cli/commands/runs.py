"""`cordon runs` (recent runs) and `cordon show RUN_ID` (one run in full): reading runs.

Imports click and `agent.cli.{options,session,render}`.
"""

from __future__ import annotations

import click

from agent.cli.options import Opts, common
from agent.cli.render import echo_json
from agent.cli.render.runs import render_run, render_runs
from agent.cli.session import connect

__all__ = ["runs_cmd", "show_cmd"]


@click.command("runs")
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@common
def runs_cmd(o: Opts, limit: int) -> None:
    """Recent runs, newest first."""
    with connect(o) as conn:
        data = conn.client.runs(limit=limit)
    if o.json:
        echo_json(data.wire())
        return
    for line in render_runs(o, data):
        click.echo(line)


@click.command("show")
@click.argument("run_id")
@common
def show_cmd(o: Opts, run_id: str) -> None:
    """One run: status, what it waits for, every step and gate, attestations, approval."""
    with connect(o) as conn:
        run = conn.client.show(run_id)
    if o.json:
        echo_json(run.wire())
    else:
        click.echo(render_run(o, run))

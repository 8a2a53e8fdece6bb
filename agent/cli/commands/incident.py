"""`cordon incident open|close|notify`: declare an incident, close it, record a regulator's
notification.

Imports click and `agent.cli.{options,session,render}`.
"""

from __future__ import annotations

import click

from agent.cli.options import Opts, common
from agent.cli.render import echo_json
from agent.cli.session import connect

__all__ = ["incident_group"]


@click.group("incident")
def incident_group() -> None:
    """Declare an incident (its timeline gathers the runs) or close it."""


@incident_group.command("open")
@click.option("--name", default=None, help="A short id-like name, e.g. ransomware-rennes.")
@click.option("--site", default=None, help="The site hit.")
@click.option("--reason", required=True, help="What happened (recorded).")
@common
def incident_open(o: Opts, name: str | None, site: str | None, reason: str) -> None:
    """Declare an incident (e.g. the attack at one site)."""
    with connect(o, changes=True) as conn:
        out = conn.client.incident("open", name=name, site=site, reason=reason)
    if o.json:
        echo_json(out.wire())
    else:
        click.echo(f"incident {out.incident_id} open: {out.name}")


@incident_group.command("close")
@click.argument("name", required=False)
@click.option("--reason", required=True, help="Why it is over (recorded).")
@common
def incident_close(o: Opts, name: str | None, reason: str) -> None:
    """Close NAME (its id or name; default: the open incident)."""
    with connect(o, changes=True) as conn:
        out = conn.client.incident("close", name=name, reason=reason)
    if o.json:
        echo_json(out.wire())
    else:
        click.echo(f"incident {out.incident_id} closed")


@incident_group.command("notify")
@click.argument("incident", required=False)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(
        ["nis2_early_warning", "nis2_notification", "nis2_final_report", "cnil", "ars"]
    ),
    help="Which notification (the audit report's regulatory clocks).",
)
@click.option("--to", "to", required=True, help="Who was notified (authority, desk).")
@click.option("--ref", required=True, help="The notification's reference (receipt, ticket).")
@common
def incident_notify(o: Opts, incident: str | None, kind: str, to: str, ref: str) -> None:
    """Record that a regulator was notified about INCIDENT (default: the open incident)."""
    with connect(o, changes=True) as conn:
        out = conn.client.notify(incident=incident, kind=kind, to=to, ref=ref)
    if o.json:
        echo_json(out.wire())
    else:
        click.echo(f"incident {out.incident_id}: {kind} to {to} recorded (ref {ref})")

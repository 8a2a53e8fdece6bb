"""`cordon lab up|down|status|flows`: the digital twin from the command line.

Rendering only; building belongs to `agent.lab.build`, probing to `agent.lab.flows`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.errors import LabError
from agent.inventory import default_path, load
from agent.inventory.cli import inventory_option
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint


@click.group()
def lab() -> None:
    """The digital twin: real namespaces and daemons built from the inventory (root only)."""


@lab.command("up")
@inventory_option
def up_cmd(inventory_path: Path | None) -> None:
    """Build the twin: namespaces, veths, sshd, FRR, snmpd, zone services."""
    inv = load(inventory_path or default_path())
    blueprint(inv)  # refuse an inventory outside the sandbox now, before waiting for the lock
    click.echo(f"building the twin of {inv.group.name} ({inv.path}) ...")
    with build.exclusive(click.echo):
        state = build.up(inv)
    click.echo(
        f"twin up: {len(state.namespaces)} namespaces, {len(state.procs)} processes, "
        f"{state.timings.get('total_s', 0):.1f} s "
        f"(network {state.timings.get('network_s', 0):.1f} s, "
        f"daemons {state.timings.get('daemons_s', 0):.1f} s)"
    )


@lab.command("down")
def down_cmd() -> None:
    """Stop what the twin started (by PID) and remove every namespace and file it made."""
    with build.exclusive(click.echo):
        done = build.down()
    click.echo("twin down: " + ("; ".join(done) if done else "nothing was up"))


@lab.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(as_json: bool) -> None:
    """Is the twin up, and is every namespace and process it made still there?"""
    st = build.status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    if not st["up"]:
        click.echo(f"twin {st['lab']}: down" + (f" (phase {st['phase']})" if "phase" in st else ""))
        return
    click.echo(f"twin {st['lab']}: up since {st['started_at']} from {st['inventory']}")
    click.echo(f"  namespaces {st['namespaces']} (missing: {st['namespaces_missing'] or 'none'})")
    click.echo(f"  processes  {st['processes']} (dead: {st['processes_dead'] or 'none'})")


@lab.command("flows")
@click.option("--json", "as_json", is_flag=True)
def flows_cmd(as_json: bool) -> None:
    """Probe every declared flow with real TCP from its source; expected vs observed."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up":
        raise LabError("the twin is not up", hint="`cordon lab up` first")
    inv = load(state.inventory)
    obs, elapsed = flows.timed_observe(inv, blueprint(inv, state.lab))
    if as_json:
        click.echo(
            json.dumps(
                {"elapsed_s": round(elapsed, 3), "flows": [o.as_dict() for o in obs]}, indent=2
            )
        )
    else:
        click.echo(flows.render(obs, elapsed_s=elapsed, color=sys.stdout.isatty()))
    if any(not o.as_expected for o in obs):
        sys.exit(1)

"""`cordon lab up|down|status|flows|infect|cure`: the digital twin from the command line.

Rendering only; building belongs to `agent.lab.build`, probing to `agent.lab.flows`, infected
hosts to `agent.lab.infect`. Imports click, `agent.cli.options`, the inventory, `agent.errors` and
the twin's modules (`agent.lab`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.cli.options import inventory_option
from agent.errors import LabError
from agent.inventory import default_path, load
from agent.lab import build, flows, infect
from agent.lab.state import LabState
from agent.lab.topology import blueprint


@click.group()
def lab() -> None:
    """The digital twin: real namespaces and daemons built from the inventory (root only)."""


@lab.command("up")
@inventory_option
def up_cmd(inventory_path: Path | None) -> None:
    """Build the twin: namespaces, veths, sshd, FRR, snmpd, zone services. Returns once every
    declared flow works; else exits 9 naming the flows, the device and the hop at fault."""
    inv = load(inventory_path or default_path())
    blueprint(inv)  # refuse an inventory outside the sandbox now, before waiting for the lock
    click.echo(f"building the twin of {inv.group.name} ({inv.path}) ...")
    with build.exclusive(click.echo):
        state = build.up(inv)
    click.echo(
        f"twin up: {len(state.namespaces)} namespaces, {len(state.procs)} processes, "
        f"{state.timings.get('total_s', 0):.1f} s "
        f"(network {state.timings.get('network_s', 0):.1f} s, "
        f"daemons {state.timings.get('daemons_s', 0):.1f} s, "
        f"links settled {state.timings.get('settle_s', 0):.1f} s later); "
        f"all {len(inv.flows)} declared flows checked open"
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
    sick = infect.infected()
    if st["up"]:
        st["infected"] = [i.as_dict() for i in sick]
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    if not st["up"]:
        click.echo(f"twin {st['lab']}: down" + (f" (phase {st['phase']})" if "phase" in st else ""))
        return
    click.echo(f"twin {st['lab']}: up since {st['started_at']} from {st['inventory']}")
    click.echo(f"  namespaces {st['namespaces']} (missing: {st['namespaces_missing'] or 'none'})")
    click.echo(f"  processes  {st['processes']} (dead: {st['processes_dead'] or 'none'})")
    click.echo(f"  infected   {len(sick) or 'none'}")
    for i in sick:
        click.echo(
            f"    {i.host}: scanner pid {i.pid} {'running' if i.running else 'DEAD'}, "
            f"{i.rate:g} attempts/s toward {i.targets} core targets, since {i.since}"
        )


@lab.command("infect")
@click.argument("host_ref", metavar="SITE/ZONE/HOST")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, max=1000, min_open=True),
    default=20.0,
    show_default=True,
    help="connection attempts per second",
)
def infect_cmd(host_ref: str, rate: float) -> None:
    """Make a twin host scan the core (TCP connects to every core host, declared and
    undeclared ports) until cured or `lab down`."""
    with build.exclusive(click.echo):
        pid = infect.infect(host_ref, rate)
    click.echo(f"{host_ref} infected: scanner pid {pid}, {rate:g} attempts/s toward the core")


@lab.command("cure")
@click.argument("host_ref", metavar="SITE/ZONE/HOST")
def cure_cmd(host_ref: str) -> None:
    """Stop the scanner of an infected twin host (by its recorded PID)."""
    with build.exclusive(click.echo):
        stopped = infect.cure(host_ref)
    click.echo(f"{host_ref} cured" if stopped else f"{host_ref} was not infected (nothing running)")


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

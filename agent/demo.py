"""`cordon demo`: the main job on the built-in example, readable by a newcomer.

Brings up the Hospi Grand Ouest twin, shows the inventory and the flow matrix, and takes the twin
down again (unless --keep). Orchestration and narration only; the work is done by the modules.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from agent.errors import CordonError
from agent.inventory import default_path, load
from agent.inventory.cli import inventory_option
from agent.inventory.cli import render as render_inventory
from agent.inventory.models import Inventory
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint


def _say(text: str, *, color: bool) -> None:
    click.echo(click.style(text, bold=True) if color else text)


@click.command()
@inventory_option
@click.option("--keep", is_flag=True, help="Leave the twin up afterwards (`cordon lab down`).")
def demo(inventory_path: Path | None, keep: bool) -> None:
    """Build the digital twin of the example group and show that every flow works."""
    color = sys.stdout.isatty()
    inv = load(inventory_path or default_path())
    with build.exclusive(click.echo):
        _demo(inv, keep=keep, color=color)


def _demo(inv: Inventory, *, keep: bool, color: bool) -> None:
    _say(f"== 1. The inventory: {inv.path}", color=color)
    click.echo(render_inventory(inv))
    _say("\n== 2. The digital twin: real namespaces, sshd, FRR, snmpd, zone services", color=color)
    if LabState.load(build.DEFAULT_LAB) is not None:
        click.echo("a twin is already up: taking it down first")
        build.down()
    t = time.perf_counter()
    state = build.up(inv)
    click.echo(
        f"twin up in {time.perf_counter() - t:.1f} s: {len(state.namespaces)} namespaces, "
        f"{len(state.procs)} processes"
    )
    failed = False
    try:
        _say("\n== 3. The flow matrix: every declared flow, real TCP from its source", color=color)
        obs, elapsed = flows.timed_observe(inv, blueprint(inv, state.lab))
        click.echo(flows.render(obs, elapsed_s=elapsed, color=color))
        failed = any(not o.as_expected for o in obs)
    except CordonError:
        failed = True
        raise
    finally:
        if keep and not failed:
            click.echo("\ntwin left up: try `cordon lab flows`, then `cordon lab down`")
        else:
            t = time.perf_counter()
            build.down()
            click.echo(f"\ntwin down in {time.perf_counter() - t:.1f} s")
    if failed:
        raise CordonError(
            "some flows are not as expected in the normal state",
            hint="see the lines marked !! above",
        )

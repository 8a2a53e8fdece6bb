"""`cordon drill run SCENARIO`: the yearly cyber-crisis exercise (CaRE) on a twin of the group.

Renumbers the group's inventory into a sandbox copy, plays the scenario on its twin (the real
engine and drivers, the scenario's people as the actors), takes the twin down, and writes the
exercise report (text and HTML) with the drill's own audit log and journal into --out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from agent.cli.options import inventory_option
from agent.drill import exercise, record
from agent.drill import scenario as scenario_file
from agent.errors import DrillError
from agent.inventory import default_path, load


@click.group()
def drill() -> None:
    """Cyber-crisis exercises on a twin of the group (never the production devices)."""


@drill.command("run")
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(path_type=Path))
@inventory_option
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="A new directory for the record (default: drills/<scenario>-<UTC time>).",
)
@click.option(
    "--seal-key",
    default=None,
    metavar="REF",
    help="Sign the drill log's seals with this key (file:PATH or env:NAME); default: unsigned "
    "(never the production key implicitly).",
)
def run_drill(
    scenario_path: Path, inventory_path: Path | None, out: Path | None, seal_key: str | None
) -> None:
    """Play SCENARIO on the twin of a sandbox copy of the inventory and write its report."""
    sc = scenario_file.load(scenario_path)
    group = load(inventory_path or default_path())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out or Path("drills") / f"{sc.name}-{stamp}"
    outcome = exercise.play(sc, group, out, click.echo, seal_key=seal_key)
    rec = record.build(outcome)
    paths = record.write(rec, out)
    click.echo(record.render_text(rec))
    click.echo("report: " + ", ".join(str(p) for p in paths))
    if rec.deviations:
        raise DrillError(
            f"the exercise deviated from its plan ({len(rec.deviations)} deviation(s))",
            hint=f"the report lists them: {paths[0]}",
        )

"""`cordon resume RUN_ID`: the one engine command that stays local (after a crash, with no daemon
running): settle in-flight steps by reading the devices, then finish the run or roll it back.

Imports click, the executor (`agent.run.executor`), the journal, the pool, the inventory,
`agent.settings`, `agent.status`, the daemon's state-dir lock and the flow sources
(`agent.verify.sources`, the twin's `agent.lab.verifier`); renders with `agent.cli.render.report`.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from agent import settings
from agent.cli.options import inventory_option
from agent.cli.render.report import render_report, report_json
from agent.drivers.pool import Pool
from agent.engine.journal import at as journal_at
from agent.inventory import default_path, load
from agent.lab.verifier import twin_source
from agent.run.executor import Executor
from agent.status import RUN_EXIT, RunStatus
from agent.verify.sources import production_sources

__all__ = ["resume_cmd"]


@click.command("resume")
@click.argument("run_id")
@click.option("--rollback", "roll_back", is_flag=True, help="Roll back instead of finishing.")
@inventory_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: settings.current().state_dir,
    show_default=".state",
    help="The state directory holding the journal ($CORDON_STATE_DIR).",
)
@click.option("--json", "json_out", is_flag=True, help="Machine output: JSON only on stdout.")
def resume_cmd(
    run_id: str, roll_back: bool, inventory_path: Path | None, state_dir: Path, json_out: bool
) -> None:
    """After a crash, with no daemon running: settle in-flight steps by reading the devices,
    then finish RUN_ID or roll it back. A finished run whose rollback was cut short: its steps
    left undoing are settled from the devices and its sites released. (A running daemon
    settles open runs itself at start; a rollback cut short only this command.)
    Exit 0 done or rolled back, 19 an undo failed, 4 otherwise."""
    from agent.daemon.lock import state_lock  # noqa: PLC0415 - the daemon's state-dir lock

    inv = load(inventory_path or default_path())
    journal = journal_at(state_dir)
    try:
        with state_lock(state_dir, shared=True), Pool(inv, keepalive=None) as pool:
            ex = Executor(
                inv,
                journal,
                pool,
                actor=getpass.getuser(),
                sources=[
                    *production_sources(inv, pool),
                    *([twin] if (twin := twin_source(inv, deferred=True)) is not None else []),
                ],
                progress=lambda msg: click.echo(f"  {msg}", err=json_out),
            )
            report = ex.resume(run_id, roll_back=roll_back)
    finally:
        journal.close()
    click.echo(json.dumps(report_json(report), indent=2) if json_out else render_report(report))
    ok = (RunStatus.DONE, RunStatus.ROLLED_BACK)
    if report.status == RunStatus.ROLLBACK_FAILED:  # an undo failed: its sites stay held
        raise SystemExit(RUN_EXIT[RunStatus.ROLLBACK_FAILED])
    if report.status not in ok and not report.status.startswith("already"):
        raise SystemExit(4)

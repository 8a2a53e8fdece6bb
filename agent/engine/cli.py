"""`cordon plan PLAYBOOK [--sites ...]`: the exact commands per device, their undo, and the impact
preview on every declared flow. Rendering only; planning belongs to `agent.engine.plan`."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from agent.drivers.pool import Pool
from agent.engine.execute import Executor, FlowVerifier, RunReport
from agent.engine.journal import Journal
from agent.engine.plan import Plan, plan, require_safe
from agent.inventory import default_path, load
from agent.inventory.cli import inventory_option
from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.flows import engine_verifier
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.playbook import find
from agent.playbook import load as load_playbook


def render_text(p: Plan, *, color: bool = False, commands: bool = True) -> str:
    def bold(text: str) -> str:
        return click.style(text, bold=True) if color else text

    lines = [
        bold(
            f"plan: {p.playbook} (level {p.level}) on {len(p.sites)} site(s): {', '.join(p.sites)}"
        )
    ]
    for step in p.steps:
        head = f"-- {step.site} / {step.step} [{step.action}]"
        if not step.changes and step.action in (
            "cut_link",
            "block_zones",
            "shut_zone_ports",
            "shut_port",
            "allow_flow",
        ):
            head += "  no change (already in that state)"
        lines.append(head)
        lines += [f"   note: {n}" for n in step.notes]
        for c in step.changes:
            lines.append(f"   {c.device} ({c.platform.value}, {c.method})")
            if commands:
                lines += [f"     + {x}" for x in c.commands]
                lines += [f"     undo: {x}" for x in c.undo]
    cut = [fi for fi in p.impact if fi.change == "cut"]
    kept = [fi for fi in p.impact if fi.must_survive and fi.after]
    lines.append(
        bold(
            f"impact: {len(cut)} flows cut, {len(kept)} must-survive flows kept open, "
            f"{sum(fi.after for fi in p.impact)} of {len(p.impact)} open after"
        )
    )
    lines += [f"   cut   {fi.flow}" + ("  [MUST SURVIVE]" if fi.must_survive else "") for fi in cut]
    for refusal in p.refusals:
        lines.append(
            click.style(f"REFUSED: {refusal}", fg="red") if color else f"REFUSED: {refusal}"
        )
    return "\n".join(lines)


def as_json(p: Plan) -> dict[str, object]:
    return {
        "playbook": p.playbook,
        "level": p.level,
        "sites": list(p.sites),
        "steps": [
            {
                "site": s.site,
                "step": s.step,
                "action": s.action,
                "notes": list(s.notes),
                "changes": [
                    {
                        "device": c.device,
                        "platform": c.platform.value,
                        "method": c.method,
                        "commands": list(c.commands),
                        "undo": list(c.undo),
                    }
                    for c in s.changes
                ],
            }
            for s in p.steps
        ],
        "impact": [
            {"flow": fi.flow, "must_survive": fi.must_survive, "change": fi.change}
            for fi in p.impact
        ],
        "refusals": list(p.refusals),
    }


@click.command("plan")
@click.argument("playbook")
@click.option("--sites", "-s", multiple=True, help="Limit to these sites (repeatable).")
@inventory_option
@click.option("--json", "json_out", is_flag=True)
@click.option("--brief", is_flag=True, help="Devices and impact only, without the commands.")
def plan_cmd(
    playbook: str, sites: tuple[str, ...], inventory_path: Path | None, json_out: bool, brief: bool
) -> None:
    """Show what PLAYBOOK would do: commands and undo per device, and which flows it cuts."""
    inv = load(inventory_path or default_path())
    pb = load_playbook(find(playbook), inv)
    journal = _journal()
    current = journal.device_states()  # plan from what Cordon recorded: re-planning is empty
    journal.close()
    p = plan(pb, inv, sites=list(sites) or None, current=current)
    if json_out:
        click.echo(json.dumps(as_json(p), indent=2))
    else:
        click.echo(render_text(p, color=sys.stdout.isatty(), commands=not brief))
    require_safe(p)


def _journal() -> Journal:
    return Journal()


def _twin_verifier(inv: Inventory) -> FlowVerifier | None:
    """On the twin (built from this inventory), verify_flows steps probe real flows."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    return engine_verifier(inv, blueprint(inv, state.lab))


def _executor(inv: Inventory, pool: Pool, journal: Journal, *, quiet: bool) -> Executor:
    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"  {msg}")

    return Executor(
        inv, journal, pool, actor=getpass.getuser(), verifier=_twin_verifier(inv), progress=progress
    )


def render_report(report: RunReport) -> str:
    lines = [f"run {report.run_id}: {report.status} in {report.duration_s:.2f} s"]
    lines.append(f"  {'site':<30} {'step':<28} {'device':<10} {'method':<6} result")
    for o in report.outcomes:
        lines.append(
            f"  {o.site:<30} {o.step:<28} {o.device:<10} {o.method:<6} {o.status}"
            + (f"  ({o.error})" if o.error else "")
        )
    lines += [f"  flow check: {p}" for p in report.flow_problems]
    return "\n".join(lines)


def report_json(report: RunReport) -> dict[str, object]:
    return {
        "run_id": report.run_id,
        "status": report.status,
        "duration_s": round(report.duration_s, 3),
        "flow_problems": report.flow_problems,
        "steps": [o.__dict__ for o in report.outcomes],
    }


@click.command("run")
@click.argument("playbook")
@click.option("--sites", "-s", multiple=True, help="Limit to these sites (repeatable).")
@inventory_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "json_out", is_flag=True)
def run_cmd(
    playbook: str, sites: tuple[str, ...], inventory_path: Path | None, yes: bool, json_out: bool
) -> None:
    """Run PLAYBOOK: show the plan, confirm, apply with read-back, report per device and step."""
    inv = load(inventory_path or default_path())
    pb = load_playbook(find(playbook), inv)
    journal = _journal()
    with Pool(inv, keepalive=None) as pool:
        ex = _executor(inv, pool, journal, quiet=json_out)
        p = require_safe(ex.plan(pb, list(sites) or None))
        if not json_out:
            click.echo(render_text(p, color=sys.stdout.isatty(), commands=False))
        if p.empty:
            click.echo("nothing to change: every targeted device is already in that state")
        elif not yes:
            cut = sum(fi.change == "cut" for fi in p.impact)
            click.confirm(
                f"Apply {len(p.changes)} device changes on {len(p.sites)} site(s), "
                f"cutting {cut} flows?",
                abort=True,
            )
        report = ex.run(pb, list(sites) or None, confirmed=p)
    journal.close()
    click.echo(json.dumps(report_json(report), indent=2) if json_out else render_report(report))
    if report.status != "done":
        raise SystemExit(4)


@click.command("rollback")
@click.argument("run_id")
@click.option("--device", "-d", default=None, help="Only this device.")
@inventory_option
def rollback_cmd(run_id: str, device: str | None, inventory_path: Path | None) -> None:
    """Restore the pre-run state of what RUN_ID changed. Running it twice changes nothing."""
    inv = load(inventory_path or default_path())
    journal = _journal()
    with Pool(inv, keepalive=None) as pool:
        report = _executor(inv, pool, journal, quiet=False).rollback(run_id, device)
    journal.close()
    click.echo(render_report(report))
    if report.status not in ("rolled_back", "nothing_to_roll_back"):
        raise SystemExit(4)


@click.command("resume")
@click.argument("run_id")
@click.option("--rollback", "roll_back", is_flag=True, help="Roll back instead of finishing.")
@inventory_option
def resume_cmd(run_id: str, roll_back: bool, inventory_path: Path | None) -> None:
    """After a crash: settle in-flight steps by reading the devices, then finish or roll back."""
    inv = load(inventory_path or default_path())
    journal = _journal()
    with Pool(inv, keepalive=None) as pool:
        report = _executor(inv, pool, journal, quiet=False).resume(run_id, roll_back=roll_back)
    journal.close()
    click.echo(render_report(report))
    if report.status not in ("done", "rolled_back") and not report.status.startswith("already"):
        raise SystemExit(4)


@click.command("status")
@click.option("--json", "json_out", is_flag=True)
def status_cmd(json_out: bool) -> None:
    """Every site's isolation mode and level, since when, by whom; runs holding sites."""
    journal = _journal()
    sites, locks = journal.sites(), journal.locks()
    journal.close()
    if json_out:
        click.echo(json.dumps({"sites": sites, "locks": locks}, indent=2))
        return
    if not sites:
        click.echo("no site has been changed by Cordon (all normal)")
    for name, st in sorted(sites.items()):
        since = datetime.fromtimestamp(st["since"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(
            f"{name:<32} {st['mode']:<12} {st['level'] or '-':<4} since {since} "
            f"by {st['actor']} (run {st['run_id']})"
            + (f"  LOCKED by {locks[name]}" if name in locks else "")
        )


@click.command("runs")
@click.option("--json", "json_out", is_flag=True)
def runs_cmd(json_out: bool) -> None:
    """Recent runs, newest first."""
    journal = _journal()
    runs = journal.runs()
    journal.close()
    if json_out:
        click.echo(json.dumps(runs, indent=2))
        return
    for r in runs:
        click.echo(
            f"{r['run_id']}  {r['status']:<14} {r['playbook']:<22} {r['actor']:<8} "
            f"{', '.join(r['sites'])}"
        )

"""The engine's renderers (a plan as text or JSON, a run report) and the one engine command that
stays local, `cordon resume RUN_ID` (after a crash, with no daemon running). Planning belongs to
`agent.engine.plan`; the daemon-first commands (plan, run, status...) to
`agent.cli.commands.daemon_cmds`."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from agent.cli.commands.inventory import inventory_option
from agent.drivers.pool import Pool
from agent.engine.execute import Executor, FlowVerifier, RunReport
from agent.engine.journal import Journal
from agent.engine.plan import Plan
from agent.engine.state import DeviceState
from agent.inventory import default_path, load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.flows import engine_verifier
from agent.lab.state import LabState
from agent.lab.topology import blueprint


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


def link_changes(p: Plan, inv: Inventory) -> list[dict[str, str]]:
    """The inventory links each step cuts or reopens (a link is cut when its interface is shut or
    its traffic dropped by our table): what a person confirming a run must read."""
    out: list[dict[str, str]] = []
    for step in p.steps:
        site = inv.site(step.site)
        if site is None:
            continue
        for c in step.changes:
            for link in (lk for lk in site.links if lk.device == c.device):
                was, will = c.before.cuts(link.interface), c.after.cuts(link.interface)
                if was != will:
                    out.append(
                        {
                            "site": step.site,
                            "step": step.step,
                            "link": link.name,
                            "kind": link.kind.value,
                            "device": link.device,
                            "interface": link.interface,
                            "change": "cut" if will else "reopened",
                        }
                    )
    return out


def as_json(p: Plan, inv: Inventory | None = None) -> dict[str, object]:
    """The plan as JSON; with `inv`, also the links it cuts or reopens (`links`)."""
    out: dict[str, object] = {
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
    if inv is not None:
        out["links"] = link_changes(p, inv)
    return out


def twin_verifier(
    inv: Inventory, current: Callable[[], Mapping[str, DeviceState]] | None = None
) -> FlowVerifier | None:
    """On the twin (built from this inventory), verify_flows steps probe real flows. `current`
    (the journal's recorded states) is read again before a retry: with runs in parallel,
    another site may change while this one probes."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    return engine_verifier(inv, blueprint(inv, state.lab), current=current)


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


@click.command("resume")
@click.argument("run_id")
@click.option("--rollback", "roll_back", is_flag=True, help="Roll back instead of finishing.")
@inventory_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CORDON_STATE_DIR",
    default=".state",
    show_default=True,
    help="The state directory holding the journal ($CORDON_STATE_DIR).",
)
@click.option("--json", "json_out", is_flag=True, help="Machine output: JSON only on stdout.")
def resume_cmd(
    run_id: str, roll_back: bool, inventory_path: Path | None, state_dir: Path, json_out: bool
) -> None:
    """After a crash, with no daemon running: settle in-flight steps by reading the devices,
    then finish RUN_ID or roll it back. (A running daemon does this itself at start.)"""
    from agent.daemon.main import state_lock  # noqa: PLC0415 - the daemon's state-dir lock

    inv = load(inventory_path or default_path())
    journal = Journal(state_dir / "journal.sqlite")
    try:
        with state_lock(journal.path.parent, shared=True), Pool(inv, keepalive=None) as pool:
            ex = Executor(
                inv,
                journal,
                pool,
                actor=getpass.getuser(),
                verifier=twin_verifier(inv, journal.device_states),
                progress=lambda msg: click.echo(f"  {msg}", err=json_out),
            )
            report = ex.resume(run_id, roll_back=roll_back)
    finally:
        journal.close()
    click.echo(json.dumps(report_json(report), indent=2) if json_out else render_report(report))
    if report.status not in ("done", "rolled_back") and not report.status.startswith("already"):
        raise SystemExit(4)

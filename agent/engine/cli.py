"""`cordon plan PLAYBOOK [--sites ...]`: the exact commands per device, their undo, and the impact
preview on every declared flow. Rendering only; planning belongs to `agent.engine.plan`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.engine.plan import Plan, plan, require_safe
from agent.inventory import default_path, load
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
@click.option("--inventory", "-i", "inventory_path", type=click.Path(path_type=Path), default=None)
@click.option("--json", "json_out", is_flag=True)
@click.option("--brief", is_flag=True, help="Devices and impact only, without the commands.")
def plan_cmd(
    playbook: str, sites: tuple[str, ...], inventory_path: Path | None, json_out: bool, brief: bool
) -> None:
    """Show what PLAYBOOK would do: commands and undo per device, and which flows it cuts."""
    inv = load(inventory_path or default_path())
    pb = load_playbook(find(playbook), inv)
    p = plan(pb, inv, sites=list(sites) or None)
    if json_out:
        click.echo(json.dumps(as_json(p), indent=2))
    else:
        click.echo(render_text(p, color=sys.stdout.isatty(), commands=not brief))
    require_safe(p)

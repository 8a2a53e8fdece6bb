"""A plan as text, the one plan renderer: in full (`cordon plan`), in brief (one line per site,
before `cordon run` asks), and the confirmation (the links and flows a run cuts or reopens).

Imports the wire models and `agent.cli.render` helpers only.
"""

from __future__ import annotations

from agent.cli.options import Opts
from agent.cli.render import style
from agent.wire import PlanOut

__all__ = ["confirmation", "render_plan", "render_plan_brief"]

# actions that change nothing when the devices are already in that state
_IDEMPOTENT = ("cut_link", "block_zones", "shut_zone_ports", "shut_port", "allow_flow")


def _counts(plan: PlanOut) -> dict[str, int]:
    impact = plan.impact
    return {
        "cut": sum(fi.change == "cut" for fi in impact),
        "reopened": sum(fi.change == "reopened" for fi in impact),
        "kept": sum(fi.must_survive and fi.change in ("stays open", "reopened") for fi in impact),
        "must_cut": sum(fi.must_survive and fi.change == "cut" for fi in impact),
        "open_after": sum(fi.change in ("stays open", "reopened") for fi in impact),
        "flows": len(impact),
    }


def render_plan(o: Opts, plan: PlanOut, *, commands: bool = True) -> str:
    lines = [
        style(
            o,
            f"plan: {plan.playbook} (level {plan.level}) on {len(plan.sites)} site(s): "
            + ", ".join(plan.sites),
            bold=True,
        )
    ]
    for step in plan.steps:
        head = f"-- {step.site} / {step.step} [{step.action}]"
        if not step.changes and step.action in _IDEMPOTENT:
            head += "  no change (already in that state)"
        lines.append(head)
        lines += [f"   note: {n}" for n in step.notes]
        for c in step.changes:
            lines.append(f"   {c.device} ({c.platform}, {c.method})")
            if commands:
                lines += [f"     + {x}" for x in c.commands]
                lines += [f"     undo: {x}" for x in c.undo]
    lines += _impact_lines(o, plan)
    lines += [
        f"   cut   {fi.flow}" + ("  [MUST SURVIVE]" if fi.must_survive else "")
        for fi in plan.impact
        if fi.change == "cut"
    ]
    lines += [style(o, f"REFUSED: {r}", fg="red", bold=True) for r in plan.refusals]
    return "\n".join(lines)


def _impact_lines(o: Opts, plan: PlanOut) -> list[str]:
    n = _counts(plan)
    text = (
        f"impact: {n['cut']} flows cut, {n['kept']} must-survive flows kept open, "
        f"{n['open_after']} of {n['flows']} open after"
    )
    if n["reopened"]:
        text += f", {n['reopened']} reopened"
    return [style(o, text, bold=True)]


def render_plan_brief(o: Opts, plan: PlanOut) -> str:
    """One line per site: its steps, with the number of devices each changes."""
    lines = [
        style(
            o,
            f"plan: {plan.playbook} (level {plan.level}) on {len(plan.sites)} site(s)",
            bold=True,
        )
    ]
    by_site: dict[str, list[str]] = {}
    for step in plan.steps:
        n = len(step.changes)
        by_site.setdefault(step.site, []).append(
            step.step + (f" ({n} device{'s' if n != 1 else ''})" if n else "")
        )
    for site, steps in by_site.items():
        lines.append(f"  {site}: " + " > ".join(steps))
    return "\n".join(lines)


def confirmation(o: Opts, plan: PlanOut) -> str:
    """Exactly what will be cut (and reopened): sites, links, flows; then the question."""
    n = _counts(plan)
    lines = [
        style(
            o,
            f"{plan.playbook} will change {plan.changes} device(s) on {len(plan.sites)} "
            f"site(s): {', '.join(plan.sites)}",
            bold=True,
        )
    ]
    for link in plan.links:
        verb = link.change
        lines.append(
            "  "
            + style(o, f"{verb.upper():<9}", fg="red" if verb == "cut" else "green")
            + f"{link.site}  {link.kind} link {link.link}"
            f" ({link.device} {link.interface})"
        )
    flows = f"  {n['cut']} flow(s) cut, {n['kept']} must-survive flow(s) kept open"
    if n["reopened"]:
        flows += f", {n['reopened']} flow(s) reopened"
    lines.append(style(o, flows, bold=True))
    if n["must_cut"]:
        lines.append(
            style(o, f"  {n['must_cut']} MUST-SURVIVE flow(s) CUT (allow_cut)", fg="red", bold=True)
        )
    if plan.emergency:
        lines.append("  emergency playbook")
    if plan.approval == "two_person":
        lines.append("  two-person rule: a second operator must approve before anything is sent")
    return "\n".join(lines)

"""`cordon plan`: what a playbook would do, and the refusal (exit 3) of an unsafe plan, which
`cordon run` applies too.

Imports click, `agent.cli.{options,session,render}`, the wire models and `agent.errors`.
"""

from __future__ import annotations

import click

from agent.cli.options import JSON, Opts, common, params_option, sites_option
from agent.cli.render import echo_json
from agent.cli.render.plan import render_plan
from agent.cli.session import connect
from agent.errors import PlanError
from agent.wire import PlanOut

__all__ = ["plan_cmd", "refuse_unsafe"]


@click.command("plan")
@click.argument("playbook")
@sites_option
@params_option
@click.option("--brief", is_flag=True, help="Devices and impact only, without the commands.")
@common
def plan_cmd(o: Opts, playbook: str, sites: tuple[str, ...], params: JSON, brief: bool) -> None:
    """What PLAYBOOK would do: commands and undo per device, and which flows it cuts. Exit 3
    (and REFUSED lines) when it would cut a must-survive flow or a management interface."""
    with connect(o) as conn:
        plan = conn.client.plan(playbook, sites=list(sites) or None, params=params or None)
    if o.json:
        echo_json(plan.wire())
    else:
        click.echo(render_plan(o, plan, commands=not brief))
    refuse_unsafe(plan)


def refuse_unsafe(plan: PlanOut) -> None:
    """A plan with refusals is refused here: `PlanError` (exit 3), nothing sent."""
    if plan.refusals:
        raise PlanError(
            "plan refused: " + "; ".join(plan.refusals),
            hint="nothing was sent; keep the flow open with an allow_flow step, or name it "
            "under allow_cut if cutting it is intended",
        )

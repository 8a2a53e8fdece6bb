"""`cordon run` (plan, confirm, start, follow), `approve`, `attest` and `rollback`: the commands
that start or steer a run through the API (the daemon's, or the one served in this process).

Imports click, `agent.cli.{options,session,follow,render}`, `cordon plan`'s shared options, the
wire models and `agent.errors`; the exit code of a run's final status comes from `agent.status`
(`RUN_EXIT`, `exit_code`).
"""

from __future__ import annotations

import click

from agent.cli.commands.plan import refuse_unsafe
from agent.cli.follow import follow
from agent.cli.options import JSON, Opts, common, pairs, params_option, sites_option
from agent.cli.render import echo_json, style
from agent.cli.render.plan import confirmation, render_plan_brief
from agent.cli.render.runs import ROLLED_BACK, render_final, render_rollback
from agent.cli.render.status import waiting_text
from agent.cli.session import connect
from agent.errors import ConfigError
from agent.status import INTERRUPTED, RUN_EXIT, RunStatus, exit_code
from agent.wire import RunStarted

__all__ = ["approve_cmd", "attest_cmd", "rollback_cmd", "run_cmd"]


@click.command("run")
@click.argument("playbook")
@sites_option
@params_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--reason", default=None, help="Why (recorded; mandatory for on-call break-glass).")
@click.option(
    "--attest",
    "attest",
    multiple=True,
    callback=pairs("ZONE=REASON"),
    help="Attest a zone is clean before it is reconnected: ZONE=REASON (repeatable).",
)
@click.option("--soak-seconds", type=int, default=None, help="Every soak this long (drills).")
@click.option("--detach", is_flag=True, help="Return once started; the daemon goes on.")
@common
def run_cmd(
    o: Opts,
    playbook: str,
    sites: tuple[str, ...],
    params: JSON,
    yes: bool,
    reason: str | None,
    attest: JSON,
    soak_seconds: int | None,
    detach: bool,
) -> None:
    """Run PLAYBOOK: show the plan, confirm what it cuts, start it, follow it to its end.

    Exit 0 done (or started, with --detach); 4 failed, 15 rolled back, 16 partial,
    17 re-isolated by a soak, 18 approval expired, 19 rollback failed."""
    if detach and o.local:
        raise ConfigError(
            "--detach needs the daemon: with --local, this process is what drives the run",
            hint="start `cordon daemon`, or drop --detach",
        )
    with connect(o, changes=True, drives=True) as conn:
        wanted = list(sites) or None
        plan = conn.client.plan(playbook, sites=wanted, params=params or None)
        if not o.json:
            click.echo(render_plan_brief(o, plan))
        refuse_unsafe(plan)
        if not plan.changes:
            if o.json:
                echo_json({"run_id": None, "status": "no_change", "plan": plan.wire()})
            else:
                click.echo("nothing to change: every targeted device is already in that state")
            return
        click.echo(confirmation(o, plan), err=o.json)
        if not yes and not _confirmed(o):
            click.echo("not started: nothing was sent", err=True)
            raise SystemExit(INTERRUPTED)
        started = conn.client.run(
            playbook,
            digest=str(plan.digest),
            sites=wanted,
            reason=reason,
            attest=attest or None,
            soak_seconds=soak_seconds,
            params=params or None,
        )
        run_id = str(started.run_id)
        _announce(o, started)
        if detach:
            run = conn.client.show(run_id)
            if o.json:
                echo_json(run.wire())
            else:
                click.echo(f"  {waiting_text(run)}")
                click.echo(f"  follow it with `cordon show {run_id}` or `cordon status`")
            return
        run = follow(o, conn, run_id)
    if o.json:
        echo_json(run.wire())
    else:
        click.echo(render_final(o, run))
    code = exit_code(str(run.status))
    if code:
        raise SystemExit(code)


def _confirmed(o: Opts) -> bool:
    try:
        return click.confirm("Go ahead?", err=o.json)
    except click.Abort:  # end of input, or Ctrl-C at the question
        click.echo("", err=True)
        return False


def _announce(o: Opts, started: RunStarted) -> None:
    if o.json:
        return
    run_id = started.run_id
    click.echo(style(o, f"run {run_id} started", bold=True))
    if started.break_glass:
        text = "  break-glass: your reason is recorded, the run flagged for review"
        click.echo(style(o, text, fg="yellow"))
    if started.needs_approval:
        text = f"  waits for a second operator: `cordon approve {run_id}`"
        click.echo(style(o, text, fg="yellow"))


@click.command("approve")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why you approve (recorded).")
@common
def approve_cmd(o: Opts, run_id: str, reason: str | None) -> None:
    """Second operator: approve RUN_ID (two-person rule; never the run's own author)."""
    with connect(o, changes=True) as conn:
        out = conn.client.approve(run_id, reason=reason)
    if o.json:
        echo_json(out.wire())
        return
    what = out.approved
    step = "" if what in (None, "run") else f" (step {what})"
    click.echo(f"run {run_id}{step} approved by {out.by}")
    click.echo(_goes_on(o, run_id))


def _goes_on(o: Opts, run_id: str) -> str:
    if o.local:
        return (
            f"  no daemon: the run goes on in the `cordon run --local` following it, "
            f"or with `cordon resume {run_id}`"
        )
    return f"  the daemon goes on with it now: `cordon show {run_id}`"


@click.command("attest")
@click.argument("run_id")
@click.argument("site")
@click.argument("zone")
@click.option("--reason", required=True, help="Who checked what (recorded).")
@common
def attest_cmd(o: Opts, run_id: str, site: str, zone: str, reason: str) -> None:
    """Attest that ZONE at SITE is clean, so RUN_ID may reconnect it."""
    with connect(o, changes=True) as conn:
        out = conn.client.attest(run_id, site=site, zone=zone, reason=reason)
    if o.json:
        echo_json(out.wire())
        return
    click.echo(f"run {run_id}: zone {zone} at {site} attested clean by {out.by}")
    click.echo(_goes_on(o, run_id))


@click.command("rollback")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (recorded).")
@common
def rollback_cmd(o: Opts, run_id: str, reason: str | None) -> None:
    """Restore the state before RUN_ID on every device it changed (twice changes nothing).
    Exit 0 rolled back (or nothing to roll back), 19 when an undo failed."""
    with connect(o, changes=True) as conn:
        out = conn.client.rollback(run_id, reason=reason)
    status = str(out.status)
    if o.json:
        echo_json(out.wire())
    else:
        for line in render_rollback(o, out):
            click.echo(line)
    if status == RunStatus.ROLLBACK_FAILED:
        raise SystemExit(RUN_EXIT[RunStatus.ROLLBACK_FAILED])
    if status not in ROLLED_BACK:
        raise SystemExit(4)

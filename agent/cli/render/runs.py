"""Runs as text: the list (`cordon runs`), one run (`cordon show`), a run's end (`cordon run`),
a rollback's result; the colours of step and gate statuses.

Imports the wire models, `agent.status` and the `agent.cli.render` helpers (and `status`'s) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.cli.options import Opts
from agent.cli.render import style, when
from agent.cli.render.status import waiting_text
from agent.status import OPEN, GateStatus, Outcome, RunStatus, StepStatus
from agent.wire import RunView

if TYPE_CHECKING:  # annotations only: `cordon run` does not create these classes (#18)
    from agent.wire.reports import RunsOut
    from agent.wire.steering import RollbackOut

__all__ = [
    "GATE_COLOR",
    "STEP_COLOR",
    "render_final",
    "render_rollback",
    "render_run",
    "render_runs",
]

STEP_COLOR: dict[str, str] = {
    StepStatus.VERIFIED: "green",
    StepStatus.FAILED: "red",
    StepStatus.UNDONE: "yellow",
    StepStatus.UNDO_FAILED: "red",
}
GATE_COLOR: dict[str, str | None] = {
    GateStatus.PASSED: "green",
    GateStatus.SKIPPED: None,
    GateStatus.FAILED: "red",
    GateStatus.REISOLATED: "red",
    GateStatus.EXPIRED: "red",
}
ROLLED_BACK: tuple[str, ...] = (
    RunStatus.ROLLED_BACK,
    Outcome.NOTHING_TO_ROLL_BACK,
    RunStatus.CANCELLED,
)


def render_runs(o: Opts, data: RunsOut) -> list[str]:
    """One line per run, newest first; columns as wide as their longest value (a long playbook
    name never runs into the actor)."""
    runs = data.runs
    if not runs:
        return ["no run yet"]
    pw = max((len(str(r.playbook)) for r in runs), default=0) + 2
    aw = max((len(str(r.actor)) for r in runs), default=0) + 2
    lines = []
    for r in runs:
        status = str(r.status)
        color = (
            "green"
            if status in (RunStatus.DONE, RunStatus.ROLLED_BACK)
            else "yellow"
            if status in OPEN
            else "red"
        )
        lines.append(
            f"{r.run_id}  "
            + style(o, f"{status:<18}", fg=color)
            + f"{r.playbook:<{max(pw, 22)}}{r.actor:<{max(aw, 10)}}"
            + f"{when(r.created_at):<24}"
            + ", ".join(r.sites)
            + ("  [break-glass]" if r.break_glass else "")
        )
    return lines


def render_run(o: Opts, run: RunView) -> str:
    status = str(run.status)
    lines = [
        style(o, f"run {run.run_id}  {run.playbook} ({run.level})  {status}", bold=True),
        f"  sites: {', '.join(run.sites)}",
        f"  by {run.actor}, started {when(run.created_at)}"
        + (f", finished {when(run.finished_at)}" if run.finished_at else ""),
    ]
    if run.reason:
        lines.append(f"  reason: {run.reason}")
    if run.break_glass:
        lines.append(style(o, "  break-glass: flagged for review", fg="yellow"))
    if status in OPEN:
        lines.append(style(o, f"  {waiting_text(run)}", fg="yellow"))
    if run.detail:
        lines.append(f"  detail: {run.detail}")
    lines.append(f"  steps {run.steps_done}/{run.steps_total}:")
    for s in run.steps:
        lines.append(
            f"    {s.seq:>3}  {s.site}  {s.step}  {s.device} ({s.method})  "
            + style(o, str(s.status), fg=STEP_COLOR.get(s.status))
            + (f"  {s.error}" if s.error else "")
        )
    if run.gates:
        lines.append("  gates:")
        for g in run.gates:
            detail = g.detail or {}
            extra = detail.get("reason") or detail.get("why") or ""
            if detail.get("kind") == "soak" and g.status == GateStatus.OPEN:
                extra = f"until {when(detail.get('until'))}, {detail.get('ticks', 0)} checks"
            if detail.get("kind") == "verify_flows":
                extra = _flow_counts(detail)
            lines.append(
                f"    {g.site}  {g.step}  "
                + style(o, str(g.status), fg=GATE_COLOR.get(g.status) or None)
                + (f"  {extra}" if extra else "")
            )
    lines += flow_lines(o, run)
    for a in run.attestations:
        lines.append(f"  attested: {a.site}/{a.zone} by {a.actor}: {a.reason}")
    approval = run.approval
    if approval is not None:
        lines.append(
            f"  approved by {approval.actor} {when(approval.at)}"
            + (f": {approval.reason}" if approval.reason else "")
        )
    return "\n".join(lines)


def _flow_counts(detail: dict[str, Any]) -> str:
    c = detail.get("counts") or {}
    sources = ", ".join(detail.get("sources") or []) or "none"
    return (
        f"flows: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
        f"{c.get('unverified', 0)} unverified (sources: {sources})"
    )


def flow_lines(o: Opts, run: RunView) -> list[str]:
    """The run's flow verdicts that need saying: each failed flow (the sources that saw it
    otherwise), each flow no source could check (unverified: never shown as passed)."""
    failed: list[str] = []
    unverified: list[str] = []
    for g in run.gates:
        detail = g.detail or {}
        failed += [str(p) for p in detail.get("problems") or [] if str(p) not in failed]
        unverified += [str(u) for u in detail.get("unverified") or [] if str(u) not in unverified]
    lines = [style(o, f"  FAILED {p}", fg="red") for p in failed]
    if unverified:
        lines.append(
            style(
                o, f"  {len(unverified)} flow(s) UNVERIFIED (no source could check):", fg="yellow"
            )
        )
        lines += [f"    {u}" for u in unverified]
    return lines


def render_final(o: Opts, run: RunView) -> str:
    """A followed run's end: its status, how long it took, what to do next."""
    status = str(run.status)
    took = ""
    if run.finished_at is not None and run.created_at is not None:
        took = f" in {run.finished_at - run.created_at:.1f} s"
    verified = sum(s.status == StepStatus.VERIFIED for s in run.steps)
    head = style(
        o,
        f"run {run.run_id}: {status}{took} ({verified} of {run.steps_total} steps verified)",
        fg="green" if status == RunStatus.DONE else "red",
        bold=True,
    )
    lines = [head]
    if run.detail:
        lines.append(f"  {run.detail}")
    lines += flow_lines(o, run)
    rid = run.run_id
    hints: dict[str, str] = {
        RunStatus.FAILED: f"see `cordon show {rid}`; `cordon rollback {rid}` undoes what it did",
        RunStatus.ROLLED_BACK: f"a step failed and the whole run was undone: `cordon show {rid}`",
        RunStatus.PARTIAL: f"some sites keep their changes: `cordon show {rid}`, `cordon status`",
        RunStatus.REISOLATED: (
            f"a soak caught an anomaly and isolated the zone again: `cordon show {rid}`"
        ),
        RunStatus.EXPIRED: "no second operator approved in time: nothing was sent; run it again",
        RunStatus.ROLLBACK_FAILED: (
            f"an undo failed: devices in an unknown state, their sites stay held; "
            f"`cordon rollback {rid}` retries"
        ),
    }
    changed = any(
        s.status in (StepStatus.VERIFIED, StepStatus.FAILED, StepStatus.UNDO_FAILED)
        for s in run.steps
    )
    if status == RunStatus.FAILED and not changed:
        hints[status] = f"no device was changed; see `cordon show {rid}`"
    if status in hints:
        lines.append(f"  next: {hints[status]}")
    return "\n".join(lines)


def render_rollback(o: Opts, out: RollbackOut) -> list[str]:
    """Each undone step, then the run's status and, when an undo failed, what to do."""
    status = str(out.status)
    lines = [
        f"  {s.device}  {s.step}: " + style(o, s.status, fg=STEP_COLOR.get(s.status))
        for s in out.steps
    ]
    ok = status in ROLLED_BACK
    lines.append(
        style(
            o,
            f"run {out.run_id}: {status.replace('_', ' ')}",
            fg="green" if ok else "red",
            bold=True,
        )
    )
    if not ok:
        lines.append(f"  next: `cordon rollback {out.run_id}` retries the failed undos")
    return lines

"""Approvals (two-person rule): the approval step gate, the run-level approval a run started with
`needs_approval` waits for before anything is sent, and a second operator's approval itself
(refused for the run's own author). Imports the gate protocol, the run's context and model, the
journal's records, the statuses and the playbook models; records through the run's observer."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.engine.journal import RunRecord
from agent.errors import ApprovalError
from agent.playbook.models import Approval, Step
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Stopped, Verdict, Waiting
from agent.run.model import RunOptions, RunReport, clock
from agent.status import OPEN, GateStatus, RunStatus


class ApprovalGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        assert isinstance(step, Approval)
        ctx, run_id, now = run.ctx, run.run_id, time.time()
        gate = ctx.journal.gate(run_id, site, step.name)
        if gate is None:
            wake = now + step.timeout_seconds
            ctx.obs.gate(
                run_id, site, step.name, GateStatus.OPEN, wake_at=wake, detail={"kind": "approval"}
            )
            gate = ctx.journal.gate(run_id, site, step.name)
            assert gate is not None
        if ctx.journal.approval(run_id, step.name) is not None:
            ctx.obs.gate(run_id, site, step.name, GateStatus.PASSED, detail={"kind": "approval"})
            return Passed()
        if gate.wake_at is not None and now >= gate.wake_at:
            proceed = step.on_timeout == "proceed"
            reason = (
                "timed out; the playbook says proceed"
                if proceed
                else f"no approval within {step.timeout_seconds:g} s"
            )
            ctx.obs.approval_timed_out(run_id, site, step.name, proceed=proceed, reason=reason)
            return Passed() if proceed else Stopped(reason)
        return Waiting(f"{site}: {step.name}: approval by a second operator", gate.wake_at)


def run_approval(
    ctx: Context,
    run_id: str,
    info: RunRecord,
    opts: RunOptions,
    on_approved: Callable[[], None],
) -> RunReport | None:
    """Two-person rule on a whole run: None once a second operator approved (`on_approved` has
    then taken the sites), else the waiting report (or the expired run's final one: nothing was
    sent, the outcome is declared)."""
    approved = ctx.journal.approval(run_id)
    if approved is not None:
        ctx.obs.run_approved_to_go(run_id)
        on_approved()
        return None
    deadline = info.created_at + opts.approval_timeout
    if time.time() < deadline:
        why = f"approval by a second operator until {clock(deadline)}"
        ctx.obs.run_waiting(run_id, RunStatus.AWAITING_APPROVAL, why)
        return RunReport(run_id, RunStatus.AWAITING_APPROVAL, wake_at=deadline, waiting=why)
    detail = f"no second operator approved within {opts.approval_timeout:g} s: nothing was sent"
    ctx.obs.run_expired(run_id, detail)
    return RunReport(run_id, RunStatus.EXPIRED, waiting=None)


def approve(
    ctx: Context,
    run_id: str,
    actor: str,
    reason: str | None,
    proceed: Callable[[str], object],
) -> str:
    """A second operator approves the run (or its open approval step). Refused for the run's own
    author, a run that waits for no approval, or one that expired (`proceed` declares it)."""
    info = ctx.journal.run(run_id)
    if info.status not in OPEN:
        raise ApprovalError(
            f"run {run_id} is {info.status}: there is nothing to approve",
            hint="start the playbook again if it is still needed",
        )
    if actor == info.actor:
        raise ApprovalError(
            f"{actor} started run {run_id} and cannot approve it (two-person rule)",
            hint="a second operator runs `cordon approve " + run_id + "`",
        )
    step = ""
    if info.status != RunStatus.AWAITING_APPROVAL:
        open_steps = [
            g.step
            for g in ctx.journal.gates(run_id)
            if g.status == GateStatus.OPEN and g.detail.get("kind") == "approval"
        ]
        if not open_steps:
            raise ApprovalError(f"run {run_id} is not waiting for an approval")
        step = open_steps[0]
    else:
        opts = RunOptions.from_dict(info.options)
        if time.time() >= info.created_at + opts.approval_timeout:
            proceed(run_id)  # declares the expiry
            raise ApprovalError(f"run {run_id}: the approval window has closed (expired)")
    ctx.obs.approved(run_id, step, actor, reason, author=info.actor)
    return step or "run"

"""The verify_flows gate: each of a site's declared flows (or only its must-survive ones) checked
by every injected flow source (`agent.verify.check`): its expectation from the recorded device
states, every source's evidence combined into one verdict per flow, failed flows asked again until
they settle. Journaled and audited per flow (which sources confirmed it, which contradicted it);
the failed flows are the run's flow problems; the flows no source could check are reported
unverified (never passed, never problems). With no source, every flow is unverified.

Imports the gate protocol, the run's context, the playbook models, the journal's flow-check row
and `agent.verify`; never the twin (the sources are injected)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent.engine.journal import FlowCheck, StepRow
from agent.inventory.models import Flow
from agent.network.state import NORMAL
from agent.playbook.models import Step, VerifyFlows
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Verdict
from agent.run.transaction import merge_onto, merged
from agent.status import StepStatus
from agent.verify.check import (
    CHANGES_POLL_S,
    Landing,
    Outcome,
    check_flows,
    result_dict,
    site_flows,
    unverified_line,
)


class VerifyGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        ctx = run.ctx
        only = None
        if isinstance(step, VerifyFlows) and step.must_survive_only:
            only = {f.name for f in site_flows(ctx.inv, site) if f.must_survive}
        flows = site_flows(ctx.inv, site, only)
        out = check_flows(
            ctx.inv,
            ctx.sources,
            site,
            flows,
            ctx.journal.device_states,
            in_flight=lambda: landings(ctx),
            changes=ctx.journal,
            poll=CHANGES_POLL_S,
            coming=lambda: coming(ctx, run.run_id),
        )
        detail = gate_detail(ctx, flows, out)
        if only is not None:
            detail["scope"] = f"must-survive flows only ({len(only)})"
        record(ctx, run.run_id, site, step.name, flows, out, gate=detail)
        return Passed(tuple(detail["problems"]))


def landings(ctx: Context) -> dict[str, str | Landing]:
    """Each device an open run is changing, with where its step lands: the device's recorded
    state once the step settles as intended (its target, or an undo's: its start), merged into
    the state recorded now as the step will be. Two steps in flight on one device: the landing
    is not known (the flows crossing it wait)."""
    by_device: dict[str, list[StepRow]] = {}
    for row in ctx.journal.steps_in_flight():
        by_device.setdefault(row.device, []).append(row)
    out: dict[str, str | Landing] = {}
    for device, rows in by_device.items():
        r = rows[0]
        why = f"run {r.run_id} step {r.seq} ({r.step})"
        if len(rows) > 1:
            out[device] = Landing(why)
            continue
        target = r.before if r.status == StepStatus.UNDOING else r.after
        out[device] = Landing(why, merged(ctx, device, r.method, target))
    return out


def coming(ctx: Context, run_id: str) -> dict[str, str | Landing]:
    """Each device another running run is about to send its next step to (the step it has yet
    to start), with where it lands: the state recorded now with that run's step in flight on
    the device (if any) and then that next step merged in. The gate's own run is left out (its
    next steps wait for this gate); next steps of two runs on one device: not known."""
    flight = [r for r in ctx.journal.steps_in_flight() if r.run_id != run_id]
    nexts: dict[tuple[str, str], StepRow] = {}
    for row in ctx.journal.steps_coming():
        if row.run_id != run_id:
            nexts.setdefault((row.run_id, row.device), row)
    by_device: dict[str, list[StepRow]] = {}
    for row in nexts.values():
        by_device.setdefault(row.device, []).append(row)
    out: dict[str, str | Landing] = {}
    for device, rows in by_device.items():
        r = rows[0]
        why = f"run {r.run_id} step {r.seq} ({r.step})"
        if len(rows) > 1:
            out[device] = Landing(why)
            continue
        state = ctx.journal.device_state(device) or NORMAL
        for f in flight:
            if f.run_id == r.run_id and f.device == device:
                target = f.before if f.status == StepStatus.UNDOING else f.after
                state = merge_onto(state, f.method, target)
        out[device] = Landing(why, merge_onto(state, r.method, r.after))
    return out


def gate_detail(ctx: Context, flows: Sequence[Flow], out: Outcome) -> dict[str, Any]:
    """What the gate journals: the problems (failed flows, the run's flow problems), the
    unverified flows (said), the sources asked and those that could not run, every verdict."""
    must = {f.name for f in flows if f.must_survive}
    return {
        "kind": "verify_flows",
        "problems": out.problems(),
        "unverified": [unverified_line(r) for r in out.unverified()],
        "sources": [s.name for s in ctx.sources],
        "source_errors": dict(out.source_errors),
        "waits": list(out.waits),
        "counts": {
            "passed": len(out.results) - len(out.failed()) - len(out.unverified()),
            "failed": len(out.failed()),
            "unverified": len(out.unverified()),
        },
        "flows": [result_dict(r, r.flow in must) for r in out.results],
    }


def record(
    ctx: Context,
    run_id: str,
    site: str,
    step: str,
    flows: Sequence[Flow],
    out: Outcome,
    *,
    gate: dict[str, Any] | None = None,
    audit_passed: bool = True,
) -> None:
    """Each flow's verdict journaled and audited (a soak's later ticks audit only the flows
    not passed: `audit_passed` False), with the gate's `detail` when given."""
    must = {f.name for f in flows if f.must_survive}
    now = time.time()
    checks = [
        FlowCheck(
            run_id,
            site,
            step,
            r.flow,
            r.flow in must,
            r.expected,
            r.status.value,
            r.confirmed_by,
            r.contradicted_by,
            now,
        )
        for r in out.results
    ]
    ctx.obs.flows_checked(run_id, site, step, checks, gate=gate, audit_passed=audit_passed)


def flows_unverified(ctx: Context, run_id: str) -> list[str]:
    """Every flow a verify step of the run could not check (from its gates), each once."""
    out: list[str] = []
    for g in ctx.journal.gates(run_id):
        lines = g.detail.get("unverified")
        if isinstance(lines, list):
            out += [str(line) for line in lines if str(line) not in out]
    return out

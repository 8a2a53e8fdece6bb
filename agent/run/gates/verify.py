"""The verify_flows gate: each of a site's declared flows (or only its must-survive ones) checked
by every injected flow source (`agent.verify.check`): its expectation from the recorded device
states, every source's evidence combined into one verdict per flow, failed flows asked again until
they settle. Journaled and audited per flow (which sources confirmed it, which contradicted it);
the failed flows are the run's flow problems; the flows no source could check are reported
unverified (never passed, never problems). With no source, every flow is unverified.

Imports the gate protocol, the run's context, the playbook models, the journal's rows, the
reconnect preconditions' gate name and `agent.verify`; never the twin (the sources are
injected)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from agent.engine.journal import FlowCheck, StepRow
from agent.inventory.models import Flow
from agent.network.state import NORMAL, DeviceState
from agent.playbook.models import CHANGE_ACTIONS, Playbook, ReconnectZone, Step, VerifyFlows
from agent.run.context import Context
from agent.run.gates.attest import preconditions_key
from agent.run.gates.base import GateRun, Passed, Verdict
from agent.run.transaction import merge_onto
from agent.status import GATE_FINAL_OK, GATE_STOPS, GateStatus, StepStatus
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
    states = ctx.journal.device_states()  # one (cached) read, not one per device

    def land(r: StepRow) -> DeviceState:
        target = r.before if r.status == StepStatus.UNDOING else r.after
        return merge_onto(states.get(r.device) or NORMAL, r.method, target)

    return _per_device(ctx.journal.steps_in_flight(), land)


def _per_device(
    rows: Sequence[StepRow], land: Callable[[StepRow], DeviceState]
) -> dict[str, str | Landing]:
    """Each device of `rows` with where its row lands (`land`), named by the row; two rows on
    one device: the landing is not known."""
    by_device: dict[str, list[StepRow]] = {}
    for row in rows:
        by_device.setdefault(row.device, []).append(row)
    out: dict[str, str | Landing] = {}
    for device, some in by_device.items():
        r = some[0]
        why = f"run {r.run_id} step {r.seq} ({r.step})"
        out[device] = Landing(why) if len(some) > 1 else Landing(why, land(r))
    return out


def coming(ctx: Context, run_id: str) -> dict[str, str | Landing]:
    """Each device another running run is about to send a step to, with where it lands: the
    state recorded now with that run's step in flight on the device (if any) and then the step
    merged in. Counted per run only what `next_rows` says it sends next (the next device step of
    each site its ordering walks now, when no gate stands before it), never a step queued behind
    a gate (a verify, a soak, a wait, an approval: seconds to minutes away). The gate's own run is
    left out (its next steps wait for this gate), and so is a run asked to stop or whose playbook
    the journal cannot give; a device two next steps are about to change: not known. Only ever
    decides whether a first round waits before asking, never a verdict."""
    flight = [r for r in ctx.journal.steps_in_flight() if r.run_id != run_id]
    nexts: list[StepRow] = []
    for other in ctx.journal.runs_coming(but=run_id):
        if other.stop_requested:
            continue
        pb = _playbook(other.playbook_json)
        if pb is None:
            continue
        nexts += next_rows(pb, other.sites, other.steps, other.gates)
    states = ctx.journal.device_states() if nexts else {}

    def land(r: StepRow) -> DeviceState:
        state = states.get(r.device) or NORMAL
        for f in flight:
            if f.run_id == r.run_id and f.device == r.device:
                target = f.before if f.status == StepStatus.UNDOING else f.after
                state = merge_onto(state, f.method, target)
        return merge_onto(state, r.method, r.after)

    return _per_device(nexts, land)


@lru_cache(maxsize=32)
def _playbook(text: str | None) -> Playbook | None:
    """A run's playbook as journaled (None: not journaled, or no longer readable)."""
    if text is None:
        return None
    try:
        return Playbook.model_validate_json(text)
    except ValidationError:
        return None


def next_rows(
    pb: Playbook,
    sites: Sequence[str],
    rows: Sequence[StepRow],
    gates: Mapping[tuple[str, str], GateStatus],
) -> list[StepRow]:
    """The step rows a run (its playbook, sites, every step row and each gate's status by
    (site, step), as journaled) sends next, as its walk does (`agent.run.walk`,
    `agent.run.strategies`): at each site it walks now, the first playbook step with rows
    still pending there (a step in flight is passed: the next is sent once it settles), when no
    gate stands before it: its first pending row on each of its devices (one step's rows are
    sent back to back, nothing between them). Nothing from a site whose first step not done is
    a gate (open or not yet reached: the journal has no row for a gate before its check
    records one, so one in progress counts), a reconnect step whose preconditions have not
    passed, or a site with a failed or undone row (it stops or rolls back). The sites walked
    now: every site (`parallel`); the first site not done (`serial`); the sites at the
    earliest step not done (`waves`); with `serial` or `waves`, nothing while a site is
    stopped."""
    at: dict[str, tuple[int, list[StepRow]] | None] = {
        site: _site_next(pb, site, [r for r in rows if r.site == site], gates) for site in sites
    }
    if pb.order == "parallel":
        return [r for found in at.values() if found is not None for r in found[1]]
    if any(found is None for found in at.values()):
        return []
    walked = [found for found in at.values() if found is not None and found[0] < len(pb.steps)]
    if not walked:
        return []
    if pb.order == "serial":
        return walked[0][1]
    first = min(i for i, _ in walked)
    return [r for i, some in walked if i == first for r in some]


def _site_next(
    pb: Playbook, site: str, rows: Sequence[StepRow], gates: Mapping[tuple[str, str], GateStatus]
) -> tuple[int, list[StepRow]] | None:
    """At one site: the index of the first playbook step not done (a gate not passed, or a
    device step with pending rows; `len(pb.steps)`: none) and the rows it sends next (none when
    a gate stands first); None: the site is stopped."""
    if any(r.status in _STOPPED_ROWS for r in rows) or any(
        s in GATE_STOPS for (where, _), s in gates.items() if where == site
    ):
        return None
    for i, step in enumerate(pb.steps):
        if step.action not in CHANGE_ACTIONS:
            if gates.get((site, step.name)) in GATE_FINAL_OK:
                continue
            return i, []
        mine = [r for r in rows if r.step == step.name]
        waiting = [r for r in mine if r.status == StepStatus.PENDING]
        if not waiting:  # done, or in flight: what follows is sent once it settles
            continue
        if (
            isinstance(step, ReconnectZone)
            and gates.get((site, preconditions_key(step.name))) != GateStatus.PASSED
        ):
            return i, []  # its preconditions (attestations, baselines) stand before it
        firsts: dict[str, StepRow] = {}
        for r in waiting:
            firsts.setdefault(r.device, r)
        return i, sorted(firsts.values(), key=lambda r: r.seq)
    return len(pb.steps), []


_STOPPED_ROWS = frozenset(
    {StepStatus.FAILED, StepStatus.UNDOING, StepStatus.UNDONE, StepStatus.UNDO_FAILED}
)


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

"""Recovery: undo (a site's failure policy, a soak with no zone to blame, a rollback), rollback of
a whole run or one device, resume after a crash (each in-flight step settled by reading its
device), and the settling of a run's outcome: its final status and each site's mode from what
is recorded on its devices. Imports the run's context, model and transaction, the platform
registry (how a method reaches its device), the journal and audit; no gate, walk or strategy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from agent import audit
from agent.engine.journal import StepRow, driver_alive
from agent.errors import (
    AuditArmed,
    ConnectError,
    CordonError,
    DeviceError,
    FencedError,
    RunError,
    StateLostError,
)
from agent.network.state import NORMAL
from agent.platforms import registry
from agent.run import transaction
from agent.run.context import Context, lock_for
from agent.run.model import RunReport, StepOutcome
from agent.status import IN_FLIGHT, OPEN, GateStatus, Outcome, RunStatus, SiteMode, StepStatus

# Rows an undo may act on: changed, possibly changed, or a failed earlier undo to retry.
UNDOABLE = frozenset(
    {
        StepStatus.VERIFIED,
        StepStatus.APPLIED,
        StepStatus.STARTED,
        StepStatus.FAILED,
        StepStatus.UNDOING,
        StepStatus.UNDO_FAILED,
    }
)


# -- undo -----------------------------------------------------------------------------------------


def undo_rows(ctx: Context, rows: Sequence[StepRow]) -> list[StepOutcome]:
    """Undo applied steps: sites in parallel, newest first within a site, each verified back to
    its `before` state; reopening fails closed (see `transaction.guarded`)."""
    todo = [r for r in rows if r.status in UNDOABLE]
    by_site: dict[str, list[StepRow]] = {}
    for row in sorted(todo, key=lambda r: r.seq, reverse=True):
        by_site.setdefault(row.site, []).append(row)
    run_id = todo[0].run_id if todo else ""

    def site(rows_of_site: list[StepRow]) -> list[StepOutcome]:
        with audit.bind(run_id=run_id, actor=ctx.actor, site=rows_of_site[0].site):
            return [undo_one(ctx, r) for r in rows_of_site]

    with ThreadPoolExecutor(max_workers=16) as pool:
        return [o for outs in pool.map(site, by_site.values()) for o in outs]


def undo_one(ctx: Context, row: StepRow) -> StepOutcome:
    t = time.perf_counter()
    outcome = StepOutcome(row.seq, row.site, row.step, row.device, row.method, StepStatus.UNDONE)
    transaction.before_send(ctx, row, forward=False)
    ctx.obs.step_marked(row, StepStatus.UNDOING)  # resume settles it if we crash
    try:
        if not transaction.shows(ctx, row, row.after, row.before):  # a rejected step sent nothing
            transaction.guarded(
                ctx,
                row,
                row.undo,
                row.after,
                row.before,
                revert=row.commands,
                guard=not row.guard_apply,
                action=f"undo {row.step}",
            )
    except (StateLostError, FencedError, AuditArmed):
        # the state database went away, this node's term ended, or the trail failed with an
        # on-device revert armed: the device is not known to have failed; nothing more is sent
        # and the step stays undoing for `resume` (the active node's) to read, as forward
        raise
    except CordonError as exc:
        outcome.status, outcome.error = StepStatus.UNDO_FAILED, exc.message
        ctx.obs.step_marked(row, StepStatus.UNDO_FAILED, exc.message)
    else:
        state = transaction.merged(ctx, row.device, row.method, row.before)
        ctx.obs.step_settled(row, StepStatus.UNDONE, state)
    outcome.duration_s = time.perf_counter() - t
    ctx.obs.undo_done(row, outcome.status)
    return outcome


# -- the outcome of a run -------------------------------------------------------------------------


def final_status(ctx: Context, run_id: str) -> RunStatus:
    """done; failed (something failed, nothing undone); reisolated (a soak caught a zone,
    re-isolated it and stopped); expired (an approval never came); rolled_back (all changes
    undone); partial (some sites keep their changes after others were undone);
    rollback_failed."""
    rows = ctx.journal.steps(run_id)
    gates = ctx.journal.gates(run_id)
    if any(r.status == StepStatus.UNDO_FAILED for r in rows):
        return RunStatus.ROLLBACK_FAILED
    if any(g.status == GateStatus.REISOLATED for g in gates):
        return RunStatus.REISOLATED
    if any(g.status == GateStatus.EXPIRED for g in gates):
        return RunStatus.EXPIRED
    failed = (
        any(r.status == StepStatus.FAILED for r in rows)
        or any(g.status == GateStatus.FAILED for g in gates)
        or bool(flow_problems(ctx, run_id))
    )
    if not any(r.status == StepStatus.UNDONE for r in rows):
        return RunStatus.FAILED if failed else RunStatus.DONE
    left = [r for r in rows if r.status in (StepStatus.VERIFIED, StepStatus.APPLIED)]
    return RunStatus.PARTIAL if left else RunStatus.ROLLED_BACK


def flow_problems(ctx: Context, run_id: str) -> list[str]:
    out: list[str] = []
    for g in ctx.journal.gates(run_id):
        problems = g.detail.get("problems")
        if isinstance(problems, list):
            out += [str(p) for p in problems]
    return out


def settle_sites(
    ctx: Context,
    sites: Sequence[str],
    level: str,
    run_id: str,
    status: RunStatus = RunStatus.DONE,
) -> None:
    """Each site's mode from what is recorded on its devices now. After a recovery run (L0)
    with isolation left (remote access, segmentation...), the site is `reconnected` at its
    former level; a soak that re-isolated a zone leaves it `isolated`."""
    states = ctx.journal.device_states()
    known = ctx.journal.sites()
    for name in sites:
        site = ctx.inv.site(name)
        isolated = site is not None and any(
            states.get(d.name, NORMAL) != NORMAL for d in site.devices
        )
        mode, lvl = (SiteMode.ISOLATED, level) if isolated else (SiteMode.NORMAL, None)
        if isolated and level == "L0":
            # a recovery run that ended done leaves the site reconnected (with what it keeps
            # cut); failed, re-isolated or rolled back, the devices are isolated
            lvl = known[name].level if name in known else None
            mode = SiteMode.RECONNECTED if status == RunStatus.DONE else SiteMode.ISOLATED
        ctx.obs.site_mode_set(name, mode, lvl, run_id, ctx.actor)


# -- rollback -------------------------------------------------------------------------------------


def rollback(ctx: Context, run_id: str, device: str | None = None) -> RunReport:
    """Restore the pre-run state of every device (or one) the run changed. Idempotent; a failed
    undo is retried by the next rollback. Refused if a later run changed a device since (roll
    that one back first), or if another run holds one of the sites."""
    if device is None and ctx.journal.run(run_id).status in OPEN:
        _stop_driver(ctx, run_id)
    with lock_for(run_id):
        return _rollback(ctx, run_id, device)


def _stop_driver(ctx: Context, run_id: str) -> None:
    """A rollback of an open run: ask whoever drives it to stop at its next step boundary and
    wait until it has (bounded), so the run sends nothing after the undo. Refused ("run in
    progress") if it does not stop in time: nothing is rolled back."""
    ctx.obs.stop_ordered(run_id, f"a rollback was ordered by {ctx.actor}")
    driver = ctx.journal.run(run_id).driver
    if not driver_alive(driver) or driver.get("pid") == os.getpid():
        return  # nobody else drives it (in this process: the run lock serialises)
    ctx.obs.say(f"run {run_id} is driven by process {driver.get('pid')}: asking it to stop")
    deadline = time.monotonic() + ctx.stop_wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        info = ctx.journal.run(run_id)
        if info.status not in OPEN or not driver_alive(info.driver):
            return
    raise RunError(
        f"run {run_id} is in progress: process {driver.get('pid')} drives it and did not "
        f"stop at a step boundary within {ctx.stop_wait:g} s; nothing was rolled back",
        hint=f"it stops before its next step; then `cordon rollback {run_id}` again",
    )


def _rollback(ctx: Context, run_id: str, device: str | None) -> RunReport:
    info = ctx.journal.run(run_id)
    rows = [r for r in ctx.journal.steps(run_id) if device is None or r.device == device]
    todo = [r for r in rows if r.status in UNDOABLE]
    if not todo and device is None and info.status in OPEN:
        # an open run that changed nothing yet (awaiting approval, waiting for an attestation):
        # rolling it back cancels it and frees its sites
        with audit.bind(run_id=run_id, actor=ctx.actor):
            ctx.obs.run_cancelled(run_id, ctx.actor)
        return RunReport(run_id, RunStatus.CANCELLED)
    if not todo:
        return RunReport(run_id, Outcome.NOTHING_TO_ROLL_BACK)
    recorded, writers = ctx.journal.device_states(), ctx.journal.device_writers()
    for dev in sorted({r.device for r in todo}):
        newest = max((r for r in todo if r.device == dev), key=lambda r: r.seq)
        if recorded.get(dev, NORMAL) not in (newest.after, newest.before):
            other = writers.get(dev, "another run")
            raise RunError(
                f"cannot roll back {run_id}: {dev} was changed since by run {other}",
                hint=f"roll back {other} first (newest first)",
            )
    sites = sorted({r.site for r in todo})
    with audit.bind(run_id=run_id, actor=ctx.actor):
        ctx.obs.rollback_started(
            run_id, sites, info.level, ctx.actor, device=device, steps=len(todo)
        )
        outcomes = undo_rows(ctx, todo)
    failed = any(o.status != StepStatus.UNDONE for o in outcomes)
    status = RunStatus.ROLLBACK_FAILED if failed else RunStatus.ROLLED_BACK
    settle_sites(ctx, sites, info.level, run_id, status)
    if device is None or info.status != RunStatus.RUNNING:
        final = status if device is None else info.status
        ctx.obs.run_rolled_back(run_id, final, release=not failed)
    return RunReport(run_id, status, outcomes)


# -- resume ---------------------------------------------------------------------------------------


def resume(
    ctx: Context, run_id: str, go_on: Callable[[str], RunReport], *, roll_back: bool = False
) -> RunReport:
    """After a crash or a restart: settle every in-flight step by reading its device, then take
    the run on with `go_on` (the executor's drive or proceed), or roll it back. A device that
    cannot be read keeps the run open (and its sites locked): nothing is guessed."""
    t0 = time.perf_counter()
    info = ctx.journal.run(run_id)
    if info.status not in OPEN:
        return _resume_final(ctx, run_id, roll_back=roll_back, t0=t0)
    outcomes: list[StepOutcome] = []
    with lock_for(run_id), audit.bind(run_id=run_id, actor=ctx.actor):
        ctx.obs.driver_claimed(run_id)
        ctx.obs.stop_cleared(run_id)  # an operator's order to go on
        for row in ctx.journal.steps(run_id):
            if row.status in IN_FLIGHT or row.status == StepStatus.UNDOING:
                outcomes.append(settle(ctx, row))
        ctx.obs.run_resumed(len(outcomes), roll_back)
        if roll_back:
            outcomes += undo_rows(ctx, ctx.journal.steps(run_id))
            status = final_status(ctx, run_id)
            if status == RunStatus.DONE and any(
                r.status == StepStatus.PENDING for r in ctx.journal.steps(run_id)
            ):
                status = RunStatus.ROLLED_BACK
            settle_sites(ctx, info.sites, info.level, run_id, status)
            ctx.obs.run_rolled_back(
                run_id,
                status,
                "resumed, rolled back",
                release=status != RunStatus.ROLLBACK_FAILED,
            )
            return RunReport(run_id, status, outcomes, duration_s=time.perf_counter() - t0)
    report = go_on(run_id)
    report.outcomes = sorted(outcomes + report.outcomes, key=lambda o: o.seq)
    report.duration_s = time.perf_counter() - t0
    return report


def _resume_final(ctx: Context, run_id: str, *, roll_back: bool, t0: float) -> RunReport:
    """A final run whose rollback was cut short (a crash mid-undo): steps left in flight
    (`undoing`) and its sites still held. Each such step is settled from what its device shows
    (undone, or still changed), the run's status follows the steps, the sites' modes follow
    their devices' recorded states and the sites are released; with `roll_back`, the rollback
    is then finished. Nothing in flight and no site held: `already <status>`, nothing done."""
    info = ctx.journal.run(run_id)
    held = sorted(s for s, r in ctx.journal.locks().items() if r == run_id)
    loose = [r for r in ctx.journal.steps(run_id) if r.status in IN_FLIGHT | {StepStatus.UNDOING}]
    if not loose and not held:
        return RunReport(run_id, f"already {info.status}")
    with lock_for(run_id), audit.bind(run_id=run_id, actor=ctx.actor):
        ctx.obs.say(
            f"run {run_id} is {info.status} but a rollback of it was cut short: "
            f"{len(loose)} step(s) in flight, site(s) held: {', '.join(held) or 'none'}"
        )
        outcomes = [settle(ctx, row) for row in loose]  # a device unread: raises, all kept
        ctx.obs.run_resumed(len(outcomes), roll_back)
        rows = ctx.journal.steps(run_id)
        if any(r.status == StepStatus.UNDO_FAILED for r in rows):
            status = RunStatus.ROLLBACK_FAILED
        elif any(r.status == StepStatus.UNDONE for r in rows) and not any(
            r.status in (StepStatus.VERIFIED, StepStatus.APPLIED) for r in rows
        ):
            status = RunStatus.ROLLED_BACK
        else:  # nothing undone, or the rollback stopped half way (`cordon rollback` goes on)
            status = info.status
        sites = sorted(set(held) | {r.site for r in loose})
        settle_sites(ctx, sites, info.level, run_id, status)
        left = sum(r.status in (StepStatus.VERIFIED, StepStatus.APPLIED) for r in rows)
        detail = f"resumed: a rollback cut short was settled from the devices ({left} left)"
        ctx.obs.run_rolled_back(run_id, status, detail, release=status != RunStatus.ROLLBACK_FAILED)
    if roll_back and left:
        report = rollback(ctx, run_id)
        report.outcomes = sorted(outcomes + report.outcomes, key=lambda o: o.seq)
    else:
        report = RunReport(run_id, status, outcomes)
        if left and any(r.status == StepStatus.UNDONE for r in rows):
            ctx.obs.say(
                f"run {run_id}: {left} step(s) keep their change: `cordon rollback {run_id}` "
                "finishes the rollback"
            )
    report.duration_s = time.perf_counter() - t0
    return report


def settle(ctx: Context, row: StepRow) -> StepOutcome:
    """An in-flight step: is the device in its after state, its before state, or neither?"""
    how = registry.via(row.method)
    unreachable = 0
    for target, found in ((row.after, StepStatus.VERIFIED), (row.before, StepStatus.PENDING)):
        other = row.before if target is row.after else row.after
        try:
            ctx.pool.run(
                row.device,
                transaction.verifier(
                    transaction.expectation(row.method, other, target), "resume.check", timeout=2.0
                ),
                via=how,
            )
        except ConnectError:
            unreachable += 1
            continue
        except DeviceError:
            continue
        status = found
        if row.status == StepStatus.UNDOING:
            status = StepStatus.UNDONE if found == StepStatus.PENDING else StepStatus.VERIFIED
        ctx.obs.step_settled(row, status, transaction.merged(ctx, row.device, row.method, target))
        return StepOutcome(row.seq, row.site, row.step, row.device, row.method, f"settled:{status}")
    if unreachable:
        raise RunError(
            f"resume {row.run_id}: {row.device} cannot be reached; its step "
            f"{row.step} stays in flight and the run stays open",
            hint="restore the management path, then resume again",
        )
    # reachable but in neither state: push the step's target again (loads are atomic)
    return undo_one(ctx, row) if row.status == StepStatus.UNDOING else transaction.apply(ctx, row)

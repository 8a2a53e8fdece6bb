"""One site's walk through its steps during one `proceed`: device steps applied through the
transaction (stop, continue or roll back on failure as the step's or the playbook's policy
says, within the site's failure budget), gates checked through their protocol. Re-entrant: the
journal says what is done. Imports the run's context, model, gates, transaction and recovery,
the journal, audit (context binding) and the playbook models; no strategy or executor."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent import audit
from agent.engine.journal import StepRow
from agent.errors import CordonError, RunError
from agent.playbook.models import CHANGE_ACTIONS, ReconnectZone, Step
from agent.run import recovery, transaction
from agent.run.context import Context
from agent.run.gates import GATES, PRECONDITIONS
from agent.run.gates.backup import take_backup
from agent.run.gates.base import GateRun, Passed, Verdict, Waiting
from agent.run.model import StepOutcome
from agent.status import GATE_FINAL_OK, GATE_STOPS, IN_FLIGHT, StepStatus


@dataclass
class Walk:
    """What one site's walk came to during one `proceed`."""

    outcomes: list[StepOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    waiting: str | None = None
    wake_at: float | None = None
    stopped: bool = False

    def wait(self, why: str, wake_at: float | None) -> Walk:
        self.waiting, self.wake_at = why, wake_at
        return self

    def stop(self) -> Walk:
        self.stopped = True
        return self

    def heed(self, verdict: Verdict) -> bool:
        """Take a gate's verdict; True to go on to the next step."""
        if isinstance(verdict, Passed):
            self.problems += verdict.problems
            return True
        if isinstance(verdict, Waiting):
            self.wait(verdict.why, verdict.until)
        else:
            self.stop()
        return False


def walk_site(run: GateRun, site: str, steps: Sequence[Step]) -> Walk:
    """Walk `site`'s steps in order from the start, skipping what the journal says is done:
    apply pending device steps, pass or wait at gates."""
    ctx, run_id = run.ctx, run.run_id
    walk = Walk()
    failures = [0]  # device steps failed so far at this site (the failure budget)
    # a worker thread does not inherit the caller's audit context: bind it again
    with audit.bind(run_id=run_id, actor=ctx.journal.run(run_id).actor, site=site):
        for step in steps:
            ctx.check_stop(run_id, f"{site}: {step.name}")
            if step.action in CHANGE_ACTIONS:
                if not _walk_change(run, site, step, walk, failures):
                    return walk
                continue
            gate = ctx.journal.gate(run_id, site, step.name)
            if gate is not None and gate.status in GATE_FINAL_OK:
                continue
            if gate is not None and gate.status in GATE_STOPS:
                return walk.stop()
            kind = GATES.get(step.action)
            if kind is None:
                raise RunError(f"step {step.name!r}: no executor for action {step.action!r}")
            if not walk.heed(kind.check(run, site, step)):
                return walk
    return walk


def _walk_change(run: GateRun, site: str, step: Step, walk: Walk, failures: list[int]) -> bool:
    """A device step at `site`: apply its pending rows; False when the site stops here."""
    ctx, run_id, pb = run.ctx, run.run_id, run.pb
    policy = step.on_failure or pb.on_failure
    rows = ctx.journal.steps(run_id, site=site, step=step.name)  # this step's rows only
    pending = any(r.status == StepStatus.PENDING for r in rows)
    if (
        isinstance(step, ReconnectZone)
        and pending
        and not walk.heed(PRECONDITIONS.check(run, site, step))
    ):
        return False
    for row in rows:
        if row.status in IN_FLIGHT or row.status == StepStatus.UNDOING:
            raise RunError(
                f"run {run_id}: step {row.step} on {row.device} is in flight "
                "(the agent stopped mid-step)",
                hint=f"`cordon resume {run_id}` settles it by reading the device",
            )
    applied = _apply_pending(run, [r for r in rows if r.status == StepStatus.PENDING])
    for row in rows:
        if row.status in (StepStatus.UNDONE, StepStatus.UNDO_FAILED):
            walk.stop()
            return False
        if row.status == StepStatus.PENDING:
            outcome = applied[row.seq]
            walk.outcomes.append(outcome)
            if outcome.status != StepStatus.FAILED:
                continue
            if policy == "rollback":
                # everything this site changed, the failed step included (it may be half
                # applied), as the journal says now
                done = [r for r in ctx.journal.steps(run_id, site=site) if r.seq <= row.seq]
                walk.outcomes += recovery.undo_rows(ctx, done)
        elif row.status != StepStatus.FAILED:
            continue
        failures[0] += 1
        if policy != "continue" or failures[0] > pb.limits.failure_budget_per_site:
            walk.stop()
            return False
    return True


def _apply_pending(run: GateRun, rows: Sequence[StepRow]) -> dict[int, StepOutcome]:
    """Apply one step's pending rows at one site. With `limits.one_switch_at_a_time` (the
    default) one device at a time, each verified before the next starts: never both switches of
    a redundant pair in transition at once. Without it, the step's devices are changed in
    parallel (rows of one device still in order)."""
    ctx, run_id = run.ctx, run.run_id
    by_device: dict[str, list[StepRow]] = {}
    for row in rows:
        by_device.setdefault(row.device, []).append(row)
    if run.pb.limits.one_switch_at_a_time or len(by_device) < 2:
        return {r.seq: _backup_then_apply(ctx, run_id, r) for r in rows}
    actor = ctx.journal.run(run_id).actor
    site = rows[0].site

    def one_device(device_rows: list[StepRow]) -> list[StepOutcome]:
        with audit.bind(run_id=run_id, actor=actor, site=site):
            return [_backup_then_apply(ctx, run_id, r) for r in device_rows]

    with ThreadPoolExecutor(max_workers=min(len(by_device), 16)) as pool:
        outs = [o for group in pool.map(one_device, by_device.values()) for o in group]
    return {o.seq: o for o in outs}


def _backup_then_apply(ctx: Context, run_id: str, row: StepRow) -> StepOutcome:
    """A device's first change in a run is preceded by its backup: no backup, nothing sent."""
    if ctx.journal.backup(run_id, row.device) is None:
        try:
            take_backup(ctx, run_id, row.device)
        except CordonError as exc:
            error = f"backup before the first change failed, nothing sent: {exc.message}"
            ctx.obs.step_failed(row, error)
            return StepOutcome(
                row.seq, row.site, row.step, row.device, row.method, StepStatus.FAILED, error
            )
    return transaction.apply(ctx, row)

"""The executor: a run's lifecycle and the public API (plan, start, proceed, drive, run, approve,
attest, rollback, resume, scheduled backups). It starts a run with every step, takes the sites,
hands the walking to the playbook's ordering and declares the outcome, each recorded through the
run's observer (journal, audit, progress); the parts do the rest. Devices are touched only
through the drivers' pool; flows seen only through the injected sources. Imports the run's
parts, plan, the journal, audit (context binding), the drivers' pool, the inventory and playbook
models; never the daemon, the CLI or the twin."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from agent import audit, settings
from agent.drivers.base import Backup
from agent.drivers.pool import Pool
from agent.engine.journal import Journal, NewStep, RunRecord
from agent.engine.plan import Plan, plan, require_safe
from agent.errors import RunError, RunStopped
from agent.inventory.models import Inventory
from agent.playbook.models import OPENING_ACTIONS, Playbook, Step
from agent.run import recovery
from agent.run.context import Context, lock_for
from agent.run.gates import approval
from agent.run.gates.attest import attest, check_attest, record_attestation
from agent.run.gates.backup import take_after, take_backup
from agent.run.gates.base import GateRun
from agent.run.gates.verify import flows_unverified
from agent.run.model import Progress, RunOptions, RunReport, Sources, StepOutcome, new_run_id
from agent.run.observer import Observer
from agent.run.strategies import ORDERINGS
from agent.run.transaction import check_audit_space
from agent.run.walk import Walk, walk_site
from agent.status import GATE_STOPS, OPEN, Outcome, RunStatus, SiteMode, StepStatus


class Executor:
    def __init__(
        self,
        inv: Inventory,
        journal: Journal,
        pool: Pool,
        *,
        actor: str,
        sources: Sources = (),
        progress: Progress | None = None,
        pause: float | None = None,
    ) -> None:
        self.inv = inv
        self.journal = journal
        self.pool = pool
        self.actor = actor
        self.sources = tuple(sources)
        self.observer = Observer(journal, progress)
        config = settings.current()
        self.ctx = Context(
            inv,
            journal,
            pool,
            actor,
            self.sources,
            self.observer,
            # pacing between device steps, for drills on the twin (and crash tests)
            pause=pause if pause is not None else config.step_pause_s,
            deadman=config.deadman_s,
            audit_min_free=config.audit_min_free_mb,
            stop_wait=config.stop_wait_s,
        )

    # the safety settings live in the context the parts share; set here, they act at once
    @property
    def deadman(self) -> float:
        """Seconds an on-device revert waits before restoring a lost device's fail-safe state."""
        return self.ctx.deadman

    @deadman.setter
    def deadman(self, value: float) -> None:
        self.ctx.deadman = value

    @property
    def audit_min_free(self) -> float:
        """MiB the audit log's disk must keep free before anything is sent."""
        return self.ctx.audit_min_free

    @audit_min_free.setter
    def audit_min_free(self, value: float) -> None:
        self.ctx.audit_min_free = value

    # -- planning against what the journal recorded ----------------------------------------------

    def plan(self, pb: Playbook, sites: Sequence[str] | None = None) -> Plan:
        return plan(pb, self.inv, sites=sites, current=self.journal.device_states())

    def require_safe(self, pb: Playbook, p: Plan) -> Plan:
        """Refuse an unsafe plan, and audit the refusal (`run.refused`): nothing was sent."""
        if p.refusals:
            self.observer.run_refused(self.actor, pb.name, p.sites, p.refusals)
        return require_safe(p)

    # -- run -------------------------------------------------------------------------------------

    def run(
        self,
        pb: Playbook,
        sites: Sequence[str] | None = None,
        run_id: str | None = None,
        *,
        confirmed: Plan | None = None,
        options: RunOptions | None = None,
        poll: float = 1.0,
    ) -> RunReport:
        """Start `pb` and drive it to its end in this process (waits, soaks and approvals
        included). With `confirmed` (the plan a person approved), refuse if the plan made now
        from the journal differs: what runs is exactly what was shown."""
        t0 = time.perf_counter()
        started = self.start(pb, sites, run_id, confirmed=confirmed, options=options)
        report = self.drive(started.run_id, poll=poll)
        report.plan = started.plan
        report.duration_s = time.perf_counter() - t0
        return report

    def start(
        self,
        pb: Playbook,
        sites: Sequence[str] | None = None,
        run_id: str | None = None,
        *,
        confirmed: Plan | None = None,
        options: RunOptions | None = None,
        planned: Plan | None = None,
    ) -> RunReport:
        """Plan `pb`, journal the run with every step, take the sites' locks; nothing is sent
        to a device yet (`proceed` does that). `planned`: the plan the caller has just made
        with `plan` and passed through `require_safe` (its refusals audited) for these
        sites, taken as is (a service that checked it against the plan shown: not made a
        second time)."""
        opts = options or RunOptions()
        p = self.require_safe(pb, planned if planned is not None else self.plan(pb, sites))
        check_audit_space(self.ctx, "the run was not started, nothing was sent")
        if confirmed is not None and _commands(confirmed) != _commands(p):
            raise RunError(
                "the devices' recorded state changed since the plan was shown",
                hint="look at the new plan, then confirm again",
            )
        check_attest(self.ctx, pb, p, opts)
        run_id = run_id or new_run_id()
        direction = {s.name: getattr(s, "fail_direction", "closed") for s in pb.steps}
        opening = {s.name for s in pb.steps if s.action in OPENING_ACTIONS}
        steps = [
            NewStep(
                seq,
                sp.site,
                sp.step,
                c.device,
                c.method,
                c.commands,
                c.undo,
                c.before,
                c.after,
                direction.get(sp.step, "closed"),
                sp.step in opening,
            )
            for seq, (sp, c) in enumerate(((sp, c) for sp in p.steps for c in sp.changes), start=1)
        ]
        status = RunStatus.AWAITING_APPROVAL if opts.needs_approval else RunStatus.RUNNING
        with audit.bind(run_id=run_id, actor=self.actor):
            # a run nobody can audit never starts, and holds no site
            self.observer.run_started(
                run_id,
                playbook=pb.name,
                level=pb.level,
                sites=p.sites,
                actor=self.actor,
                steps=steps,
                playbook_json=pb.model_dump_json(by_alias=True),
                options=opts,
                status=status,
                changes=len(p.changes),
            )
            for site in p.sites:
                for zone, why in sorted(opts.attest.items()):
                    record_attestation(self.ctx, run_id, site, zone, self.actor, why)
            if status == RunStatus.RUNNING:
                self._mark_sites(pb, p.sites, run_id)
        return RunReport(run_id, status, plan=p)

    def drive(self, run_id: str, *, poll: float = 1.0) -> RunReport:
        """Proceed until the run ends, sleeping while it waits (a soak, a wait, an approval or
        an attestation given from another terminal). Interrupted, the run stays open:
        `resume` (or the daemon) takes it on from the journal."""
        outcomes: list[StepOutcome] = []
        while True:
            try:
                report = self.proceed(run_id)
            except RunStopped as exc:
                self.observer.say(exc.message)
                report = RunReport(
                    run_id, Outcome.STOPPED, outcomes=sorted(outcomes, key=lambda o: o.seq)
                )
                report.waiting = exc.message
                return report
            outcomes += report.outcomes
            if report.status not in (Outcome.WAITING, RunStatus.AWAITING_APPROVAL):
                report.outcomes = sorted(outcomes, key=lambda o: o.seq)
                return report
            self.observer.say(f"waiting: {report.waiting}")
            # look again at least every `poll` seconds: an approval or an attestation given
            # from another terminal must be seen at once, not at the gate's deadline
            pause = poll if report.wake_at is None else report.wake_at - time.time()
            time.sleep(min(max(pause, 0.05), poll))

    def proceed(self, run_id: str) -> RunReport:
        """Take the run as far as it can go now: apply pending steps, open or check gates;
        return `waiting` (with when to come back) or the run's final report. Re-entrant: every
        position is read from the journal, so a restart continues where it stopped."""
        with lock_for(run_id):
            if self.journal.run(run_id).status in OPEN:
                self.observer.driver_claimed(run_id)
            try:
                return self._proceed(run_id)
            except RunStopped:
                self.observer.driver_released(run_id)  # the rollback waiting for us goes on
                raise

    def _proceed(self, run_id: str) -> RunReport:
        info = self.journal.run(run_id)
        if info.status not in OPEN:
            return RunReport(run_id, info.status)
        pb = self._playbook(run_id)
        opts = RunOptions.from_dict(info.options)
        with audit.bind(run_id=run_id, actor=info.actor):
            if info.status == RunStatus.AWAITING_APPROVAL:
                waiting = approval.run_approval(
                    self.ctx,
                    run_id,
                    info,
                    opts,
                    lambda: self._mark_sites(pb, info.sites, run_id),
                )
                if waiting is not None:
                    return waiting
            run = GateRun(self.ctx, run_id, pb, opts)

            def walk(site: str, steps: Sequence[Step]) -> Walk:
                return walk_site(run, site, steps)

            walks = ORDERINGS[pb.order].walks(pb, list(info.sites), walk)
            report = RunReport(run_id, RunStatus.RUNNING)
            for w in walks:
                report.outcomes += w.outcomes
                report.flow_problems += w.problems
            pending = [w for w in walks if w.waiting]
            if pending:
                wakes = [w.wake_at for w in pending if w.wake_at is not None]
                report.status = Outcome.WAITING
                report.wake_at = min(wakes) if wakes else None
                report.waiting = "; ".join(sorted({w.waiting or "" for w in pending}))
                self.observer.run_waiting(run_id, RunStatus.RUNNING, report.waiting)
                return report
            # a run asked to stop is never declared finished by its driver: the rollback does
            self.ctx.check_stop(run_id, "the end of the run")
            return self._finish(run_id, info, pb, report)

    def _finish(self, run_id: str, info: RunRecord, pb: Playbook, report: RunReport) -> RunReport:
        status = recovery.final_status(self.ctx, run_id)
        report.status = status
        report.flow_problems = recovery.flow_problems(self.ctx, run_id)
        report.flows_unverified = flows_unverified(self.ctx, run_id)
        sites = [str(s) for s in info.sites]
        recovery.settle_sites(self.ctx, sites, pb.level, run_id, status)
        rows = self.journal.steps(run_id)
        failed = [r for r in rows if r.status in (StepStatus.FAILED, StepStatus.UNDO_FAILED)]
        detail = "; ".join(r.error or "" for r in failed)
        stops = [g for g in self.journal.gates(run_id) if g.status in GATE_STOPS]
        detail = "; ".join(
            [*(f"{g.site}: {g.step}: {g.detail.get('reason', g.status)}" for g in stops), detail]
        ).strip("; ")
        created = info.created_at
        self.observer.run_finished(
            run_id,
            status,
            detail,
            duration_s=time.time() - float(created) if isinstance(created, float) else None,
            failed=len(failed),
            flow_problems=len(report.flow_problems),
            flows_unverified=len(report.flows_unverified),
        )
        # the run is recorded over and its sites are free: the after snapshots cost no time to
        # containment, only to the command's return
        take_after(self.ctx, run_id)
        return report

    def _playbook(self, run_id: str) -> Playbook:
        text = self.journal.playbook_json(run_id)
        if text is None:
            raise RunError(f"run {run_id} was recorded without its playbook; it cannot proceed")
        return Playbook.model_validate_json(text)

    def _mark_sites(self, pb: Playbook, sites: Sequence[str], run_id: str) -> None:
        mode = SiteMode.RECONNECTING if pb.level == "L0" else SiteMode.ISOLATING
        known = self.journal.sites()
        for site in sites:
            level = pb.level if pb.level != "L0" else (known[site].level if site in known else None)
            self.observer.site_mode_set(site, mode, level, run_id, self.actor)

    # -- operators' answers ----------------------------------------------------------------------

    def approve(self, run_id: str, actor: str, reason: str | None = None) -> str:
        """A second operator approves the run (or its open approval step). Refused for the
        run's own author, a run that waits for no approval, or one that expired."""
        return approval.approve(self.ctx, run_id, actor, reason, self.proceed)

    def attest(self, run_id: str, site: str, zone: str, actor: str, reason: str) -> None:
        """An operator attests that `zone` at `site` is clean and may be reconnected."""
        attest(self.ctx, run_id, site, zone, actor, reason)

    # -- recovery --------------------------------------------------------------------------------

    def rollback(self, run_id: str, device: str | None = None) -> RunReport:
        """Restore the pre-run state of every device (or one) the run changed (see
        `recovery.rollback`)."""
        return self._after_undo(run_id, recovery.rollback(self.ctx, run_id, device))

    def resume(self, run_id: str, *, roll_back: bool = False, drive: bool = True) -> RunReport:
        """After a crash or a restart: settle every in-flight step by reading its device, then
        take the run on from the journal, or roll it back. With `drive=False`, proceed once and
        return (the daemon schedules the rest)."""
        go_on = self.drive if drive else self.proceed
        report = recovery.resume(self.ctx, run_id, go_on, roll_back=roll_back)
        return self._after_undo(run_id, report) if roll_back else report

    def _after_undo(self, run_id: str, report: RunReport) -> RunReport:
        """A rollback that undid something on a run now over: its devices' configurations are
        saved again (the after snapshots of the rollback)."""
        if report.outcomes and self.journal.run(run_id).status not in OPEN:
            take_after(self.ctx, run_id)
        return report

    def scheduled_backup(self, device: str) -> Backup:
        """A daemon's periodic backup (evidence; the baseline while Cordon changed nothing)."""
        return take_backup(
            self.ctx, f"scheduled-{datetime.now(UTC):%Y%m%d}", device, scheduled=True
        )


def _commands(p: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.device, c.method, c.commands) for c in p.changes]

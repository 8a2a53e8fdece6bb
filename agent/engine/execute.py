"""Execution: runs a safe plan through the drivers with the declared concurrency, journaling every
device step before and after it runs, verifying each by read-back, rolling back per the failure
policy; rolls back a whole run on demand; resumes a run interrupted by a crash. Devices are
touched only through the drivers' pool; flow probes only through the injected verifier."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent import audit
from agent.drivers.base import ChangeSet, DeadMan, Driver, Expectation, Via
from agent.drivers.pool import Pool
from agent.engine.journal import IN_FLIGHT, Journal, NewStep, StepRow
from agent.engine.plan import Plan, plan, require_safe
from agent.engine.render import nft_comments
from agent.engine.state import NORMAL, DeviceState
from agent.errors import ConnectError, CordonError, DeviceError, RunError
from agent.inventory.models import Inventory
from agent.playbook.models import Playbook, Wait

# Timed gates owned by the daemon (issue 6): refused here, never silently skipped.
DAEMON_ONLY = ("approval", "soak")

# verifier(site, recorded device states) -> problems (empty when the flows are as expected)
FlowVerifier = Callable[[str, Mapping[str, DeviceState]], list[str]]
Progress = Callable[[str], None]


@dataclass
class StepOutcome:
    seq: int
    site: str
    step: str
    device: str
    method: str
    status: str
    error: str | None = None
    duration_s: float = 0.0


@dataclass
class RunReport:
    run_id: str
    status: str
    outcomes: list[StepOutcome] = field(default_factory=list)
    flow_problems: list[str] = field(default_factory=list)
    plan: Plan | None = None
    duration_s: float = 0.0


@dataclass
class _SiteProgress:
    backed_up: set[str] = field(default_factory=set)
    failures: int = 0
    stopped: bool = False


def _via(method: str) -> Via:
    return "snmp" if method == "snmp" else "ssh"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def expectation(method: str, before: DeviceState, after: DeviceState) -> Expectation:
    """What the device must show once a change from `before` to `after` is applied."""
    if method == "nft":
        return Expectation(table_present=bool(after.rules), rule_comments=nft_comments(after))
    changed = {i for i, m in before.down ^ after.down if m == method}
    return Expectation(admin_up={i: i not in after.down_interfaces for i in sorted(changed)})


def _only(state: DeviceState, method: str) -> DeviceState:
    """The part of `state` a method is responsible for (its rules, or its shut interfaces)."""
    if method == "nft":
        return DeviceState(rules=state.rules)
    return DeviceState(down=frozenset((i, m) for i, m in state.down if m == method))


class Executor:
    def __init__(
        self,
        inv: Inventory,
        journal: Journal,
        pool: Pool,
        *,
        actor: str,
        verifier: FlowVerifier | None = None,
        progress: Progress | None = None,
        pause: float | None = None,
    ) -> None:
        self.inv = inv
        self.journal = journal
        self.pool = pool
        self.actor = actor
        self.verifier = verifier
        self.progress = progress or (lambda _msg: None)
        # pacing between device steps, for drills on the twin (and crash tests)
        self.pause = pause if pause is not None else float(os.environ.get("CORDON_STEP_PAUSE", "0"))
        # seconds an on-device revert waits before putting a lost device back in its fail-safe
        # state (and how long the controller keeps trying where the device has no timer)
        self.deadman = float(os.environ.get("CORDON_DEADMAN_S", "30"))
        self.log = audit.get_logger()

    # -- planning against what the journal recorded ------------------------------------------

    def plan(self, pb: Playbook, sites: Sequence[str] | None = None) -> Plan:
        return plan(pb, self.inv, sites=sites, current=self.journal.device_states())

    # -- run -----------------------------------------------------------------------------------

    def run(
        self,
        pb: Playbook,
        sites: Sequence[str] | None = None,
        run_id: str | None = None,
        *,
        confirmed: Plan | None = None,
    ) -> RunReport:
        """Run `pb`. With `confirmed` (the plan a person approved), refuse if the plan made now
        from the journal differs: what runs is exactly what was shown."""
        gated = [s.name for s in pb.steps if s.action in DAEMON_ONLY]
        if gated:
            raise RunError(
                f"playbook {pb.name}: steps {', '.join(gated)} need the daemon (approval gates "
                "and soak periods are timed and survive restarts); this engine refuses to run "
                "them rather than skip them",
                hint="run it through `cordon daemon` once available",
            )
        p = require_safe(self.plan(pb, sites))
        if confirmed is not None and _commands(confirmed) != _commands(p):
            raise RunError(
                "the devices' recorded state changed since the plan was shown",
                hint="look at the new plan, then confirm again",
            )
        run_id = run_id or new_run_id()
        t0 = time.perf_counter()
        direction = {s.name: getattr(s, "fail_direction", "closed") for s in pb.steps}
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
            )
            for seq, (sp, c) in enumerate(((sp, c) for sp in p.steps for c in sp.changes), start=1)
        ]
        self.journal.start_run(run_id, pb.name, pb.level, p.sites, self.actor, steps)
        report = RunReport(run_id, "running", plan=p)
        with audit.bind(run_id=run_id, actor=self.actor):
            self.log.info(
                "run.started",
                playbook=pb.name,
                sites=list(p.sites),
                level=pb.level,
                changes=len(p.changes),
            )
            for site in p.sites:
                self.journal.set_site(site, "isolating", pb.level, run_id, self.actor)
            by_site: dict[str, list[StepRow]] = {s: [] for s in p.sites}
            for row in self.journal.steps(run_id):
                by_site.setdefault(row.site, []).append(row)
            workers = 1 if pb.order == "serial" else pb.limits.max_parallel_sites
            progress = {s: _SiteProgress() for s in p.sites}
            # parallel/serial: one pass per site; waves: one pass per step, all sites each time
            passes: list[str | None] = [s.name for s in pb.steps] if pb.order == "waves" else [None]
            for only in passes:
                with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                    for outcomes, problems in pool.map(
                        lambda s, o=only: self._site(pb, p, run_id, s, by_site[s], progress[s], o),
                        p.sites,
                    ):
                        report.outcomes.extend(outcomes)
                        report.flow_problems.extend(problems)
            report.status = self._status(run_id, report.outcomes, report.flow_problems)
            self._settle_sites(p.sites, pb.level, run_id)
            failed = [o for o in report.outcomes if o.status in ("failed", "undo_failed")]
            self.journal.finish_run(
                run_id,
                report.status,
                "; ".join(o.error or "" for o in failed)[:2000],
                release=report.status != "rollback_failed",
            )
            report.duration_s = time.perf_counter() - t0
            self.log.info(
                "run.finished",
                outcome=report.status,
                duration_s=report.duration_s,
                failed=len(failed),
                flow_problems=len(report.flow_problems),
            )
        report.outcomes.sort(key=lambda o: o.seq)
        return report

    def _status(self, run_id: str, outcomes: Sequence[StepOutcome], problems: Sequence[str]) -> str:
        """done; failed (something failed, nothing undone); rolled_back (all changes undone);
        partial (some sites keep their changes after others were undone); rollback_failed."""
        if any(o.status == "undo_failed" for o in outcomes):
            return "rollback_failed"
        failed = any(o.status == "failed" for o in outcomes) or bool(problems)
        if not any(o.status == "undone" for o in outcomes):
            return "failed" if failed else "done"
        left = [r for r in self.journal.steps(run_id) if r.status in ("verified", "applied")]
        return "partial" if left else "rolled_back"

    def _site(
        self,
        pb: Playbook,
        p: Plan,
        run_id: str,
        site: str,
        rows: list[StepRow],
        progress: _SiteProgress,
        only_step: str | None = None,
    ) -> tuple[list[StepOutcome], list[str]]:
        """Run `site`'s steps in order (only `only_step` in a wave); stop, continue or roll the
        site back on a failure as its policy says. `progress` carries the site's backups,
        failure count and stop across waves."""
        outcomes: list[StepOutcome] = []
        problems: list[str] = []
        if progress.stopped:
            return outcomes, problems
        policy_by_step = {s.name: s.on_failure or pb.on_failure for s in pb.steps}
        with audit.bind(run_id=run_id, actor=self.actor, site=site):
            for sp in (s for s in p.steps if s.site == site):
                if only_step is not None and sp.step != only_step:
                    continue
                if sp.action == "verify_flows" and self.verifier is not None:
                    try:
                        problems += self.verifier(site, self.journal.device_states())
                    except CordonError as exc:
                        problems.append(f"{site}: flow check could not run: {exc.message}")
                    continue
                if sp.action == "wait":
                    seconds = next(
                        s.seconds for s in pb.steps if s.name == sp.step and isinstance(s, Wait)
                    )
                    self.progress(f"{site}: {sp.step}: waiting {seconds:g} s")
                    time.sleep(seconds)
                    continue
                for row in (r for r in rows if r.step == sp.step):
                    outcome = self._backup_then_apply(run_id, row, progress)
                    outcomes.append(outcome)
                    if outcome.status != "failed":
                        continue
                    progress.failures += 1
                    policy = policy_by_step.get(row.step, pb.on_failure)
                    if policy == "rollback":
                        # everything this site changed, the failed step included (it may be
                        # half applied), as the journal says now
                        done = [
                            r
                            for r in self.journal.steps(run_id)
                            if r.site == site and r.seq <= row.seq
                        ]
                        outcomes += self._undo_rows(done)
                    if (
                        policy != "continue"
                        or progress.failures > pb.limits.failure_budget_per_site
                    ):
                        progress.stopped = True
                        return outcomes, problems
        return outcomes, problems

    def _backup_then_apply(self, run_id: str, row: StepRow, progress: _SiteProgress) -> StepOutcome:
        if row.device not in progress.backed_up:
            try:
                backup = self.pool.run(row.device, lambda d: d.backup())
            except CordonError as exc:
                error = f"backup before the first change failed, nothing sent: {exc.message}"
                self.journal.mark(row.run_id, row.seq, "failed", error)
                self.log.error(
                    "step.failed", step=row.step, device=row.device, outcome="failed", error=error
                )
                return StepOutcome(
                    row.seq, row.site, row.step, row.device, row.method, "failed", error
                )
            self.journal.add_backup(run_id, row.device, backup.sha256)
            progress.backed_up.add(row.device)
        return self._apply(row)

    def _apply(self, row: StepRow) -> StepOutcome:
        t = time.perf_counter()
        outcome = StepOutcome(row.seq, row.site, row.step, row.device, row.method, "started")
        self.journal.mark(row.run_id, row.seq, "started")
        self.log.info(
            "step.started",
            step=row.step,
            device=row.device,
            action=row.method,
            commands=list(row.commands),
        )
        self.progress(f"{row.site}: {row.step}: {row.device} ({row.method}) ...")
        try:
            # a step declared fail-open must not stay closed if we lose the device mid-way
            self._guarded(
                row,
                row.commands,
                row.before,
                row.after,
                revert=row.undo,
                guard=row.fail_direction == "open",
                action=row.step,
                on_applied=lambda: self.journal.mark(row.run_id, row.seq, "applied"),
            )
        except CordonError as exc:
            outcome.status, outcome.error = "failed", exc.message
            self.journal.mark(row.run_id, row.seq, "failed", exc.message)
            self.log.error(
                "step.failed", step=row.step, device=row.device, outcome="failed", error=exc.message
            )
        else:
            outcome.status = "verified"
            self.journal.settle_step(
                row.run_id,
                row.seq,
                "verified",
                row.device,
                self._merged(row.device, row.method, row.after),
            )
            self.log.info(
                "step.succeeded",
                step=row.step,
                device=row.device,
                outcome="ok",
                duration_s=time.perf_counter() - t,
            )
        outcome.duration_s = time.perf_counter() - t
        self.progress(f"{row.site}: {row.step}: {row.device}: {outcome.status}")
        if self.pause:
            time.sleep(self.pause)
        return outcome

    def _guarded(
        self,
        row: StepRow,
        lines: Sequence[str],
        frm: DeviceState,
        to: DeviceState,
        *,
        revert: Sequence[str],
        guard: bool,
        action: str,
        on_applied: Callable[[], None] | None = None,
    ) -> None:
        """Apply `lines` and verify the device reached `to`. With `guard` (the target is not the
        step's fail-safe state), a revert to `frm` is armed on the device first where the
        platform allows and confirmed after read-back; where it does not, losing the device
        makes the controller re-apply `frm` as soon as the device answers again. An armed
        revert never outlives its step: on any other failure it is applied now and disarmed."""
        via = _via(row.method)
        back = ChangeSet(tuple(revert), action=f"deadman {action}")
        token = self._arm(row, back) if guard else None
        try:
            self.pool.run(row.device, _applier(ChangeSet(tuple(lines), action=action)), via=via)
            if on_applied is not None:
                on_applied()
            exp = expectation(row.method, frm, to)
            self.pool.run(row.device, _verifier(exp, f"{action}.verify"), via=via)
        except ConnectError as exc:
            if guard and token is None:
                self._recover(row, revert, to, frm, exc)
            raise  # with a token, the device's own timer restores the fail-safe state
        except CordonError:
            if token is not None:
                self._restore_now(row, back, token)
            raise
        if token is not None and not self.pool.run(row.device, _confirmer(token)):
            raise RunError(
                f"{row.device}: the dead-man timer fired before {action} was "
                "confirmed: the device went back to its fail-safe state by itself",
                hint="check the management path, then try again",
            )

    def _restore_now(self, row: StepRow, back: ChangeSet, token: str) -> None:
        """The step failed with the device reachable: restore the fail-safe state ourselves and
        disarm the timer, so it cannot reload an old table later over newer changes."""
        try:
            self.pool.run(row.device, _applier(back), via=_via(row.method))
            self.pool.run(row.device, _confirmer(token), via=_via(row.method))
        except CordonError as exc:
            self.log.error(
                "deadman.restore_failed", device=row.device, step=row.step, error=exc.message
            )

    def _recover(
        self,
        row: StepRow,
        lines: Sequence[str],
        frm: DeviceState,
        to: DeviceState,
        cause: ConnectError,
    ) -> None:
        """Controller-side dead-man: the device was lost mid-transition and has no timer of its
        own: re-apply the fail-safe state as soon as it answers, for up to `deadman` seconds."""
        via = _via(row.method)
        deadline = time.monotonic() + max(self.deadman, 1.0)
        self.log.warning(
            "deadman.controller", device=row.device, step=row.step, error=cause.message
        )
        while time.monotonic() < deadline:
            try:
                self.pool.run(
                    row.device, _applier(ChangeSet(tuple(lines), action="deadman")), via=via
                )
                self.pool.run(
                    row.device,
                    _verifier(expectation(row.method, frm, to), "deadman.verify"),
                    via=via,
                )
            except ConnectError:
                time.sleep(1.0)
                continue
            self.log.warning(
                "deadman.reverted",
                device=row.device,
                step=row.step,
                outcome="fail-safe state restored by the controller",
            )
            return
        self.log.error(
            "deadman.unreachable",
            device=row.device,
            step=row.step,
            outcome="unknown",
            error="device still unreachable: resume the run",
        )

    def _merged(self, device: str, method: str, target: DeviceState) -> DeviceState:
        """A device's recorded state with only `method`'s part (nft rules, or the interfaces
        that method shut) replaced by `target`'s."""
        cur = self.journal.device_states().get(device, NORMAL)
        mine = _only(target, method)
        if method == "nft":
            return DeviceState(down=cur.down, rules=mine.rules)
        other = frozenset((i, m) for i, m in cur.down if m != method)
        return DeviceState(down=other | mine.down, rules=cur.rules)

    def _settle_sites(self, sites: Sequence[str], level: str, run_id: str) -> None:
        """Each site's mode from what is recorded on its devices now."""
        states = self.journal.device_states()
        for name in sites:
            site = self.inv.site(name)
            isolated = site is not None and any(
                states.get(d.name, NORMAL) != NORMAL for d in site.devices
            )
            self.journal.set_site(
                name,
                "isolated" if isolated else "normal",
                level if isolated else None,
                run_id,
                self.actor,
            )

    # -- rollback and resume -------------------------------------------------------------------

    def _undo_rows(self, rows: Sequence[StepRow]) -> list[StepOutcome]:
        """Undo applied steps: sites in parallel, newest first within a site, each verified back
        to its `before` state; reopening fails closed (see `_guarded`)."""
        todo = [r for r in rows if r.status in UNDOABLE]
        by_site: dict[str, list[StepRow]] = {}
        for row in sorted(todo, key=lambda r: r.seq, reverse=True):
            by_site.setdefault(row.site, []).append(row)
        run_id = todo[0].run_id if todo else ""

        def site(rows_of_site: list[StepRow]) -> list[StepOutcome]:
            with audit.bind(run_id=run_id, actor=self.actor, site=rows_of_site[0].site):
                return [self._undo_one(r) for r in rows_of_site]

        with ThreadPoolExecutor(max_workers=16) as pool:
            return [o for outs in pool.map(site, by_site.values()) for o in outs]

    def _undo_one(self, row: StepRow) -> StepOutcome:
        t = time.perf_counter()
        outcome = StepOutcome(row.seq, row.site, row.step, row.device, row.method, "undone")
        self.journal.mark(row.run_id, row.seq, "undoing")  # resume settles it if we crash
        try:
            if not self._shows(row, row.after, row.before):  # a rejected step sent nothing
                self._guarded(
                    row,
                    row.undo,
                    row.after,
                    row.before,
                    revert=row.commands,
                    guard=row.fail_direction == "closed",
                    action=f"undo {row.step}",
                )
        except CordonError as exc:
            outcome.status, outcome.error = "undo_failed", exc.message
            self.journal.mark(row.run_id, row.seq, "undo_failed", exc.message)
        else:
            self.journal.settle_step(
                row.run_id,
                row.seq,
                "undone",
                row.device,
                self._merged(row.device, row.method, row.before),
            )
        outcome.duration_s = time.perf_counter() - t
        self.progress(f"{row.site}: undo {row.step}: {row.device}: {outcome.status}")
        return outcome

    def _shows(self, row: StepRow, frm: DeviceState, to: DeviceState) -> bool:
        """Does the device already show `to` (for this step's method)? One read, no polling."""
        try:
            self.pool.run(
                row.device,
                _verifier(expectation(row.method, frm, to), f"{row.step}.check", timeout=0.0),
                via=_via(row.method),
            )
        except DeviceError:
            return False
        return True

    def rollback(self, run_id: str, device: str | None = None) -> RunReport:
        """Restore the pre-run state of every device (or one) the run changed. Idempotent; a
        failed undo is retried by the next rollback. Refused if a later run changed a device
        since (roll that one back first), or if another run holds one of the sites."""
        info = self.journal.run(run_id)
        rows = [r for r in self.journal.steps(run_id) if device is None or r.device == device]
        todo = [r for r in rows if r.status in UNDOABLE]
        if not todo:
            return RunReport(run_id, "nothing_to_roll_back")
        recorded, writers = self.journal.device_states(), self.journal.device_writers()
        for dev in sorted({r.device for r in todo}):
            newest = max((r for r in todo if r.device == dev), key=lambda r: r.seq)
            if recorded.get(dev, NORMAL) not in (newest.after, newest.before):
                other = writers.get(dev, "another run")
                raise RunError(
                    f"cannot roll back {run_id}: {dev} was changed since by run {other}",
                    hint=f"roll back {other} first (newest first)",
                )
        sites = sorted({r.site for r in todo})
        self.journal.lock_sites(run_id, sites)
        with audit.bind(run_id=run_id, actor=self.actor):
            self.log.info("run.rollback", device=device, steps=len(todo))
            for name in sites:
                self.journal.set_site(name, "reconnecting", info["level"], run_id, self.actor)
            outcomes = self._undo_rows(todo)
        status = "rollback_failed" if any(o.status != "undone" for o in outcomes) else "rolled_back"
        self._settle_sites(sites, info["level"], run_id)
        if device is None or info["status"] != "running":
            final = status if device is None else info["status"]
            self.journal.finish_run(run_id, final, release=status != "rollback_failed")
        return RunReport(run_id, status, outcomes)

    def resume(self, run_id: str, *, roll_back: bool = False) -> RunReport:
        """After a crash: settle every in-flight step by reading its device, then finish the run
        (or roll it back). A device that cannot be read keeps the run open (and its sites
        locked): nothing is guessed."""
        info = self.journal.run(run_id)
        if info["status"] not in ("running",):
            return RunReport(run_id, f"already {info['status']}")
        rows = self.journal.steps(run_id)
        outcomes: list[StepOutcome] = []
        with audit.bind(run_id=run_id, actor=self.actor):
            for row in rows:
                if row.status in IN_FLIGHT or row.status == "undoing":
                    outcomes.append(self._settle(row))
            rows = self.journal.steps(run_id)
            stopped = {r.site for r in rows if r.status in ("failed", "undo_failed")}
            if roll_back:
                outcomes += self._undo_rows(rows)
            else:
                for row in rows:
                    if row.status == "pending" and row.site not in stopped:
                        outcomes.append(self._apply(row))
            status = self._status(run_id, outcomes, [])
            if not roll_back and any(r.status == "pending" for r in self.journal.steps(run_id)):
                status = "failed"  # a stopped site's remaining steps were not run
            self._settle_sites(info["sites"], info["level"], run_id)
            self.journal.finish_run(run_id, status, "resumed", release=status != "rollback_failed")
            self.log.info("run.resumed", outcome=status, settled=len(outcomes))
        return RunReport(run_id, status, outcomes)

    def _settle(self, row: StepRow) -> StepOutcome:
        """An in-flight step: is the device in its after state, its before state, or neither?"""
        via = _via(row.method)
        unreachable = 0
        for target, found in ((row.after, "verified"), (row.before, "pending")):
            other = row.before if target is row.after else row.after
            try:
                self.pool.run(
                    row.device,
                    _verifier(expectation(row.method, other, target), "resume.check", timeout=2.0),
                    via=via,
                )
            except ConnectError:
                unreachable += 1
                continue
            except DeviceError:
                continue
            status = found
            if row.status == "undoing":
                status = "undone" if found == "pending" else "verified"
            self.journal.settle_step(
                row.run_id,
                row.seq,
                status,
                row.device,
                self._merged(row.device, row.method, target),
            )
            return StepOutcome(
                row.seq, row.site, row.step, row.device, row.method, f"settled:{status}"
            )
        if unreachable:
            raise RunError(
                f"resume {row.run_id}: {row.device} cannot be reached; its step "
                f"{row.step} stays in flight and the run stays open",
                hint="restore the management path, then resume again",
            )
        # reachable but in neither state: push the step's target again (loads are atomic)
        return self._undo_one(row) if row.status == "undoing" else self._apply(row)

    def _arm(self, row: StepRow, revert: ChangeSet) -> str | None:
        """Arm an on-device revert where the platform allows it (nftables firewalls)."""
        if row.method != "nft" or self.deadman <= 0:
            return None

        def arm(d: Driver) -> str | None:
            return d.arm_revert(revert, self.deadman) if isinstance(d, DeadMan) else None

        return self.pool.run(row.device, arm)


def _commands(p: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.device, c.method, c.commands) for c in p.changes]


# Rows an undo may act on: changed, possibly changed, or a failed earlier undo to retry.
UNDOABLE = ("verified", "applied", "started", "failed", "undoing", "undo_failed")


def _applier(changes: ChangeSet) -> Callable[[Driver], object]:
    return lambda d: d.apply(changes)


def _verifier(
    exp: Expectation, action: str, timeout: float | None = None
) -> Callable[[Driver], object]:
    return lambda d: d.verify(exp, timeout=timeout, action=action)


def _confirmer(token: str) -> Callable[[Driver], bool]:
    return lambda d: isinstance(d, DeadMan) and d.confirm(token)

"""The run's one observer: every change of a run's recorded state goes through it (the run, its
sites and their locks, its driver, its steps, gates, backups, baselines, attestations and
approvals, a lost journal, the dead-man's acts), each written in the same order as always: the
journal (durable state), then the audit trail (the signed record), then the progress line (what
the person watching reads). The run's parts read the journal directly; they never write it, nor
the audit trail, but here. Imports the journal, audit, the statuses and the run's model; no part
of the run."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from agent import audit
from agent.audit.pipeline import appending
from agent.engine.journal import FlowCheck, Journal, NewStep, StepRow
from agent.errors import AuditError, RunError
from agent.network.state import DeviceState
from agent.run.model import Progress, RunOptions
from agent.status import GateStatus, RunStatus, SiteMode, StepStatus


class Observer:
    def __init__(self, journal: Journal, progress: Progress | None = None) -> None:
        self.journal = journal
        self.progress: Progress = progress or (lambda _msg: None)
        self.log = audit.get_logger()

    def say(self, message: str) -> None:
        """A progress line for the person watching (never a record)."""
        self.progress(message)

    # -- a run ----------------------------------------------------------------------------------

    def run_refused(
        self, actor: str, playbook: str, sites: Sequence[str], refusals: Sequence[str]
    ) -> None:
        """An unsafe plan was refused: audited, nothing journaled (nothing was started)."""
        with audit.bind(actor=actor):
            self.log.warning(
                "run.refused",
                playbook=playbook,
                sites=list(sites),
                refusals=list(refusals),
                outcome="refused",
            )

    def run_started(
        self,
        run_id: str,
        *,
        playbook: str,
        level: str,
        sites: Sequence[str],
        actor: str,
        steps: Sequence[NewStep],
        playbook_json: str,
        options: RunOptions,
        status: RunStatus,
        changes: int,
    ) -> None:
        """Journal the run with every step and take its sites' locks, then audit it (and a
        break-glass run flagged for review). A run the trail cannot take is cancelled at once:
        it holds no site and nothing was sent."""
        self.journal.start_run(
            run_id,
            playbook,
            level,
            sites,
            actor,
            steps,
            playbook_json=playbook_json,
            options=options.as_dict(),
            status=status,
        )
        try:
            self.log.info(
                "run.started",
                playbook=playbook,
                sites=list(sites),
                run_level=level,  # "level" is the log record's own severity field
                changes=changes,
                reason=options.reason,
                outcome=status,
            )
        except AuditError as exc:
            self.journal.finish_run(
                run_id, RunStatus.CANCELLED, f"the audit trail cannot be written: {exc.message}"
            )
            raise AuditError(
                f"run {run_id} not started, nothing was sent: {exc.message}", hint=exc.hint
            ) from exc
        if options.break_glass:
            self.log.warning(
                "run.break_glass",
                playbook=playbook,
                reason=options.reason,
                outcome="flagged for review",
            )

    def run_waiting(self, run_id: str, status: RunStatus, why: str | None) -> None:
        """An open run waits (a gate, a soak, an approval) and says for what; None: it goes on."""
        self.journal.set_run_status(run_id, status, why)

    def run_approved_to_go(self, run_id: str) -> None:
        """A run that waited for a second operator was approved: it runs."""
        self.journal.set_run_status(run_id, RunStatus.RUNNING)

    def run_expired(self, run_id: str, detail: str) -> None:
        """Nobody approved the run in time: it ends, nothing was sent."""
        self.journal.finish_run(run_id, RunStatus.EXPIRED, detail)
        self.log.warning("run.expired", outcome=RunStatus.EXPIRED, detail=detail)

    def run_cancelled(self, run_id: str, actor: str) -> None:
        """An open run that changed nothing was rolled back: cancelled, its sites freed."""
        self.journal.finish_run(run_id, RunStatus.CANCELLED, f"cancelled by {actor}")
        self.log.info("run.cancelled", outcome=RunStatus.CANCELLED, detail="nothing was sent")

    def run_finished(
        self,
        run_id: str,
        status: RunStatus,
        detail: str,
        *,
        duration_s: float | None,
        failed: int,
        flow_problems: int,
        flows_unverified: int = 0,
    ) -> None:
        """The run's outcome, declared by its driver: journaled (its sites freed unless an
        undo failed), audited, said."""
        self.journal.finish_run(
            run_id, status, detail[:2000], release=status != RunStatus.ROLLBACK_FAILED
        )
        self.log.info(
            "run.finished",
            outcome=status,
            duration_s=duration_s,
            failed=failed,
            flow_problems=flow_problems,
            flows_unverified=flows_unverified,
            detail=detail or None,
        )
        self.progress(f"run {run_id}: {status}" + (f" ({detail})" if detail else ""))

    def run_rolled_back(
        self, run_id: str, status: RunStatus, detail: str = "", *, release: bool
    ) -> None:
        """A rollback (or a resume that rolls back) declares the run's status."""
        self.journal.finish_run(run_id, status, detail, release=release)

    def rollback_started(
        self,
        run_id: str,
        sites: Sequence[str],
        level: str,
        actor: str,
        *,
        device: str | None,
        steps: int,
    ) -> None:
        """Hold the sites the rollback undoes (refused if another run holds one), audit it, and
        mark each site reconnecting."""
        self.journal.lock_sites(run_id, sites)
        self.log.info("run.rollback", device=device, steps=steps)
        for name in sites:
            self.journal.set_site(name, SiteMode.RECONNECTING, level, run_id, actor)

    def run_resumed(self, settled: int, roll_back: bool) -> None:
        """A resume settled the steps in flight (audited; the settling journaled each)."""
        self.log.info("run.resumed", settled=settled, roll_back=roll_back)

    def site_mode_set(
        self, site: str, mode: SiteMode, level: str | None, run_id: str, actor: str
    ) -> None:
        self.journal.set_site(site, mode, level, run_id, actor)

    def driver_claimed(self, run_id: str) -> None:
        """This process drives the run now."""
        self.journal.claim_driver(run_id)

    def driver_released(self, run_id: str) -> None:
        self.journal.release_driver(run_id)

    def journal_lost(self, row: StepRow, lost: str, where: str) -> None:
        """The journal is no longer the file at its path: said, and audited if the trail can
        still take it (the run is failing already: the error raised after this says it)."""
        self.progress(f"JOURNAL LOST: {lost}; {where}: nothing more is sent")
        with contextlib.suppress(AuditError):
            self.log.error("run.stopped", step=row.step, device=row.device, reason=lost)

    def stop_ordered(self, run_id: str, why: str) -> None:
        """Whoever drives the run stops at its next step boundary."""
        self.journal.request_stop(run_id, why)

    def stop_cleared(self, run_id: str) -> None:
        """An operator's order to go on (a resume)."""
        self.journal.clear_stop(run_id)

    # -- operators' answers ---------------------------------------------------------------------

    def approved(
        self, run_id: str, step: str, actor: str, reason: str | None, *, author: str
    ) -> None:
        """A second operator approved the run (`step` empty) or one of its approval steps."""
        self.journal.approve(run_id, step, actor, reason)
        with audit.bind(run_id=run_id, actor=actor):
            self.log.info(
                "run.approved", step=step or None, reason=reason, author=author, outcome="ok"
            )

    def attested(self, run_id: str, site: str, zone: str, actor: str, reason: str) -> None:
        """An operator attested that a zone is clean and may be reconnected."""
        self.journal.attest(run_id, site, zone, actor, reason)
        self.log.info("reconnect.attested", zone=zone, reason=reason, outcome="recorded")

    # -- backups --------------------------------------------------------------------------------

    def backup_taken(
        self, run_id: str, device: str, sha256: str, *, before_run: bool = True
    ) -> None:
        """A device's configuration saved (the blob is in the evidence store under `sha256`):
        journaled, then, when it is the run's before snapshot, audited (`config.before`). A
        scheduled backup (`before_run=False`) is journaled only."""
        self.journal.add_backup(run_id, device, sha256)
        if before_run:  # bound here: a site's backups are taken in worker threads
            with audit.bind(run_id=run_id):
                self.log.info("config.before", device=device, config_sha256=sha256, outcome="saved")

    def config_after(
        self, run_id: str, run_outcome: str, site: str, device: str, sha256: str
    ) -> None:
        """A device the run changed, its configuration read once the run ended (`run_outcome`:
        the run's status then: done, failed, rolled_back...), saved as evidence."""
        with audit.bind(run_id=run_id):
            self.log.info(
                "config.after",
                site=site,
                device=device,
                run_outcome=run_outcome,
                config_sha256=sha256,
                outcome="saved",
            )

    def config_after_failed(
        self, run_id: str, run_outcome: str, site: str, device: str, error: str
    ) -> None:
        """The after snapshot could not be taken: audited with why; the run's outcome stands.
        A trail that cannot take the record either is said, never raised (the run is over)."""
        self.progress(f"{site}: {device}: configuration after the run not saved: {error}")
        with contextlib.suppress(AuditError), audit.bind(run_id=run_id):
            self.log.warning(
                "config.after",
                site=site,
                device=device,
                run_outcome=run_outcome,
                outcome="failed",
                error=error,
            )

    def baseline_set(self, device: str, digest: str, sha256: str, run_id: str) -> None:
        """A backup taken while Cordon had changed nothing on the device: its baseline."""
        self.journal.set_baseline(device, digest, sha256, run_id)

    # -- device steps ---------------------------------------------------------------------------

    def step_appended(self, run_id: str, step: NewStep) -> StepRow:
        """A step added to an open run (a soak's re-isolation), as the journal holds it."""
        seq = self.journal.append_step(run_id, step)
        row = self.journal.step_row(run_id, seq)
        if row is None:  # written in the transaction above: only a deleted journal loses it
            raise RunError(f"run {run_id}: step {seq} was appended but cannot be read back")
        return row

    def step_started(self, row: StepRow) -> None:
        """Journal the intent, then audit it with the commands. If the trail cannot take the
        record the step goes back to pending (nothing was sent) and the run stops."""
        self.journal.mark(row.run_id, row.seq, StepStatus.STARTED)
        try:
            self.log.info(
                "step.started",
                step=row.step,
                device=row.device,
                action=row.method,
                commands=list(row.commands),
            )
        except AuditError as exc:
            self.journal.mark(row.run_id, row.seq, StepStatus.PENDING)  # nothing was sent
            raise AuditError(
                f"run {row.run_id}: {exc.message}: {row.step} not sent to {row.device}; "
                "the run stops",
                hint=f"free the audit log's disk, then `cordon resume {row.run_id}`",
            ) from exc
        self.progress(f"{row.site}: {row.step}: {row.device} ({row.method}) ...")

    def step_applied(self, row: StepRow) -> None:
        """The device took the commands (not yet read back)."""
        self.journal.mark(row.run_id, row.seq, StepStatus.APPLIED)

    def step_failed(self, row: StepRow, error: str) -> None:
        self.journal.mark(row.run_id, row.seq, StepStatus.FAILED, error)
        self.log.error(
            "step.failed", step=row.step, device=row.device, outcome="failed", error=error
        )

    def step_verified(self, row: StepRow, state: DeviceState, duration_s: float) -> None:
        """Read back as intended: the device's recorded state becomes `state`."""
        self.journal.settle_step(row.run_id, row.seq, StepStatus.VERIFIED, row.device, state)
        self.log.info(
            "step.succeeded", step=row.step, device=row.device, outcome="ok", duration_s=duration_s
        )

    def step_done(self, row: StepRow, status: str) -> None:
        self.progress(f"{row.site}: {row.step}: {row.device}: {status}")

    def step_settled(self, row: StepRow, status: StepStatus, state: DeviceState) -> None:
        """What a read of the device showed (resume, a trail failure mid-step, an undo)."""
        self.journal.settle_step(row.run_id, row.seq, status, row.device, state)

    def step_marked(self, row: StepRow, status: StepStatus, error: str | None = None) -> None:
        """A step's status without a record of its own (undoing, undo_failed...)."""
        self.journal.mark(row.run_id, row.seq, status, error)

    def undo_done(self, row: StepRow, status: str) -> None:
        self.progress(f"{row.site}: undo {row.step}: {row.device}: {status}")

    # -- the dead-man -----------------------------------------------------------------------------

    def deadman_restore_failed(self, row: StepRow, error: str) -> None:
        """Restoring the fail-safe state and disarming the device's revert timer failed: the
        timer may still fire."""
        self.log.error("deadman.restore_failed", device=row.device, step=row.step, error=error)

    def deadman_controller(self, row: StepRow, error: str) -> None:
        """A device without a timer of its own was lost mid-change: the controller re-cuts."""
        self.log.warning("deadman.controller", device=row.device, step=row.step, error=error)

    def deadman_reverted(self, row: StepRow) -> None:
        self.log.warning(
            "deadman.reverted",
            device=row.device,
            step=row.step,
            outcome="fail-safe state restored by the controller",
        )

    def deadman_unreachable(self, row: StepRow) -> None:
        self.log.error(
            "deadman.unreachable",
            device=row.device,
            step=row.step,
            outcome="unknown",
            error="device still unreachable: resume the run",
        )

    # -- gates ----------------------------------------------------------------------------------

    def gate(
        self,
        run_id: str,
        site: str,
        step: str,
        status: GateStatus,
        *,
        wake_at: float | None = None,
        detail: Mapping[str, Any] | None = None,
        say: str | None = None,
    ) -> None:
        """A gate's new status in the journal, then (with `say`) a progress line."""
        if detail is None:
            self.journal.set_gate(run_id, site, step, status, wake_at=wake_at)
        else:
            self.journal.set_gate(run_id, site, step, status, wake_at=wake_at, detail=dict(detail))
        if say is not None:
            self.progress(say)

    def gate_failed(self, run_id: str, site: str, step: str, reason: str) -> None:
        """A gate that stops its site: journaled with its reason and audited."""
        self.journal.set_gate(run_id, site, step, GateStatus.FAILED, detail={"reason": reason})
        self.log.error("step.failed", step=step, outcome="failed", error=reason)

    def approval_timed_out(
        self, run_id: str, site: str, step: str, *, proceed: bool, reason: str
    ) -> None:
        """No second operator within the step's timeout: the gate passes (the playbook says
        proceed) or expires (it says abort), journaled with `reason`, then audited."""
        status = GateStatus.PASSED if proceed else GateStatus.EXPIRED
        self.journal.set_gate(
            run_id, site, step, status, detail={"kind": "approval", "reason": reason}
        )
        self.log.warning(
            "run.approval_timeout", step=step, outcome="proceed" if proceed else "abort"
        )

    def flows_checked(
        self,
        run_id: str,
        site: str,
        step: str,
        checks: Sequence[FlowCheck],
        *,
        gate: Mapping[str, Any] | None = None,
        audit_passed: bool = True,
    ) -> None:
        """Each flow's verdict at a verify step (or a soak's probes): journaled (with the gate's
        `detail` when given: the gate passes, its problems are the run's flow problems), then
        audited one record per flow (which sources confirmed it, which contradicted it), then
        the failed and unverified flows said."""
        self.journal.record_flow_checks(
            checks,
            gate=None if gate is None else (run_id, site, step),
            detail=None if gate is None else dict(gate),
        )
        with appending():  # the step's records back to back, each its own
            for c in checks:
                if c.status == "passed" and not audit_passed:
                    continue
                log = self.log.error if c.status == "failed" else self.log.info
                if c.status == "unverified":
                    log = self.log.warning
                log(
                    "flow.checked",
                    step=step,
                    flow=c.flow,
                    expected=c.expected,
                    outcome=c.status,
                    must_survive=c.must_survive,
                    confirmed_by=list(c.confirmed_by),
                    contradicted_by=list(c.contradicted_by),
                )
        failed = [c.flow for c in checks if c.status == "failed"]
        unverified = [c.flow for c in checks if c.status == "unverified"]
        passed = len(checks) - len(failed) - len(unverified)
        if gate is not None or failed or unverified:
            self.progress(
                f"{site}: {step}: flows: {passed} passed, {len(failed)} failed"
                + (f" ({', '.join(failed)})" if failed else "")
                + f", {len(unverified)} unverified"
                + (f" ({_some(unverified)})" if unverified else "")
            )

    def preconditions_refused(
        self, run_id: str, site: str, key: str, step: str, reason: str
    ) -> None:
        """A zone's devices are not back to their baseline: the reconnection is refused."""
        self.journal.set_gate(run_id, site, key, GateStatus.FAILED, detail={"reason": reason})
        self.log.error("step.failed", step=step, outcome="refused", error=reason)
        self.progress(f"{site}: {step}: refused: {reason}")

    def preconditions_met(
        self,
        run_id: str,
        site: str,
        key: str,
        step: str,
        zones: Sequence[str],
        attested_by: Mapping[str, str | None],
    ) -> None:
        """Every zone attested and back to its baseline: the reconnection may go on."""
        self.journal.set_gate(
            run_id,
            site,
            key,
            GateStatus.PASSED,
            detail={"attested_by": dict(attested_by), "baseline": "matches"},
        )
        self.log.info(
            "reconnect.preconditions",
            step=step,
            zones=list(zones),
            attested_by=dict(attested_by),
            outcome="ok",
        )

    # -- soaks ----------------------------------------------------------------------------------

    def soak_started(self, site: str, step: str, seconds: float, interval: float) -> None:
        """A soak begins (its gate is journaled with its first sample)."""
        self.log.info("soak.started", step=step, seconds=seconds, interval=interval)
        self.progress(f"{site}: {step}: soak {seconds:g} s, checks every {interval:g} s")

    def soak_passed(
        self, run_id: str, site: str, step: str, seconds: float, detail: Mapping[str, Any]
    ) -> None:
        self.journal.set_gate(run_id, site, step, GateStatus.PASSED, detail=dict(detail))
        self.log.info("soak.passed", step=step, ticks=detail["ticks"], outcome="healthy, advancing")
        self.progress(f"{site}: {step}: healthy for {seconds:g} s, advancing")

    def soak_anomaly(self, site: str, step: str, zones: Sequence[str], reason: str) -> None:
        """A soak saw something wrong (the re-isolation that follows is journaled step by
        step, then `soak_reisolated`)."""
        self.log.warning("soak.anomaly", step=step, zones=list(zones), reason=reason)
        self.progress(f"{site}: {step}: ANOMALY: {reason}")

    def soak_reisolated(
        self,
        run_id: str,
        site: str,
        step: str,
        zones: Sequence[str],
        detail: Mapping[str, Any],
        *,
        ok: bool,
    ) -> None:
        """The soak's gate ends re-isolated (`ok`: every cut verified), audited (an error when
        the re-isolation failed), said: the site's walk stops there."""
        self.journal.set_gate(run_id, site, step, GateStatus.REISOLATED, detail=dict(detail))
        log = self.log.warning if ok else self.log.error
        log(
            "reconnect.reisolated",
            step=step,
            zones=list(zones),
            reason=detail["reason"],
            outcome=detail["outcome"],
        )
        self.progress(f"{site}: {', '.join(zones)} re-isolated ({detail['outcome']}); run stopped")


def _some(names: Sequence[str], most: int = 8) -> str:
    """At most `most` names, then how many more (a progress line stays readable)."""
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")

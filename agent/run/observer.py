"""The run's one observer: every record a step or a gate leaves goes through it, written in the
same order as always: the journal (durable state), the audit trail (the signed record) and the
progress line (what the person watching reads). Imports the journal, audit and the run's model;
no part of the run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent import audit
from agent.engine.journal import Journal, StepRow
from agent.errors import AuditError
from agent.network.state import DeviceState
from agent.run.model import Progress


class Observer:
    def __init__(self, journal: Journal, progress: Progress | None = None) -> None:
        self.journal = journal
        self.progress: Progress = progress or (lambda _msg: None)
        self.log = audit.get_logger()

    def say(self, message: str) -> None:
        """A progress line for the person watching (never a record)."""
        self.progress(message)

    # -- device steps ---------------------------------------------------------------------------

    def step_started(self, row: StepRow) -> None:
        """Journal the intent, then audit it with the commands. If the trail cannot take the
        record the step goes back to pending (nothing was sent) and the run stops."""
        self.journal.mark(row.run_id, row.seq, "started")
        try:
            self.log.info(
                "step.started",
                step=row.step,
                device=row.device,
                action=row.method,
                commands=list(row.commands),
            )
        except AuditError as exc:
            self.journal.mark(row.run_id, row.seq, "pending")  # nothing was sent
            raise AuditError(
                f"run {row.run_id}: {exc.message}: {row.step} not sent to {row.device}; "
                "the run stops",
                hint=f"free the audit log's disk, then `cordon resume {row.run_id}`",
            ) from exc
        self.progress(f"{row.site}: {row.step}: {row.device} ({row.method}) ...")

    def step_applied(self, row: StepRow) -> None:
        """The device took the commands (not yet read back)."""
        self.journal.mark(row.run_id, row.seq, "applied")

    def step_failed(self, row: StepRow, error: str) -> None:
        self.journal.mark(row.run_id, row.seq, "failed", error)
        self.log.error(
            "step.failed", step=row.step, device=row.device, outcome="failed", error=error
        )

    def step_verified(self, row: StepRow, state: DeviceState, duration_s: float) -> None:
        """Read back as intended: the device's recorded state becomes `state`."""
        self.journal.settle_step(row.run_id, row.seq, "verified", row.device, state)
        self.log.info(
            "step.succeeded", step=row.step, device=row.device, outcome="ok", duration_s=duration_s
        )

    def step_done(self, row: StepRow, status: str) -> None:
        self.progress(f"{row.site}: {row.step}: {row.device}: {status}")

    def step_settled(self, row: StepRow, status: str, state: DeviceState) -> None:
        """What a read of the device showed (resume, a trail failure mid-step, an undo)."""
        self.journal.settle_step(row.run_id, row.seq, status, row.device, state)

    def step_marked(self, row: StepRow, status: str, error: str | None = None) -> None:
        """A step's status without a record of its own (undoing, undo_failed...)."""
        self.journal.mark(row.run_id, row.seq, status, error)

    def undo_done(self, row: StepRow, status: str) -> None:
        self.progress(f"{row.site}: undo {row.step}: {row.device}: {status}")

    # -- gates ----------------------------------------------------------------------------------

    def gate(
        self,
        run_id: str,
        site: str,
        step: str,
        status: str,
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
        self.journal.set_gate(run_id, site, step, "failed", detail={"reason": reason})
        self.log.error("step.failed", step=step, outcome="failed", error=reason)

"""The backup gate, and the backup itself: a device's configuration saved as evidence before the
run changes it (journaled; while Cordon has changed nothing on the device it is also its
baseline). Imports the gate protocol, the run's context, baseline (pure), the drivers' protocol,
the network state types, the playbook models and the statuses."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent.drivers.base import Backup
from agent.engine import baseline
from agent.errors import AuditError, CordonError
from agent.network.state import NORMAL
from agent.playbook.models import Step
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Stopped, Verdict
from agent.status import GateStatus, StepStatus


def take_backup(ctx: Context, run_id: str, device: str, *, scheduled: bool = False) -> Backup:
    """Back up `device` (audited as the run's before snapshot unless `scheduled`); while Cordon
    has changed nothing on it, this is its baseline."""
    backup: Backup = ctx.pool.run(device, lambda d: d.backup())
    ctx.obs.backup_taken(run_id, device, backup.sha256, before_run=not scheduled)
    if (ctx.journal.device_state(device) or NORMAL) == NORMAL:
        ctx.obs.baseline_set(
            device, baseline.digest(backup.platform, backup.text), backup.sha256, run_id
        )
    return backup


def take_after(ctx: Context, run_id: str) -> None:
    """Once a run has ended (recorded, its sites freed): each device it sent a step to is read
    again and its configuration saved as evidence, audited `config.after` for the report's
    before/after diff. Devices in parallel; one that cannot be read is audited as such and the
    run's outcome stands. Never raises for a device or for the trail (the run is over)."""
    sent = {r.device: r.site for r in ctx.journal.steps(run_id) if r.status != StepStatus.PENDING}
    before = ctx.journal.backups(run_id)
    devices = sorted(d for d in sent if d in before)  # no before snapshot: nothing was sent
    if not devices:
        return

    def read(device: str) -> Backup | str:
        try:
            backup: Backup = ctx.pool.run(device, lambda d: d.backup())
        except CordonError as exc:
            return exc.message
        return backup

    outcome = ctx.journal.run(run_id).status
    with ThreadPoolExecutor(max_workers=max(1, min(len(devices), 8))) as pool:
        snapshots = list(pool.map(read, devices))
    for device, got in zip(devices, snapshots, strict=True):
        try:
            if isinstance(got, Backup):
                ctx.obs.config_after(run_id, outcome, sent[device], device, got.sha256)
            else:
                ctx.obs.config_after_failed(run_id, outcome, sent[device], device, got)
        except AuditError as exc:
            ctx.obs.say(f"{device}: the configuration after the run was not audited: {exc.message}")


class BackupGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        ctx = run.ctx
        found = ctx.inv.site(site)
        devices = [d.name for d in found.devices] if found is not None else []
        done = ctx.journal.backups(run.run_id)
        todo = [dev for dev in devices if dev not in done]
        try:
            # a site's devices in parallel: on cold sessions the handshakes overlap
            with ThreadPoolExecutor(max_workers=max(1, min(len(todo), 8))) as pool:
                list(pool.map(lambda dev: take_backup(ctx, run.run_id, dev), todo))
        except CordonError as exc:
            reason = f"backup failed, nothing sent: {exc.message}"
            ctx.obs.gate_failed(run.run_id, site, step.name, reason)
            return Stopped(reason)
        ctx.obs.gate(
            run.run_id,
            site,
            step.name,
            GateStatus.PASSED,
            detail={"devices": devices},
            say=f"{site}: {step.name}: {len(devices)} configurations saved",
        )
        return Passed()

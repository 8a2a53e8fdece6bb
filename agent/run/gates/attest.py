"""Before a zone is reconnected: operators' attestations that it is clean, and its devices'
configuration back to the recorded baseline apart from the isolation (the preconditions gate,
checked before a reconnect_zone step sends anything). Also the attestations themselves, given at
start or later. Imports the gate protocol, the run's context, plan (zones), baseline (pure), the
audit evidence store and the playbook models."""

from __future__ import annotations

from agent import audit
from agent.audit.evidence import path_for
from agent.drivers.base import Backup
from agent.engine import baseline
from agent.engine.plan import Plan, zones_of
from agent.errors import CordonError, RunError
from agent.playbook.models import Playbook, ReconnectZone, Step
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Stopped, Verdict, Waiting
from agent.run.model import RunOptions
from agent.status import GATE_STOPS, OPEN, GateStatus


def preconditions_key(step: str) -> str:
    """The journal's gate name of a reconnect step's preconditions."""
    return f"{step}:preconditions"


class PreconditionsGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        """Each zone attested by an operator, and the devices' config back to the recorded
        baseline apart from the isolation."""
        assert isinstance(step, ReconnectZone)
        ctx, run_id = run.ctx, run.run_id
        key = preconditions_key(step.name)
        gate = ctx.journal.gate(run_id, site, key)
        if gate is not None and gate.status == GateStatus.PASSED:
            return Passed()
        if gate is not None and gate.status in GATE_STOPS:
            return Stopped(f"{key}: {gate.status}")
        found = ctx.inv.site(site)
        assert found is not None
        zones = [z.name for z in zones_of(found, step.zones)]
        attested = ctx.journal.attestations(run_id)
        if step.attest:
            missing = [z for z in zones if (site, z) not in attested]
            if missing:
                ctx.obs.gate(run_id, site, key, GateStatus.OPEN, detail={"missing": missing})
                return Waiting(
                    f"{site}: {step.name}: attestation of zone {', '.join(missing)} "
                    f"(`cordon attest {run_id} {site} ZONE --reason ...`)",
                    None,
                )
        problems: list[str] = []
        if step.baseline_check:
            rows = [r for r in ctx.journal.steps(run_id) if r.site == site and r.step == step.name]
            for device in sorted({r.device for r in rows}):
                problems += _baseline_problems(ctx, device)
        if problems:
            reason = "configuration not back to its baseline: " + "; ".join(problems)
            ctx.obs.preconditions_refused(run_id, site, key, step.name, reason)
            return Stopped(reason)
        who = {z: (attested[site, z].actor if (site, z) in attested else None) for z in zones}
        ctx.obs.preconditions_met(run_id, site, key, step.name, zones, who)
        return Passed()


def _baseline_problems(ctx: Context, device: str) -> list[str]:
    base = ctx.journal.baseline(device)
    if base is None:
        return [f"{device}: no recorded baseline (a backup taken while Cordon had changed nothing)"]
    try:
        now: Backup = ctx.pool.run(device, lambda d: d.backup())
    except CordonError as exc:
        return [f"{device}: cannot read its configuration: {exc.message}"]
    if baseline.digest(now.platform, now.text) == base.digest:
        return []
    lines: list[str] = []
    log_dir = audit.current_log_dir()
    if log_dir is not None:
        stored = path_for(log_dir, base.backup_sha256)
        if stored.exists():
            lines = baseline.differences(now.platform, stored.read_text(), now.text)
    return [
        f"{device}: differs from the baseline taken by run {base.run_id}"
        + (f" ({' | '.join(lines)})" if lines else "")
    ]


def attest(ctx: Context, run_id: str, site: str, zone: str, actor: str, reason: str) -> None:
    """An operator attests that `zone` at `site` is clean and may be reconnected."""
    info = ctx.journal.run(run_id)
    if info.status not in OPEN:
        raise RunError(f"run {run_id} is {info.status}: attestations are closed")
    if site not in info.sites:
        raise RunError(f"run {run_id} does not act on site {site}")
    found = ctx.inv.site(site)
    if found is None or found.zone(zone) is None:
        raise RunError(f"no zone {zone} at site {site}")
    if not reason.strip():
        raise RunError("an attestation needs a reason (who checked what)")
    with audit.bind(run_id=run_id, actor=actor, site=site):
        record_attestation(ctx, run_id, site, zone, actor, reason)


def record_attestation(
    ctx: Context, run_id: str, site: str, zone: str, actor: str, reason: str
) -> None:
    ctx.obs.attested(run_id, site, zone, actor, reason)


def check_attest(ctx: Context, pb: Playbook, p: Plan, opts: RunOptions) -> None:
    """Attestations given at start must name zones this run reconnects."""
    if not opts.attest:
        return
    zones = {
        z.name
        for s in pb.steps
        if isinstance(s, ReconnectZone)
        for site in p.sites
        for z in zones_of(ctx.inv.site(site), s.zones)  # type: ignore[arg-type]
    }
    unknown = sorted(set(opts.attest) - zones)
    if unknown:
        raise RunError(
            f"attestations for {', '.join(unknown)}: playbook {pb.name} reconnects no such "
            f"zone (it reconnects: {', '.join(sorted(zones)) or 'none'})"
        )

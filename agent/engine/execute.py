"""Execution: runs a safe plan through the drivers with the declared concurrency, journaling every
device step before and after it runs, verifying each by read-back, rolling back per the failure
policy; rolls back a whole run on demand; resumes a run interrupted by a crash. Devices are
touched only through the drivers' pool; flow probes only through the injected verifier."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, cast

from agent import audit
from agent.audit.evidence import path_for
from agent.drivers.base import (
    Backup,
    ChangeSet,
    Driver,
    Expectation,
    Facts,
    Via,
    mismatches,
)
from agent.drivers.pool import Pool
from agent.engine import baseline, soak
from agent.engine.journal import (
    GATE_FINAL_OK,
    GATE_STOPS,
    IN_FLIGHT,
    OPEN,
    Journal,
    NewStep,
    StepRow,
    driver_alive,
)
from agent.engine.plan import Plan, plan, require_safe, zone_of_tag, zones_of
from agent.engine.state import NORMAL, DeviceState
from agent.errors import (
    ApprovalError,
    AuditError,
    ConnectError,
    CordonError,
    DeviceError,
    RunError,
    RunStopped,
)
from agent.inventory.models import Inventory
from agent.platforms.capabilities import Counters, DeadMan, InterfaceCounters, having, require
from agent.platforms.linux_nftables.render import nft_comments, nft_table
from agent.playbook.models import (
    CHANGE_ACTIONS,
    OPENING_ACTIONS,
    Approval,
    Playbook,
    ReconnectZone,
    Soak,
    VerifyFlows,
    Wait,
)

# verifier(site, recorded device states) -> problems (empty when the flows are as expected)
FlowVerifier = Callable[[str, Mapping[str, DeviceState]], list[str]]
# a verifier that can be told which flows to probe (`only`: flow names; None: every flow)
ScopedVerifier = Callable[[str, Mapping[str, DeviceState], Collection[str] | None], list[str]]

# the audit trail must keep this much free space for a run to send anything (MiB)
AUDIT_MIN_FREE_MB_DEFAULT = 64.0
# how long a rollback waits for another process driving the run to stop at a step boundary
STOP_WAIT_S_DEFAULT = 120.0
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
    wake_at: float | None = None  # while waiting: when to proceed again (None: on an event)
    waiting: str | None = None  # while waiting: for what


@dataclass(frozen=True)
class RunOptions:
    """What the person starting a run said beyond the playbook (recorded with the run)."""

    soak_seconds: float | None = None  # drills: every soak this long (production: hours)
    reason: str | None = None
    break_glass: bool = False  # an on-call person ran an emergency playbook alone
    needs_approval: bool = False  # two-person rule: wait for a second operator
    approval_timeout: float = 3600.0
    attest: Mapping[str, str] = field(default_factory=dict)  # zone -> why it is clean

    def as_dict(self) -> dict[str, object]:
        return {
            "soak_seconds": self.soak_seconds,
            "reason": self.reason,
            "break_glass": self.break_glass,
            "needs_approval": self.needs_approval,
            "approval_timeout": self.approval_timeout,
            "attest": dict(self.attest),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> RunOptions:
        soak_s = raw.get("soak_seconds")
        timeout = raw.get("approval_timeout", 3600.0)
        attest = raw.get("attest") or {}
        assert isinstance(attest, dict)
        assert soak_s is None or isinstance(soak_s, int | float)
        assert isinstance(timeout, int | float)
        reason = raw.get("reason")
        return cls(
            soak_seconds=float(soak_s) if soak_s is not None else None,
            reason=str(reason) if reason is not None else None,
            break_glass=bool(raw.get("break_glass")),
            needs_approval=bool(raw.get("needs_approval")),
            approval_timeout=float(timeout),
            attest={str(k): str(v) for k, v in attest.items()},
        )


@dataclass
class _Walk:
    """One site's walk through its steps during one `proceed`."""

    outcomes: list[StepOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    waiting: str | None = None
    wake_at: float | None = None
    stopped: bool = False

    def wait(self, why: str, wake_at: float | None) -> _Walk:
        self.waiting, self.wake_at = why, wake_at
        return self

    def stop(self) -> _Walk:
        self.stopped = True
        return self


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
    # one lock per run id for the whole process: two executors (the daemon makes one per
    # caller) never proceed with the same run at once
    _run_locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

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
        # free space the audit log directory must keep before anything is sent (a full disk
        # would leave changes applied and not recorded)
        self.audit_min_free = _setting("CORDON_AUDIT_MIN_FREE_MB", AUDIT_MIN_FREE_MB_DEFAULT)
        # a rollback of a run driven by another process first asks it to stop, this long
        self.stop_wait = _setting("CORDON_STOP_WAIT_S", STOP_WAIT_S_DEFAULT)
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
    ) -> RunReport:
        """Plan `pb`, journal the run with every step, take the sites' locks; nothing is sent
        to a device yet (`proceed` does that)."""
        opts = options or RunOptions()
        p = self.require_safe(pb, self.plan(pb, sites))
        self._check_audit_space("the run was not started, nothing was sent")
        if confirmed is not None and _commands(confirmed) != _commands(p):
            raise RunError(
                "the devices' recorded state changed since the plan was shown",
                hint="look at the new plan, then confirm again",
            )
        self._check_attest(pb, p, opts)
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
        status = "awaiting_approval" if opts.needs_approval else "running"
        self.journal.start_run(
            run_id,
            pb.name,
            pb.level,
            p.sites,
            self.actor,
            steps,
            playbook_json=pb.model_dump_json(by_alias=True),
            options=opts.as_dict(),
            status=status,
        )
        with audit.bind(run_id=run_id, actor=self.actor):
            try:
                self.log.info(
                    "run.started",
                    playbook=pb.name,
                    sites=list(p.sites),
                    level=pb.level,
                    changes=len(p.changes),
                    reason=opts.reason,
                    outcome=status,
                )
            except AuditError as exc:
                # a run nobody can audit never starts, and holds no site
                self.journal.finish_run(
                    run_id, "cancelled", f"the audit trail cannot be written: {exc.message}"
                )
                raise AuditError(
                    f"run {run_id} not started, nothing was sent: {exc.message}", hint=exc.hint
                ) from exc
            if opts.break_glass:
                self.log.warning(
                    "run.break_glass",
                    playbook=pb.name,
                    reason=opts.reason,
                    outcome="flagged for review",
                )
            for site in p.sites:
                for zone, why in sorted(opts.attest.items()):
                    self._record_attestation(run_id, site, zone, self.actor, why)
            if status == "running":
                self._mark_sites(pb, p.sites, run_id)
        return RunReport(run_id, status, plan=p)

    def require_safe(self, pb: Playbook, p: Plan) -> Plan:
        """Refuse an unsafe plan, and audit the refusal (`run.refused`): nothing was sent."""
        if p.refusals:
            with audit.bind(actor=self.actor):
                self.log.warning(
                    "run.refused",
                    playbook=pb.name,
                    sites=list(p.sites),
                    refusals=list(p.refusals),
                    outcome="refused",
                )
        return require_safe(p)

    def drive(self, run_id: str, *, poll: float = 1.0) -> RunReport:
        """Proceed until the run ends, sleeping while it waits (a soak, a wait, an approval or
        an attestation given from another terminal). Interrupted, the run stays open:
        `resume` (or the daemon) takes it on from the journal."""
        outcomes: list[StepOutcome] = []
        while True:
            try:
                report = self.proceed(run_id)
            except RunStopped as exc:
                self.progress(exc.message)
                report = RunReport(
                    run_id, "stopped", outcomes=sorted(outcomes, key=lambda o: o.seq)
                )
                report.waiting = exc.message
                return report
            outcomes += report.outcomes
            if report.status not in ("waiting", "awaiting_approval"):
                report.outcomes = sorted(outcomes, key=lambda o: o.seq)
                return report
            self.progress(f"waiting: {report.waiting}")
            # look again at least every `poll` seconds: an approval or an attestation given
            # from another terminal must be seen at once, not at the gate's deadline
            pause = poll if report.wake_at is None else report.wake_at - time.time()
            time.sleep(min(max(pause, 0.05), poll))

    def proceed(self, run_id: str) -> RunReport:
        """Take the run as far as it can go now: apply pending steps, open or check gates;
        return `waiting` (with when to come back) or the run's final report. Re-entrant: every
        position is read from the journal, so a restart continues where it stopped."""
        with self._lock_for(run_id):
            if self.journal.run(run_id)["status"] in OPEN:
                self.journal.claim_driver(run_id)
            try:
                return self._proceed(run_id)
            except RunStopped:
                self.journal.release_driver(run_id)  # the rollback waiting for us goes on
                raise

    def _proceed(self, run_id: str) -> RunReport:
        info = self.journal.run(run_id)
        if info["status"] not in OPEN:
            return RunReport(run_id, info["status"])
        pb = self._playbook(run_id)
        opts = RunOptions.from_dict(info["options"])
        with audit.bind(run_id=run_id, actor=info["actor"]):
            if info["status"] == "awaiting_approval":
                waiting = self._run_approval(run_id, info, opts, pb)
                if waiting is not None:
                    return waiting
            walks: list[_Walk] = []
            sites: list[str] = list(info["sites"])
            workers = 1 if pb.order == "serial" else pb.limits.max_parallel_sites
            passes = [i + 1 for i in range(len(pb.steps))] if pb.order == "waves" else [None]
            for upto in passes:
                steps = pb.steps if upto is None else pb.steps[:upto]
                if pb.order == "serial":
                    walks = []
                    for site in sites:
                        walks.append(self._walk(pb, opts, run_id, site, steps))
                        if walks[-1].waiting:
                            break
                else:
                    with ThreadPoolExecutor(max_workers=max(1, min(workers, 32))) as pool:
                        walks = list(
                            pool.map(lambda s, st=steps: self._walk(pb, opts, run_id, s, st), sites)
                        )
                if any(w.waiting for w in walks):
                    break
            report = RunReport(run_id, "running")
            for w in walks:
                report.outcomes += w.outcomes
                report.flow_problems += w.problems
            pending = [w for w in walks if w.waiting]
            if pending:
                wakes = [w.wake_at for w in pending if w.wake_at is not None]
                report.status = "waiting"
                report.wake_at = min(wakes) if wakes else None
                report.waiting = "; ".join(sorted({w.waiting or "" for w in pending}))
                self.journal.set_run_status(run_id, "running", report.waiting)
                return report
            # a run asked to stop is never declared finished by its driver: the rollback does
            self._check_stop(run_id, "the end of the run")
            return self._finish(run_id, info, pb, report)

    def _check_stop(self, run_id: str, where: str) -> None:
        why = self.journal.stop_requested(run_id)
        if why:
            raise RunStopped(f"run {run_id}: stopped before {where}: {why}")

    def _finish(
        self, run_id: str, info: Mapping[str, Any], pb: Playbook, report: RunReport
    ) -> RunReport:
        report.status = self._status(run_id)
        report.flow_problems = self._flow_problems(run_id)
        sites = [str(s) for s in info["sites"]]
        self._settle_sites(sites, pb.level, run_id, report.status)
        rows = self.journal.steps(run_id)
        failed = [r for r in rows if r.status in ("failed", "undo_failed")]
        detail = "; ".join(r.error or "" for r in failed)
        stops = [g for g in self.journal.gates(run_id) if g.status in GATE_STOPS]
        detail = "; ".join(
            [*(f"{g.site}: {g.step}: {g.detail.get('reason', g.status)}" for g in stops), detail]
        ).strip("; ")
        self.journal.finish_run(
            run_id, report.status, detail[:2000], release=report.status != "rollback_failed"
        )
        created = info.get("created_at")
        self.log.info(
            "run.finished",
            outcome=report.status,
            duration_s=time.time() - float(created) if isinstance(created, float) else None,
            failed=len(failed),
            flow_problems=len(report.flow_problems),
            detail=detail or None,
        )
        self.progress(f"run {run_id}: {report.status}" + (f" ({detail})" if detail else ""))
        return report

    def _status(self, run_id: str) -> str:
        """done; failed (something failed, nothing undone); reisolated (a soak caught a zone,
        re-isolated it and stopped); expired (an approval never came); rolled_back (all
        changes undone); partial (some sites keep their changes after others were undone);
        rollback_failed."""
        rows = self.journal.steps(run_id)
        gates = self.journal.gates(run_id)
        if any(r.status == "undo_failed" for r in rows):
            return "rollback_failed"
        if any(g.status == "reisolated" for g in gates):
            return "reisolated"
        if any(g.status == "expired" for g in gates):
            return "expired"
        failed = (
            any(r.status == "failed" for r in rows)
            or any(g.status == "failed" for g in gates)
            or bool(self._flow_problems(run_id))
        )
        if not any(r.status == "undone" for r in rows):
            return "failed" if failed else "done"
        left = [r for r in rows if r.status in ("verified", "applied")]
        return "partial" if left else "rolled_back"

    def _flow_problems(self, run_id: str) -> list[str]:
        out: list[str] = []
        for g in self.journal.gates(run_id):
            problems = g.detail.get("problems")
            if isinstance(problems, list):
                out += [str(p) for p in problems]
        return out

    # -- one site's walk -------------------------------------------------------------------

    def _walk(
        self,
        pb: Playbook,
        opts: RunOptions,
        run_id: str,
        site: str,
        steps: Sequence[object],
    ) -> _Walk:
        """Walk `site`'s steps in order from the start, skipping what the journal says is done:
        apply pending device steps (stop, continue or roll back on failure as the policy
        says), pass or wait at gates. Re-entrant."""
        walk = _Walk()
        failures = [0]  # device steps failed so far at this site (the failure budget)
        # a worker thread does not inherit the caller's audit context: bind it again
        with audit.bind(run_id=run_id, actor=self.journal.run(run_id)["actor"], site=site):
            for step in steps:
                name, action = getattr(step, "name", ""), getattr(step, "action", "")
                self._check_stop(run_id, f"{site}: {name}")
                if action in CHANGE_ACTIONS:
                    if not self._walk_change(pb, run_id, site, step, walk, failures):
                        return walk
                    continue
                gate = self.journal.gate(run_id, site, name)
                if gate is not None and gate.status in GATE_FINAL_OK:
                    continue
                if gate is not None and gate.status in GATE_STOPS:
                    return walk.stop()
                if not self._gate(pb, opts, run_id, site, step, walk):
                    return walk
        return walk

    def _walk_change(
        self, pb: Playbook, run_id: str, site: str, step: object, walk: _Walk, failures: list[int]
    ) -> bool:
        """A device step at `site`: apply its pending rows; False when the site stops here."""
        name = getattr(step, "name", "")
        policy = getattr(step, "on_failure", None) or pb.on_failure
        rows = [r for r in self.journal.steps(run_id) if r.site == site and r.step == name]
        pending = any(r.status == "pending" for r in rows)
        if (
            isinstance(step, ReconnectZone)
            and pending
            and not self._preconditions(run_id, site, step, rows, walk)
        ):
            return False
        for row in rows:
            if row.status in IN_FLIGHT or row.status == "undoing":
                raise RunError(
                    f"run {run_id}: step {row.step} on {row.device} is in flight "
                    "(the agent stopped mid-step)",
                    hint=f"`cordon resume {run_id}` settles it by reading the device",
                )
        applied = self._apply_pending(pb, run_id, [r for r in rows if r.status == "pending"])
        for row in rows:
            if row.status in ("undone", "undo_failed"):
                walk.stop()
                return False
            if row.status == "pending":
                outcome = applied[row.seq]
                walk.outcomes.append(outcome)
                if outcome.status != "failed":
                    continue
                if policy == "rollback":
                    # everything this site changed, the failed step included (it may be half
                    # applied), as the journal says now
                    done = [
                        r for r in self.journal.steps(run_id) if r.site == site and r.seq <= row.seq
                    ]
                    walk.outcomes += self._undo_rows(done)
            elif row.status != "failed":
                continue
            failures[0] += 1
            if policy != "continue" or failures[0] > pb.limits.failure_budget_per_site:
                walk.stop()
                return False
        return True

    def _apply_pending(
        self, pb: Playbook, run_id: str, rows: Sequence[StepRow]
    ) -> dict[int, StepOutcome]:
        """Apply one step's pending rows at one site. With `limits.one_switch_at_a_time`
        (the default) one device at a time, each verified before the next starts: never both
        switches of a redundant pair in transition at once. Without it, the step's devices
        are changed in parallel (rows of one device still in order)."""
        by_device: dict[str, list[StepRow]] = {}
        for row in rows:
            by_device.setdefault(row.device, []).append(row)
        if pb.limits.one_switch_at_a_time or len(by_device) < 2:
            return {r.seq: self._backup_then_apply(run_id, r) for r in rows}
        actor = self.journal.run(run_id)["actor"]
        site = rows[0].site

        def one_device(device_rows: list[StepRow]) -> list[StepOutcome]:
            with audit.bind(run_id=run_id, actor=actor, site=site):
                return [self._backup_then_apply(run_id, r) for r in device_rows]

        with ThreadPoolExecutor(max_workers=min(len(by_device), 16)) as pool:
            outs = [o for group in pool.map(one_device, by_device.values()) for o in group]
        return {o.seq: o for o in outs}

    def _gate(
        self, pb: Playbook, opts: RunOptions, run_id: str, site: str, step: object, walk: _Walk
    ) -> bool:
        """Handle one non-device step; True to go on to the next step."""
        name, action = getattr(step, "name", ""), getattr(step, "action", "")
        if action == "backup_config":
            return self._gate_backup(run_id, site, name, walk)
        if action == "verify_flows":
            if self.verifier is None:
                self.journal.set_gate(
                    run_id, site, name, "skipped", detail={"why": "no flow probe source"}
                )
                self.log.warning("step.skipped", step=name, why="no flow probe source")
                return True
            only = None
            if isinstance(step, VerifyFlows) and step.must_survive_only:
                only = {
                    f.name
                    for f in self.inv.flows
                    if f.must_survive and site in (f.source.site, f.destination.site)
                }
            try:
                problems = self._verify_flows(site, only)
            except CordonError as exc:
                problems = [f"{site}: flow check could not run: {exc.message}"]
            walk.problems += problems
            detail: dict[str, Any] = {"problems": problems}
            if only is not None:
                detail["scope"] = f"must-survive flows only ({len(only)})"
            self.journal.set_gate(run_id, site, name, "passed", detail=detail)
            return True
        if isinstance(step, Wait):
            return self._gate_wait(run_id, site, step, walk)
        if isinstance(step, Approval):
            return self._gate_approval(run_id, site, step, walk)
        if isinstance(step, Soak):
            return self._gate_soak(pb, opts, run_id, site, step, walk)
        raise RunError(f"step {name!r}: no executor for action {action!r}")

    def _verify_flows(self, site: str, only: Collection[str] | None) -> list[str]:
        """The injected verifier on the flows of `site` (or only the flows named in `only`)."""
        assert self.verifier is not None
        states = self.journal.device_states()
        if only is None:
            return self.verifier(site, states)
        return cast(ScopedVerifier, self.verifier)(site, states, only)

    def _gate_wait(self, run_id: str, site: str, step: Wait, walk: _Walk) -> bool:
        now = time.time()
        gate = self.journal.gate(run_id, site, step.name)
        if gate is None:
            wake = now + step.seconds
            self.journal.set_gate(run_id, site, step.name, "open", wake_at=wake)
            self.progress(f"{site}: {step.name}: waiting {step.seconds:g} s")
            walk.wait(f"{site}: {step.name} until {_clock(wake)}", wake)
            return False
        if gate.wake_at is not None and now < gate.wake_at:
            walk.wait(f"{site}: {step.name} until {_clock(gate.wake_at)}", gate.wake_at)
            return False
        self.journal.set_gate(run_id, site, step.name, "passed")
        return True

    def _backup_then_apply(self, run_id: str, row: StepRow) -> StepOutcome:
        if row.device not in self.journal.backups(run_id):
            try:
                self._backup(run_id, row.device)
            except CordonError as exc:
                error = f"backup before the first change failed, nothing sent: {exc.message}"
                self.journal.mark(row.run_id, row.seq, "failed", error)
                self.log.error(
                    "step.failed", step=row.step, device=row.device, outcome="failed", error=error
                )
                return StepOutcome(
                    row.seq, row.site, row.step, row.device, row.method, "failed", error
                )
        return self._apply(row)

    def _backup(self, run_id: str, device: str) -> Backup:
        """Back up `device`; while Cordon has changed nothing on it, this is its baseline."""
        backup: Backup = self.pool.run(device, lambda d: d.backup())
        self.journal.add_backup(run_id, device, backup.sha256)
        if self.journal.device_states().get(device, NORMAL) == NORMAL:
            self.journal.set_baseline(
                device, baseline.digest(backup.platform, backup.text), backup.sha256, run_id
            )
        return backup

    def scheduled_backup(self, device: str) -> Backup:
        """A daemon's periodic backup (evidence; the baseline while Cordon changed nothing)."""
        return self._backup(f"scheduled-{datetime.now(UTC):%Y%m%d}", device)

    def _gate_backup(self, run_id: str, site: str, name: str, walk: _Walk) -> bool:
        found = self.inv.site(site)
        devices = [d.name for d in found.devices] if found is not None else []
        done = self.journal.backups(run_id)
        todo = [dev for dev in devices if dev not in done]
        try:
            # a site's devices in parallel: on cold sessions the handshakes overlap
            with ThreadPoolExecutor(max_workers=max(1, min(len(todo), 8))) as pool:
                list(pool.map(lambda dev: self._backup(run_id, dev), todo))
        except CordonError as exc:
            reason = f"backup failed, nothing sent: {exc.message}"
            self.journal.set_gate(run_id, site, name, "failed", detail={"reason": reason})
            self.log.error("step.failed", step=name, outcome="failed", error=reason)
            walk.stop()
            return False
        self.journal.set_gate(run_id, site, name, "passed", detail={"devices": devices})
        self.progress(f"{site}: {name}: {len(devices)} configurations saved")
        return True

    # -- gates: approvals, attestations, preconditions, soak ---------------------------------

    def _lock_for(self, run_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._run_locks.setdefault(run_id, threading.Lock())

    def _playbook(self, run_id: str) -> Playbook:
        text = self.journal.playbook_json(run_id)
        if text is None:
            raise RunError(f"run {run_id} was recorded without its playbook; it cannot proceed")
        return Playbook.model_validate_json(text)

    def _mark_sites(self, pb: Playbook, sites: Sequence[str], run_id: str) -> None:
        mode = "reconnecting" if pb.level == "L0" else "isolating"
        known = self.journal.sites()
        for site in sites:
            level = pb.level if pb.level != "L0" else known.get(site, {}).get("level")
            self.journal.set_site(site, mode, level, run_id, self.actor)

    def _run_approval(
        self, run_id: str, info: Mapping[str, Any], opts: RunOptions, pb: Playbook
    ) -> RunReport | None:
        """Two-person rule: None once a second operator approved, else the waiting report (or
        the expired run's final one: nothing was sent, the outcome is declared)."""
        approved = self.journal.approval(run_id)
        if approved is not None:
            self.journal.set_run_status(run_id, "running")
            self._mark_sites(pb, info["sites"], run_id)
            return None
        deadline = float(info["created_at"]) + opts.approval_timeout
        if time.time() < deadline:
            why = f"approval by a second operator until {_clock(deadline)}"
            self.journal.set_run_status(run_id, "awaiting_approval", why)
            return RunReport(run_id, "awaiting_approval", wake_at=deadline, waiting=why)
        detail = f"no second operator approved within {opts.approval_timeout:g} s: nothing was sent"
        self.journal.finish_run(run_id, "expired", detail)
        self.log.warning("run.expired", outcome="expired", detail=detail)
        return RunReport(run_id, "expired", waiting=None)

    def approve(self, run_id: str, actor: str, reason: str | None = None) -> str:
        """A second operator approves the run (or its open approval step). Refused for the
        run's own author, a run that waits for no approval, or one that expired."""
        info = self.journal.run(run_id)
        if info["status"] not in OPEN:
            raise ApprovalError(
                f"run {run_id} is {info['status']}: there is nothing to approve",
                hint="start the playbook again if it is still needed",
            )
        if actor == info["actor"]:
            raise ApprovalError(
                f"{actor} started run {run_id} and cannot approve it (two-person rule)",
                hint="a second operator runs `cordon approve " + run_id + "`",
            )
        step = ""
        if info["status"] != "awaiting_approval":
            open_steps = [
                g.step
                for g in self.journal.gates(run_id)
                if g.status == "open" and g.detail.get("kind") == "approval"
            ]
            if not open_steps:
                raise ApprovalError(f"run {run_id} is not waiting for an approval")
            step = open_steps[0]
        else:
            opts = RunOptions.from_dict(info["options"])
            if time.time() >= float(info["created_at"]) + opts.approval_timeout:
                self.proceed(run_id)  # declares the expiry
                raise ApprovalError(f"run {run_id}: the approval window has closed (expired)")
        self.journal.approve(run_id, step, actor, reason)
        with audit.bind(run_id=run_id, actor=actor):
            self.log.info(
                "run.approved", step=step or None, reason=reason, author=info["actor"], outcome="ok"
            )
        return step or "run"

    def _gate_approval(self, run_id: str, site: str, step: Approval, walk: _Walk) -> bool:
        now = time.time()
        gate = self.journal.gate(run_id, site, step.name)
        if gate is None:
            wake = now + step.timeout_seconds
            self.journal.set_gate(
                run_id, site, step.name, "open", wake_at=wake, detail={"kind": "approval"}
            )
            gate = self.journal.gate(run_id, site, step.name)
            assert gate is not None
        if self.journal.approval(run_id, step.name) is not None:
            self.journal.set_gate(run_id, site, step.name, "passed", detail={"kind": "approval"})
            return True
        if gate.wake_at is not None and now >= gate.wake_at:
            if step.on_timeout == "proceed":
                self.journal.set_gate(
                    run_id,
                    site,
                    step.name,
                    "passed",
                    detail={"kind": "approval", "reason": "timed out; the playbook says proceed"},
                )
                self.log.warning("run.approval_timeout", step=step.name, outcome="proceed")
                return True
            reason = f"no approval within {step.timeout_seconds:g} s"
            self.journal.set_gate(
                run_id, site, step.name, "expired", detail={"kind": "approval", "reason": reason}
            )
            self.log.warning("run.approval_timeout", step=step.name, outcome="abort")
            walk.stop()
            return False
        walk.wait(f"{site}: {step.name}: approval by a second operator", gate.wake_at)
        return False

    def attest(self, run_id: str, site: str, zone: str, actor: str, reason: str) -> None:
        """An operator attests that `zone` at `site` is clean and may be reconnected."""
        info = self.journal.run(run_id)
        if info["status"] not in OPEN:
            raise RunError(f"run {run_id} is {info['status']}: attestations are closed")
        if site not in info["sites"]:
            raise RunError(f"run {run_id} does not act on site {site}")
        found = self.inv.site(site)
        if found is None or found.zone(zone) is None:
            raise RunError(f"no zone {zone} at site {site}")
        if not reason.strip():
            raise RunError("an attestation needs a reason (who checked what)")
        with audit.bind(run_id=run_id, actor=actor, site=site):
            self._record_attestation(run_id, site, zone, actor, reason)

    def _record_attestation(
        self, run_id: str, site: str, zone: str, actor: str, reason: str
    ) -> None:
        self.journal.attest(run_id, site, zone, actor, reason)
        self.log.info("reconnect.attested", zone=zone, reason=reason, outcome="recorded")

    def _check_attest(self, pb: Playbook, p: Plan, opts: RunOptions) -> None:
        """Attestations given at start must name zones this run reconnects."""
        if not opts.attest:
            return
        zones = {
            z.name
            for s in pb.steps
            if isinstance(s, ReconnectZone)
            for site in p.sites
            for z in zones_of(self.inv.site(site), s.zones)  # type: ignore[arg-type]
        }
        unknown = sorted(set(opts.attest) - zones)
        if unknown:
            raise RunError(
                f"attestations for {', '.join(unknown)}: playbook {pb.name} reconnects no such "
                f"zone (it reconnects: {', '.join(sorted(zones)) or 'none'})"
            )

    def _preconditions(
        self, run_id: str, site: str, step: ReconnectZone, rows: Sequence[StepRow], walk: _Walk
    ) -> bool:
        """Before reconnecting zones: each attested by an operator, and the devices' config
        back to the recorded baseline apart from the isolation. True to go on."""
        key = f"{step.name}:preconditions"
        gate = self.journal.gate(run_id, site, key)
        if gate is not None and gate.status == "passed":
            return True
        if gate is not None and gate.status in GATE_STOPS:
            walk.stop()
            return False
        found = self.inv.site(site)
        assert found is not None
        zones = [z.name for z in zones_of(found, step.zones)]
        attested = self.journal.attestations(run_id)
        if step.attest:
            missing = [z for z in zones if (site, z) not in attested]
            if missing:
                self.journal.set_gate(run_id, site, key, "open", detail={"missing": missing})
                walk.wait(
                    f"{site}: {step.name}: attestation of zone {', '.join(missing)} "
                    f"(`cordon attest {run_id} {site} ZONE --reason ...`)",
                    None,
                )
                return False
        problems: list[str] = []
        if step.baseline_check:
            for device in sorted({r.device for r in rows}):
                problems += self._baseline_problems(run_id, device)
        if problems:
            reason = "configuration not back to its baseline: " + "; ".join(problems)
            self.journal.set_gate(run_id, site, key, "failed", detail={"reason": reason})
            self.log.error("step.failed", step=step.name, outcome="refused", error=reason)
            self.progress(f"{site}: {step.name}: refused: {reason}")
            walk.stop()
            return False
        who = {z: attested.get((site, z), {}).get("actor") for z in zones}
        self.journal.set_gate(
            run_id, site, key, "passed", detail={"attested_by": who, "baseline": "matches"}
        )
        self.log.info(
            "reconnect.preconditions", step=step.name, zones=zones, attested_by=who, outcome="ok"
        )
        return True

    def _baseline_problems(self, run_id: str, device: str) -> list[str]:
        base = self.journal.baseline(device)
        if base is None:
            return [
                f"{device}: no recorded baseline (a backup taken while Cordon had changed nothing)"
            ]
        try:
            now: Backup = self.pool.run(device, lambda d: d.backup())
        except CordonError as exc:
            return [f"{device}: cannot read its configuration: {exc.message}"]
        if baseline.digest(now.platform, now.text) == base["digest"]:
            return []
        lines: list[str] = []
        log_dir = audit.current_log_dir()
        if log_dir is not None:
            stored = path_for(log_dir, str(base["backup_sha256"]))
            if stored.exists():
                lines = baseline.differences(now.platform, stored.read_text(), now.text)
        return [
            f"{device}: differs from the baseline taken by run {base['run_id']}"
            + (f" ({' | '.join(lines)})" if lines else "")
        ]

    def _gate_soak(
        self, pb: Playbook, opts: RunOptions, run_id: str, site: str, step: Soak, walk: _Walk
    ) -> bool:
        """One tick of a soak: sample the checks, compare with the previous sample (journaled,
        so a restart continues the same soak), re-isolate on an anomaly, pass when healthy for
        the whole time."""
        now = time.time()
        gate = self.journal.gate(run_id, site, step.name)
        seconds = opts.soak_seconds if opts.soak_seconds is not None else step.seconds
        interval = step.interval if opts.soak_seconds is None else min(step.interval, seconds / 5)
        interval = max(interval, 0.2)
        if gate is None:
            previous = _previous_change(pb, step.name)
            if previous is not None and not any(
                r.site == site and r.step == previous for r in self.journal.steps(run_id)
            ):
                why = f"step {previous} changed nothing at {site}: nothing new to watch"
                self.journal.set_gate(run_id, site, step.name, "skipped", detail={"why": why})
                self.progress(f"{site}: {step.name}: skipped ({why})")
                return True
            detail: dict[str, Any] = {
                "kind": "soak",
                "until": now + seconds,
                "interval": interval,
                "ticks": 0,
                "sample": None,
            }
            self.log.info("soak.started", step=step.name, seconds=seconds, interval=interval)
            self.progress(f"{site}: {step.name}: soak {seconds:g} s, checks every {interval:g} s")
        else:
            detail = dict(gate.detail)
            if gate.wake_at is not None and now < gate.wake_at:
                walk.wait(self._soak_why(site, step, detail, now), gate.wake_at)
                return False
        states = self.journal.device_states()
        found = self.inv.site(site)
        assert found is not None
        watch = soak.watched(found, states)
        prev = soak.Sample.from_dict(detail["sample"]) if detail.get("sample") else None
        anomalies: list[soak.Anomaly] = []
        try:
            cur = self._sample(found.name, watch, step)
        except CordonError as exc:
            cur = None
            anomalies.append(soak.Anomaly(None, f"checks could not be read: {exc.message}"))
        if cur is not None:
            anomalies += soak.evaluate(
                prev,
                cur,
                watch,
                max_new_per_s=step.max_new_connections_per_s,
                max_uplink_pps=step.max_uplink_pps,
            )
        if step.probes and self.verifier is not None:
            try:
                anomalies += [soak.Anomaly(None, p) for p in self.verifier(site, states)]
            except CordonError as exc:
                anomalies.append(soak.Anomaly(None, f"flow probes could not run: {exc.message}"))
        detail["ticks"] = int(detail.get("ticks", 0)) + 1
        if cur is not None:
            detail["sample"] = cur.as_dict()
        if anomalies:
            self._reisolate(pb, run_id, site, step, anomalies, detail)
            walk.stop()
            return False
        if now >= float(detail["until"]):
            self.journal.set_gate(run_id, site, step.name, "passed", detail=detail)
            self.log.info(
                "soak.passed", step=step.name, ticks=detail["ticks"], outcome="healthy, advancing"
            )
            self.progress(f"{site}: {step.name}: healthy for {seconds:g} s, advancing")
            return True
        wake = min(now + interval, float(detail["until"]))
        self.journal.set_gate(run_id, site, step.name, "open", wake_at=wake, detail=detail)
        walk.wait(self._soak_why(site, step, detail, now), wake)
        return False

    @staticmethod
    def _soak_why(site: str, step: Soak, detail: Mapping[str, Any], now: float) -> str:
        left = max(float(detail["until"]) - now, 0.0)
        return f"{site}: {step.name}: soaking, healthy so far, {left:.0f} s left"

    def _sample(self, site: str, watch: Mapping[str, Mapping[str, str]], step: Soak) -> soak.Sample:
        counters: dict[str, dict[str, int]] = {}
        for device in sorted(watch):
            read = self.pool.run(device, _rule_counters)
            counters[device] = {c: read[c] for c in watch[device] if c in read}
        uplink: dict[str, int] = {}
        found = self.inv.site(site)
        if step.max_uplink_pps is not None and found is not None:
            for link in (lk for lk in found.links if lk.kind.value == "wan"):
                packets = self.pool.run(
                    link.device, partial(_uplink_packets, link.interface), via="snmp"
                )
                uplink[f"{link.device} {link.interface}"] = packets
        return soak.Sample(time.time(), counters, uplink)

    def _reisolate(
        self,
        pb: Playbook,
        run_id: str,
        site: str,
        step: Soak,
        anomalies: Sequence[soak.Anomaly],
        detail: dict[str, Any],
    ) -> None:
        """Cut again what the soak found unhealthy: the zones at fault (their reconnection
        rules removed, as a new journaled step), or, when no zone can be blamed, the opening
        step just before the soak (undone)."""
        zones = sorted({a.zone for a in anomalies if a.zone})
        reason = "; ".join(a.what for a in anomalies)
        self.log.warning("soak.anomaly", step=step.name, zones=zones, reason=reason)
        self.progress(f"{site}: {step.name}: ANOMALY: {reason}")
        outcomes: list[StepOutcome] = []
        if zones:
            states = self.journal.device_states()
            found = self.inv.site(site)
            assert found is not None
            for dev in found.devices:
                cur = states.get(dev.name, NORMAL)
                new = cur.without_rules(lambda r: zone_of_tag(r.tag) in zones)
                if new == cur:
                    continue
                name = f"reisolate {','.join(zones)}"
                seq = self.journal.append_step(
                    run_id,
                    NewStep(
                        0,
                        site,
                        name,
                        dev.name,
                        "nft",
                        tuple(nft_table(new).splitlines()),
                        tuple(nft_table(cur).splitlines()),
                        cur,
                        new,
                    ),
                )
                row = next(r for r in self.journal.steps(run_id) if r.seq == seq)
                outcomes.append(self._apply(row))
        else:
            last = _previous_change(pb, step.name, OPENING_ACTIONS)
            rows = [r for r in self.journal.steps(run_id) if r.site == site and r.step == last]
            outcomes += self._undo_rows(rows)
            zones = [f"(step {last})"] if last else []
        ok = all(o.status in ("verified", "undone") for o in outcomes)
        detail.update(
            reason=reason,
            reisolated=zones,
            outcome="re-isolated" if ok else "re-isolation FAILED: check the site now",
        )
        self.journal.set_gate(run_id, site, step.name, "reisolated", detail=detail)
        log = self.log.warning if ok else self.log.error
        log(
            "reconnect.reisolated",
            step=step.name,
            zones=zones,
            reason=reason,
            outcome=detail["outcome"],
        )
        self.progress(f"{site}: {', '.join(zones)} re-isolated ({detail['outcome']}); run stopped")

    def _before_send(self, row: StepRow, *, forward: bool = True) -> None:
        """Checked before a step's intent is journaled: the journal is still the file at its
        path (SQLite writes on into a deleted or replaced file without a word), the audit log
        has room, and (going forward) nobody asked the run to stop. Raises: nothing is sent."""
        where = f"run {row.run_id}: stopped before {row.step} on {row.device}"
        lost = self.journal.lost()
        if lost is not None:
            self.progress(f"JOURNAL LOST: {lost}; {where}: nothing more is sent")
            with contextlib.suppress(AuditError):  # already failing: the error below says it
                self.log.error("run.stopped", step=row.step, device=row.device, reason=lost)
            raise RunError(
                f"{lost} while the run was running; {where}: nothing more is sent",
                hint="what was sent is in the audit log (`cordon audit report --run "
                f"{row.run_id}`); the devices keep it: check them, then restore the state "
                "directory from a backup or roll back by hand",
            )
        self._check_audit_space(f"{where}, nothing sent")
        if forward:
            why = self.journal.stop_requested(row.run_id)
            if why:
                raise RunStopped(f"{where}: {why}")

    def _check_audit_space(self, where: str) -> None:
        """Refuse to send anything while the audit log's disk has less than the minimum free
        (`CORDON_AUDIT_MIN_FREE_MB`): a change must never outrun its record."""
        log_dir = audit.current_log_dir()
        # The writer makes its directory at the first record: measure the disk it will be on.
        probe = next((p for p in (log_dir, *log_dir.parents) if p.exists()), log_dir)
        try:
            free = shutil.disk_usage(probe).free
        except OSError as exc:
            raise AuditError(f"the audit log {log_dir} cannot be read: {exc.strerror}") from exc
        if free < self.audit_min_free * 2**20:
            raise AuditError(
                f"the audit log {log_dir} has {free / 2**20:.1f} MiB free, under the "
                f"{self.audit_min_free:g} MiB minimum (CORDON_AUDIT_MIN_FREE_MB): {where}",
                hint="free space on the log directory's disk, then try again "
                "(an open run: `cordon resume RUN_ID`)",
            )

    def _apply(self, row: StepRow) -> StepOutcome:
        self._before_send(row)
        t = time.perf_counter()
        outcome = StepOutcome(row.seq, row.site, row.step, row.device, row.method, "started")
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
        try:
            # a step declared fail-open must not stay closed if we lose the device mid-way
            self._guarded(
                row,
                row.commands,
                row.before,
                row.after,
                revert=row.undo,
                guard=row.guard_apply,
                action=row.step,
                on_applied=lambda: self.journal.mark(row.run_id, row.seq, "applied"),
            )
        except AuditError as exc:
            # the device may well have changed: journal what it shows, then stop sending
            shown = self._settle_unaudited(row)
            raise AuditError(
                f"run {row.run_id}: the audit trail failed during {row.step} on "
                f"{row.device} ({exc.message}); the device {shown}; the run stops: nothing "
                "more is sent",
                hint=f"free the audit log's disk, then `cordon resume {row.run_id}`",
            ) from exc
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

    def _settle_unaudited(self, row: StepRow) -> str:
        """After the trail failed mid-step: read the device (a read that writes no audit
        record) and journal what it shows: the step's target (verified), its start (failed:
        nothing applied), or neither (left in flight for `resume`)."""
        try:
            facts: Facts = self.pool.run(row.device, lambda d: d.facts(), via=_via(row.method))
        except CordonError as exc:
            return f"cannot be read ({exc.message}): the step stays in flight for `resume`"
        if _facts_show(facts, row.method, row.before, row.after):
            self.journal.settle_step(
                row.run_id,
                row.seq,
                "verified",
                row.device,
                self._merged(row.device, row.method, row.after),
            )
            return "shows the change applied (journaled as verified)"
        if _facts_show(facts, row.method, row.after, row.before):
            self.journal.mark(row.run_id, row.seq, "failed", "audit trail failed: nothing applied")
            return "shows nothing applied (journaled as failed)"
        return "shows neither state: the step stays in flight for `resume`"

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

    def _settle_sites(
        self, sites: Sequence[str], level: str, run_id: str, status: str = "done"
    ) -> None:
        """Each site's mode from what is recorded on its devices now. After a recovery run
        (L0) with isolation left (remote access, segmentation...), the site is `reconnected`
        at its former level; a soak that re-isolated a zone leaves it `isolated`."""
        states = self.journal.device_states()
        known = self.journal.sites()
        for name in sites:
            site = self.inv.site(name)
            isolated = site is not None and any(
                states.get(d.name, NORMAL) != NORMAL for d in site.devices
            )
            mode, lvl = ("isolated", level) if isolated else ("normal", None)
            if isolated and level == "L0":
                # a recovery run that ended done leaves the site reconnected (with what it
                # keeps cut); failed, re-isolated or rolled back, the devices are isolated
                lvl = known.get(name, {}).get("level")
                mode = "reconnected" if status == "done" else "isolated"
            self.journal.set_site(name, mode, lvl, run_id, self.actor)

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
        self._before_send(row, forward=False)
        self.journal.mark(row.run_id, row.seq, "undoing")  # resume settles it if we crash
        try:
            if not self._shows(row, row.after, row.before):  # a rejected step sent nothing
                self._guarded(
                    row,
                    row.undo,
                    row.after,
                    row.before,
                    revert=row.commands,
                    guard=not row.guard_apply,
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
        if device is None and self.journal.run(run_id)["status"] in OPEN:
            self._stop_driver(run_id)
        with self._lock_for(run_id):
            return self._rollback(run_id, device)

    def _stop_driver(self, run_id: str) -> None:
        """A rollback of an open run: ask whoever drives it to stop at its next step boundary
        and wait until it has (bounded), so the run sends nothing after the undo. Refused
        ("run in progress") if it does not stop in time: nothing is rolled back."""
        self.journal.request_stop(run_id, f"a rollback was ordered by {self.actor}")
        driver = self.journal.run(run_id)["driver"]
        if not driver_alive(driver) or driver.get("pid") == os.getpid():
            return  # nobody else drives it (in this process: the run lock serialises)
        self.progress(f"run {run_id} is driven by process {driver.get('pid')}: asking it to stop")
        deadline = time.monotonic() + self.stop_wait
        while time.monotonic() < deadline:
            time.sleep(0.1)
            info = self.journal.run(run_id)
            if info["status"] not in OPEN or not driver_alive(info["driver"]):
                return
        raise RunError(
            f"run {run_id} is in progress: process {driver.get('pid')} drives it and did not "
            f"stop at a step boundary within {self.stop_wait:g} s; nothing was rolled back",
            hint=f"it stops before its next step; then `cordon rollback {run_id}` again",
        )

    def _rollback(self, run_id: str, device: str | None) -> RunReport:
        info = self.journal.run(run_id)
        rows = [r for r in self.journal.steps(run_id) if device is None or r.device == device]
        todo = [r for r in rows if r.status in UNDOABLE]
        if not todo and device is None and info["status"] in OPEN:
            # an open run that changed nothing yet (awaiting approval, waiting for an
            # attestation): rolling it back cancels it and frees its sites
            self.journal.finish_run(run_id, "cancelled", f"cancelled by {self.actor}")
            with audit.bind(run_id=run_id, actor=self.actor):
                self.log.info("run.cancelled", outcome="cancelled", detail="nothing was sent")
            return RunReport(run_id, "cancelled")
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
        self._settle_sites(sites, info["level"], run_id, status)
        if device is None or info["status"] != "running":
            final = status if device is None else info["status"]
            self.journal.finish_run(run_id, final, release=status != "rollback_failed")
        return RunReport(run_id, status, outcomes)

    def resume(self, run_id: str, *, roll_back: bool = False, drive: bool = True) -> RunReport:
        """After a crash or a restart: settle every in-flight step by reading its device, then
        take the run on from the journal (gates included: a soak continues where it was), or
        roll it back. A device that cannot be read keeps the run open (and its sites locked):
        nothing is guessed. With `drive=False`, proceed once and return (the daemon schedules
        the rest)."""
        t0 = time.perf_counter()
        info = self.journal.run(run_id)
        if info["status"] not in OPEN:
            return RunReport(run_id, f"already {info['status']}")
        outcomes: list[StepOutcome] = []
        with self._lock_for(run_id), audit.bind(run_id=run_id, actor=self.actor):
            self.journal.claim_driver(run_id)
            self.journal.clear_stop(run_id)  # an operator's order to go on
            for row in self.journal.steps(run_id):
                if row.status in IN_FLIGHT or row.status == "undoing":
                    outcomes.append(self._settle(row))
            self.log.info("run.resumed", settled=len(outcomes), roll_back=roll_back)
            if roll_back:
                outcomes += self._undo_rows(self.journal.steps(run_id))
                status = self._status(run_id)
                if status == "done" and any(
                    r.status == "pending" for r in self.journal.steps(run_id)
                ):
                    status = "rolled_back"
                self._settle_sites(info["sites"], info["level"], run_id, status)
                self.journal.finish_run(
                    run_id, status, "resumed, rolled back", release=status != "rollback_failed"
                )
                return RunReport(run_id, status, outcomes, duration_s=time.perf_counter() - t0)
        report = self.drive(run_id) if drive else self.proceed(run_id)
        report.outcomes = sorted(outcomes + report.outcomes, key=lambda o: o.seq)
        report.duration_s = time.perf_counter() - t0
        return report

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
            arms = having(d, DeadMan)
            return arms.arm_revert(revert, self.deadman) if arms is not None else None

        return self.pool.run(row.device, arm)


def _setting(name: str, default: float) -> float:
    """A numeric setting from the environment (its default when unset or not a number >= 0)."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default


def _facts_show(facts: Facts, method: str, frm: DeviceState, to: DeviceState) -> bool:
    """Do facts read from a device show the change `frm` -> `to` (for this method)?"""
    exp = expectation(method, frm, to)
    if method != "nft":
        return not mismatches(facts, exp)
    present = bool(facts.ours.strip())
    comments = set(re.findall(r'comment "([^"]*)"', facts.ours))
    return present == exp.table_present and (
        exp.rule_comments is None or comments == set(exp.rule_comments)
    )


def _previous_change(
    pb: Playbook, step: str, actions: Sequence[str] = CHANGE_ACTIONS
) -> str | None:
    """The last step of one of `actions` before `step` in the playbook (what a soak watches,
    or what it undoes when no zone can be blamed)."""
    names = [s.name for s in pb.steps]
    earlier = [s for s in pb.steps[: names.index(step)] if s.action in actions]
    return earlier[-1].name if earlier else None


def _rule_counters(d: Driver) -> dict[str, int]:
    return {str(k): int(v) for k, v in require(d, Counters).rule_counters().items()}


def _uplink_packets(interface: str, d: Driver) -> int:
    return int(
        require(d, InterfaceCounters).interface_counters([interface])[interface].out_ucast_pkts
    )


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


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
    return lambda d: (arms := having(d, DeadMan)) is not None and arms.confirm(token)

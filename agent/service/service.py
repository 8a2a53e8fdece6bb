"""The application behind the daemon's API and `cordon ... --local`: the `Service`, over one
inventory, one journal, one warm device pool and one APScheduler 3.x scheduler with a persistent
SQLAlchemy job store. It satisfies the API's `Backend` Protocol structurally: it never imports
the API; who an order acts for and how it was authorized are the small Protocols `Actor` and
`Authorization` below (the API's `Caller` and `Decision` are both).

Jobs (module-level functions in `agent.service.jobs`, so the store can persist them): proceed a
run at its next wake-up (soak ticks, waits, approval deadlines), poll every device's isolation
state (drift), back up configurations. Jobs and the journal survive a restart: on start, open
runs are settled by reading their devices and scheduled again, and a soak continues where it was.

The same class runs in-process for `cordon ... --local` (no scheduler: the CLI drives the run),
so a local order is authorized and audited exactly as one sent to the daemon.

Imports the executor (`agent.run`), the engine's journal and plan, the drivers' pool, the
inventory and playbook loaders, the audit trail, `agent.status`, `agent.errors`, its own package
and `agent.wire`: every answer is built through its wire model, the shape the client parses and
the CLI renders. Never the API, the daemon process, click, a renderer or the twin (the flow
sources are given to it by a composition root)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent import audit, settings
from agent.drivers.pool import Pool
from agent.engine.journal import Journal, RunRecord, driver_alive
from agent.engine.journal import at as journal_at
from agent.engine.lease import Lease, LeaseLoop, Timing, default_node_id
from agent.engine.plan import Plan
from agent.errors import (
    AuditError,
    ConfigError,
    CordonError,
    NotFound,
    PlanError,
    RunError,
    RunStopped,
    StandbyError,
    StateLostError,
)
from agent.inventory import load as load_inventory
from agent.inventory.models import Inventory
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions, RunReport, new_run_id
from agent.service.changes import RECHECK_S, Changes, version
from agent.service.health import at as health_at
from agent.service.playbooks import PlaybookMeta, playbook_path
from agent.service.poll import Poller, reapply_recorded
from agent.status import OPEN, Outcome, RunStatus, SiteMode, StepStatus
from agent.wire import (
    JSON,
    FlowChange,
    LinkChange,
    PlanChange,
    PlanOut,
    PlanStep,
    RunStarted,
    RunView,
)

# The answers of status, run lists, approvals, rollbacks, attestations and incidents
# (agent.wire.reports, agent.wire.steering) are imported where they are made: a `cordon run
# --local` does not create their classes (#18).

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from agent.run.model import Sources

DAEMON_ACTOR = "cordon-daemon"


class Actor(Protocol):
    """Who an order acts for: the name recorded in the journal and the audit trail."""

    @property
    def user(self) -> str: ...


class Authorization(Protocol):
    """How a run was authorized: on-call alone on an emergency playbook (review afterwards), or
    held for a second operator's approval."""

    @property
    def break_glass(self) -> bool: ...

    @property
    def needs_approval(self) -> bool: ...


def plan_digest(p: Plan) -> str:
    """What a person confirmed: the playbook, the sites and every command, hashed."""
    body = {
        "playbook": p.playbook,
        "sites": list(p.sites),
        "changes": [[c.device, c.method, list(c.commands)] for c in p.changes],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


class Service:
    def __init__(
        self,
        inventory: Path,
        state_dir: Path,
        *,
        scheduler: bool = True,
        poll_interval: float = 30.0,
        backup_interval: float = 86400.0,
        jobstore_url: str | None = None,
        sources: Sources = (),
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.inv: Inventory = load_inventory(inventory)
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.journal = journal_at(state_dir)  # or the database of CORDON_STATE_URL
        self.health = health_at(state_dir)
        devices = [d.name for _s, d in self.inv.devices()]
        # the daemon keeps a session per device and transport warm (keepalive) only when it
        # runs; --local opens them on demand
        self.pool = Pool(
            self.inv, keepalive=30.0 if scheduler else None, max_size=max(64, 2 * len(devices))
        )
        self.sources = tuple(sources)
        self.progress = progress
        self.changes = Changes()  # wakes the long-polls of GET /v1/runs/<id>?wait= (#18)
        self._stopping = threading.Event()  # set by `stop`: a long-poll answers at once
        self.poll_interval = poll_interval
        self.backup_interval = backup_interval
        self.log = audit.get_logger()
        self.poller = Poller(
            self.inv,
            self.pool,
            self.journal.device_states,
            self.health,
            self._reapply,
            locked=lambda: self.journal.locks().keys(),
        )
        self.scheduler: BackgroundScheduler | None = None
        self._jobstore_url: str | None = None
        if scheduler:
            from agent.service import jobs  # noqa: PLC0415 - jobs import this module

            self._jobstore_url = jobstore_url or jobs.store_url(state_dir)
            self.scheduler = _scheduler(self._jobstore_url)
        # active/standby (several daemons on one PostgreSQL state database): the lease's loop
        cfg = settings.current()
        self.node_id = cfg.node_id or default_node_id()
        self.timing = Timing(bound_s=cfg.failover_s)
        self.lease_loop: LeaseLoop | None = None
        self.announce: Callable[[str], None] | None = None  # the daemon's plain log line
        self._last_poll: dict[str, Any] | None = None
        self._poll_lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Warm a session to every device; then, alone on the state (SQLite), drive at once;
        sharing a PostgreSQL state database, run the lease's loop: standby until this node
        holds the lease, active (`_activate`) while it does."""
        from agent.service import jobs  # noqa: PLC0415 - jobs import this module

        jobs.attach(self)
        if self.scheduler is None:
            return
        threading.Thread(target=self._warm, name="cordon-warm", daemon=True).start()
        url = settings.current().state_url
        if url is None:
            self._activate(None)
            return
        lease = Lease(url, self.node_id, self.timing)
        self.lease_loop = LeaseLoop(lease, on_active=self._activate, on_lost=self._deactivate)
        loop = self.lease_loop
        self.journal.on_fenced = self._fenced
        audit.set_node(self.node_id, None)  # the group's audit chain: records name this node
        self.journal.db.on_lost.append(self._state_lost)
        self._say(
            f"node {self.node_id}: standby until it holds the lease "
            f"(failover bound {self.timing.bound_s:g} s)"
        )
        loop.start()

    def _activate(self, epoch: int | None) -> None:
        """This node drives: fenced by `epoch` (None: alone on a SQLite state), a new
        scheduler on the job store, the periodic jobs, and every open run taken on (each
        settled by reading its devices first, as `resume` does: `proceed`)."""
        from agent.service import jobs  # noqa: PLC0415 - jobs import this module

        if epoch is not None and self.lease_loop is not None:
            self.journal.fence = self.lease_loop.lease.fence(epoch)
            audit.set_node(self.node_id, epoch)  # its audit records are fenced by it too
            st = self.lease_loop.lease.state()
            taken_from = st.taken_from if st is not None else None
            self.log.warning(
                "node.active",
                node=self.node_id,
                epoch=epoch,
                taken_from=taken_from,
                open_runs=self.journal.open_runs(),
            )
            self._say(
                f"node {self.node_id}: ACTIVE with epoch {epoch}"
                + (f" (took over from {taken_from})" if taken_from else "")
            )
        if self.scheduler is None:  # the one of an earlier term was shut down: a new one
            self.scheduler = _scheduler(self._jobstore_url or jobs.store_url(self.state_dir))
        self.scheduler.start()
        if self.poll_interval > 0:
            self.scheduler.add_job(
                jobs.poll,
                "interval",
                seconds=self.poll_interval,
                id="poll",
                replace_existing=True,
                next_run_time=datetime.now(UTC) + timedelta(seconds=1),
            )
        elif self.scheduler.get_job("poll") is not None:  # polling off: drop a stored one
            self.scheduler.remove_job("poll")
        self.scheduler.add_job(
            jobs.backup,
            "interval",
            seconds=self.backup_interval,
            id="backup",
            replace_existing=True,
        )
        for run_id in self.journal.open_runs():
            self.log.info("daemon.resume", run_id=run_id)
            self.schedule(run_id, 0.0)

    def _fenced(self, epoch: int) -> None:
        """A journal write of this node was refused by the lease (`FencedError`): audited,
        then this node steps down (once)."""
        audit.release_epoch(epoch)  # it knows: its records no longer claim the epoch
        self._audited(lambda: self.log.error("node.fenced", node=self.node_id, epoch=epoch))
        if self.lease_loop is not None:
            self.lease_loop.lost(epoch, "a journal write was fenced: a standby took over")

    def _state_lost(self, why: str) -> None:
        """The state database failed one of the journal's transactions (PostgreSQL restarted,
        the connection lost): this node stops driving at once (`LeaseLoop.state_lost`: what
        it had in flight is unknown until its devices are read), says so, and takes the lease
        again once the database answers (then settles every open run from the devices)."""
        loop = self.lease_loop
        if loop is None:
            return
        active = loop.epoch is not None
        loop.state_lost(why)
        if active:
            self._say(
                f"node {self.node_id}: the state database is unreachable ({why}): driving "
                "nothing until it answers again; then the open runs are settled from the devices"
                + self._audited(lambda: self.log.error("state.lost", node=self.node_id, error=why))
            )

    def _deactivate(self, epoch: int, why: str) -> None:
        """This node lost the lease: it stops driving at once (its scheduler stopped, the
        journal's fence kept at the old epoch: any write in flight is refused) and says so."""
        sched = self.scheduler
        self.scheduler = None  # schedules nothing more; a new one if active again
        if sched is not None and sched.running:
            sched.shutdown(wait=False)
        audit.release_epoch(epoch)
        unaudited = self._audited(
            lambda: self.log.error("node.stepped_down", node=self.node_id, epoch=epoch, why=why)
        )
        self._say(
            f"node {self.node_id}: STEPPED DOWN from epoch {epoch} ({why}); standby{unaudited}"
        )

    def _audited(self, log: Callable[[], object]) -> str:
        """Audit a change of this node's role (`log` writes the record). Called from the lease's
        thread when the state database (where the group's audit chain may live too) is failing:
        an audit write that fails must not stop that thread, which takes the lease again once the
        database answers. Returns "" when audited, else what the node's output says instead."""
        try:
            log()
        except AuditError as exc:
            return f" (not in the audit chain, which cannot be written: {exc.message})"
        return ""

    def may_drive(self) -> bool:
        """Does this node drive the runs now (alone, or holding the lease)?"""
        return self.lease_loop is None or self.lease_loop.holds()

    def _require_active(self) -> None:
        """A change asked of a standby: refused, naming the active node."""
        if self.may_drive():
            return
        loop = self.lease_loop
        assert loop is not None
        st = loop.lease.state()
        active = (
            f"node {st.holder} (epoch {st.epoch})" if st is not None and st.live else "none now"
        )
        raise StandbyError(
            f"this daemon (node {self.node_id}) is a standby: it changes nothing; the active "
            f"daemon is {active}",
            hint="the CLI sends it once to the active node's API (CORDON_API_URL over TLS, with "
            "a client certificate); `cordon status` shows the nodes",
        )

    def _say(self, text: str) -> None:
        if self.announce is not None:
            self.announce(text)

    def _warm(self) -> None:
        """Open a session to every device now: the first order pays no handshake."""
        names = [d.name for _s, d in self.inv.devices()]
        failed = [o for o in self.pool.warm(names) if not o.ok]
        self.log.info("daemon.warm", devices=len(names), unreachable=len(failed))

    def stop(self) -> None:
        from agent.service import jobs  # noqa: PLC0415

        self._stopping.set()  # the long-polls answer now: nothing waits out its 30 s
        self.changes.notify()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.lease_loop is not None:  # steps down: a standby takes over at its next try
            epoch = self.lease_loop.epoch
            if epoch is not None:  # what it logs from now on (daemon.stopped) claims none
                audit.release_epoch(epoch)
            self.lease_loop.stop()
            self.lease_loop.lease.close()
        jobs.attach(None)
        self.poller.close()
        self.pool.close()
        self.health.close()
        self.journal.close()

    # -- runs in the background --------------------------------------------------------------

    def schedule(self, run_id: str, delay: float) -> None:
        """Proceed `run_id` in `delay` seconds (a persistent job: survives a restart). A job
        store that fails (its database away, its file unwritable): `StateLostError` saying the
        run is journaled but not scheduled and what to do; a node sharing a PostgreSQL state
        stops driving (its next term takes every open run on, this one too)."""
        if self.scheduler is None or not self.may_drive():  # a standby writes no job
            return  # (--local has no scheduler: its run never loads SQLAlchemy, #18)
        from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - with the scheduler

        from agent.service import jobs  # noqa: PLC0415

        try:
            self.scheduler.add_job(
                jobs.proceed,
                "date",
                run_date=datetime.now(UTC) + timedelta(seconds=max(delay, 0.0)),
                args=[run_id],
                id=f"run:{run_id}",
                replace_existing=True,
                misfire_grace_time=None,
            )
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc  # the driver's words, not the statement
            why = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
            where = settings.redact_url(self._jobstore_url or "the job store")
            self._state_lost(f"the job store failed: {why}")
            raise StateLostError(
                f"run {run_id} is journaled (open, its sites locked) but not scheduled: the "
                f"job store at {where} failed ({why})",
                hint="sharing a PostgreSQL state, this node stops driving and, once the "
                "database answers, the active node settles every open run from its devices "
                f"and goes on with {run_id} (`cordon show {run_id}`); alone on SQLite, restart "
                "the daemon once its job store can be written: it takes every open run on",
            ) from None

    def proceed(self, run_id: str) -> RunReport:
        """One step of a run's life (a job): settle what a crash left in flight, proceed, and
        schedule the next wake-up while the run waits. The daemon acts for the run's author:
        the sites it settles are recorded as changed by them, not by the daemon. A standby
        (its lease lost, a job still firing) refuses. The term is taken first: everything this
        thread writes or sends is fenced by it, so once that term ended (even if this node holds
        a later one by then) it writes and sends nothing more."""
        term = self._term()
        self._require_active()
        ex = self._executor(term.run(run_id).actor, term)
        in_flight = any(
            r.status in (StepStatus.STARTED, StepStatus.APPLIED, StepStatus.UNDOING)
            for r in ex.journal.steps(run_id)
        )
        try:
            report = ex.resume(run_id, drive=False) if in_flight else ex.proceed(run_id)
        finally:
            self.changes.notify()
        if report.status in (Outcome.WAITING, RunStatus.AWAITING_APPROVAL):
            # no wake-up time: an attestation or approval arrives through the API, which
            # schedules the run at once; look again now and then anyway
            delay = 60.0 if report.wake_at is None else report.wake_at - time.time()
            self.schedule(run_id, delay)
        return report

    def poll(self) -> dict[str, Any]:
        term = self._term()  # its re-applies are this term's: once it ended, none is sent
        if not self.may_drive():  # a drift reapply is a device command: the active node's
            return self._last_poll or {}
        with self._poll_lock:
            report = self.poller.poll_once(partial(self._reapply, term=term))
        self._last_poll = {
            "at": report.started_at,
            "duration_s": round(report.duration_s, 3),
            "counts": report.counts(),
            "opened": [d.detail for d in report.opened],
        }
        return self._last_poll

    def backup_all(self) -> int:
        """Scheduled configuration backups of every device (evidence; baselines while normal)."""
        if not self.may_drive():
            return 0
        ex = self._executor(DAEMON_ACTOR)
        done = 0
        for _site, dev in self.inv.devices():
            try:
                ex.scheduled_backup(dev.name)
                done += 1
            except CordonError as exc:
                self.log.warning("backup.failed", device=dev.name, error=exc.message)
        return done

    def _reapply(self, device: str, term: Journal | None = None) -> bool:
        """The on_drift policy of the playbook that last wrote the device: reapply or alarm.
        `term`: the journal of the term the poll started in (by default the current one): its
        write before the command and its check right before it (`may_send`) refuse once that
        term ended (`FencedError`, nothing sent)."""
        term = self._term() if term is None else term
        if not self.may_drive():
            return False
        writer = self.journal.device_writers().get(device)
        if writer is None:
            return False
        try:
            pb = Playbook.model_validate_json(self.journal.playbook_json(writer) or "")
        except ValueError:
            return False
        if pb.on_drift != "reapply":
            return False
        state = self.journal.device_states().get(device)
        if state is None:
            return False
        with term.tx():  # fenced: a deposed node sends no reapply (FencedError)
            pass
        reapply_recorded(self.pool, self.inv, device, state, term.may_send)
        return True

    # -- the Backend --------------------------------------------------------------------------

    def _term(self) -> Journal:
        """The journal as the current term sees it: fenced by this term's fence for good (a new
        term replaces `self.journal.fence`, never the fence a thread already took)."""
        return self.journal.for_term(self.journal.fence)

    def _executor(self, actor: str, term: Journal | None = None) -> Executor:
        """An executor of the current term (`term`: one taken earlier by the caller)."""
        return Executor(
            self.inv,
            self._term() if term is None else term,
            self.pool,
            actor=actor,
            sources=self.sources,
            progress=self._progressed,
        )

    def _progressed(self, message: str) -> None:
        """The executor's progress line (written after the journal): shown, and waiters woken."""
        if self.progress is not None:
            self.progress(message)
        self.changes.notify()

    def _playbook(self, name: str, params: dict[str, str] | None = None) -> Playbook:
        return load_playbook(playbook_path(name), self.inv, params)

    def playbook_meta(self, name: str, params: dict[str, str] | None = None) -> PlaybookMeta:
        """The flags of the validated playbook (never raw YAML: `emergency: "false"` is not
        true); invalid, unknown or missing a parameter: `PlaybookError`, exit 2."""
        pb = self._playbook(name, params)
        return PlaybookMeta(emergency=pb.emergency, approval=pb.approval)

    def status(self, caller: Actor | None = None) -> JSON:
        sites = self.journal.sites()
        locks = self.journal.locks()
        alarms = [a.as_dict() for a in self.health.alarms(status="open")]
        out_sites = []
        for site in self.inv.sites:
            if site.kind.value != "establishment" and site.name not in sites:
                continue
            st = sites.get(site.name)
            out_sites.append(
                {
                    "site": site.name,
                    "mode": st.mode if st else SiteMode.NORMAL,
                    "level": st.level if st else None,
                    "since": st.since if st else None,
                    "by": st.actor if st else None,
                    "run_id": st.run_id if st else None,
                    "locked_by": locks.get(site.name),
                    "drift": [a for a in alarms if a.get("site") == site.name],
                }
            )
        runs = [self._run_summary(r) for r in self.journal.runs(limit=200) if r.status in OPEN]
        from agent.wire.reports import StatusOut  # noqa: PLC0415 - #18

        return StatusOut.model_validate(
            {
                "sites": out_sites,
                "open_runs": runs,
                "drift_alarms": alarms,
                "last_poll": self._last_poll,
                "incidents": [i.as_dict() for i in self.journal.incidents(open_only=True)],
                "flows": self._flow_health(),
                **({"cluster": self._cluster()} if self.lease_loop is not None else {}),
            }
        ).wire()

    def _flow_health(self) -> list[dict[str, Any]]:
        """Every must-survive flow with its last verification from the journal (never checked:
        no status)."""
        last = self.journal.last_flow_checks(must_survive_only=True)
        out: list[dict[str, Any]] = []
        for f in self.inv.flows:
            if not f.must_survive:
                continue
            c = last.get(f.name)
            row: dict[str, Any] = {"flow": f.name, "source": f"{f.source} -> {f.destination}"}
            if c is not None:
                row.update(
                    status=c.status,
                    expected=c.expected,
                    confirmed_by=list(c.confirmed_by),
                    contradicted_by=list(c.contradicted_by),
                    at=c.at,
                    run_id=c.run_id,
                    step=c.step,
                )
            out.append(row)
        return out

    def _cluster(self) -> dict[str, Any]:
        """The lease and every node seen (several daemons on one PostgreSQL database)."""
        loop = self.lease_loop
        assert loop is not None
        st = loop.lease.state()
        return {
            "this_node": self.node_id,
            "role": loop.role,
            "holder": st.holder if st is not None and st.live else None,
            "epoch": st.epoch if st is not None else None,
            "lease_left_s": (
                round((st.expires_at - st.now).total_seconds(), 2) if st is not None else None
            ),
            "last_takeover_at": st.acquired_at.timestamp() if st is not None else None,
            "taken_from": st.taken_from if st is not None else None,
            "nodes": [
                {
                    "node": n.node,
                    "role": n.role,
                    "epoch": n.epoch,
                    "pid": n.pid,
                    "seen_s_ago": round(n.age_s, 2),
                }
                for n in loop.lease.nodes()
            ],
        }

    def plan(
        self,
        caller: Actor | None,
        *,
        playbook: str,
        sites: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        self._known_sites(sites)
        pb = self._playbook(playbook, params)
        p = self._executor(_who(caller)).plan(pb, sites)
        return PlanOut(
            playbook=p.playbook,
            level=p.level,
            sites=list(p.sites),
            steps=[
                PlanStep(
                    site=s.site,
                    step=s.step,
                    action=s.action,
                    notes=list(s.notes),
                    changes=[
                        PlanChange(
                            device=c.device,
                            platform=c.platform,
                            method=c.method,
                            commands=list(c.commands),
                            undo=list(c.undo),
                        )
                        for c in s.changes
                    ],
                )
                for s in p.steps
            ],
            impact=[
                FlowChange(flow=fi.flow, must_survive=fi.must_survive, change=fi.change)
                for fi in p.impact
            ],
            refusals=list(p.refusals),
            links=link_changes(p, self.inv),
            digest=plan_digest(p),
            emergency=pb.emergency,
            approval=pb.approval,
            changes=len(p.changes),
        ).wire()

    def start_run(
        self,
        caller: Actor | None,
        *,
        playbook: str,
        sites: list[str] | None,
        digest: str,
        reason: str | None,
        attest: dict[str, str] | None,
        soak_seconds: int | float | None,
        decision: Authorization | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        self._require_active()
        self._known_sites(sites)
        pb = self._playbook(playbook, params)
        ex = self._executor(_who(caller))
        p = ex.require_safe(pb, ex.plan(pb, sites))  # a refusal is audited (run.refused)
        if digest != plan_digest(p):
            raise PlanError(
                "the plan changed since it was shown (the devices' recorded state or the "
                "playbook changed): nothing was started",
                hint="run `cordon plan` again, read it, then run",
            )
        needs = bool(decision and decision.needs_approval and not decision.break_glass)
        options = RunOptions(
            soak_seconds=float(soak_seconds) if soak_seconds else None,
            reason=reason,
            break_glass=bool(decision and decision.break_glass),
            needs_approval=needs,
            attest=dict(attest or {}),
        )
        rid = new_run_id()
        with audit.bind(run_id=rid):  # issue #11: the report's "decisions" read this record
            self.log.info("run.planned", playbook=pb.name, sites=list(p.sites), digest=digest)
        # the plan just made and checked against the digest shown: not made again by start
        report = ex.start(pb, sites, rid, options=options, planned=p)
        self.schedule(report.run_id, 0.0)
        return RunStarted(
            run_id=report.run_id,
            status=report.status,
            playbook=pb.name,
            sites=list(p.sites),
            changes=len(p.changes),
            break_glass=options.break_glass,
            needs_approval=needs,
        ).wire()

    def drive(
        self, run_id: str, *, poll: float = 0.5, stop: threading.Event | None = None
    ) -> RunReport:
        """--local: take the run to its end in this process (or until `stop` is set), looking
        again at least every `poll` seconds: an approval or an attestation given from another
        terminal is seen at once, not at the approval's deadline."""
        while True:
            try:
                report = self.proceed(run_id)
            except RunStopped as exc:  # a rollback asked this process to stop: it finishes
                if self.progress is not None:
                    self.progress(exc.message)
                return RunReport(run_id, Outcome.STOPPED, waiting=exc.message)
            if report.status not in (Outcome.WAITING, RunStatus.AWAITING_APPROVAL):
                return report
            pause = poll if report.wake_at is None else report.wake_at - time.time()
            pause = min(max(pause, 0.05), poll)
            if stop is not None:
                if stop.wait(pause):
                    return report
            else:
                time.sleep(pause)

    def list_runs(self, caller: Actor | None = None, *, limit: int = 50) -> JSON:
        runs = [self._run_summary(r) for r in self.journal.runs(limit=limit)]
        from agent.wire.reports import RunsOut  # noqa: PLC0415 - #18

        return RunsOut.model_validate({"runs": runs}).wire()

    def _driven(self, run_id: str, driver: dict[str, Any] | None) -> bool:
        """Does a live process drive this open run: the one recorded in the journal, or this
        daemon's scheduler (a job is waiting to proceed it)?"""
        if driver_alive(driver):
            return True
        sched = self.scheduler
        return sched is not None and sched.running and sched.get_job(f"run:{run_id}") is not None

    def _run_summary(self, r: RunRecord) -> dict[str, Any]:
        rows = self.journal.steps(r.run_id)
        driver = r.driver
        # an open run nobody drives (its process was killed): say so, and how to take it on
        interrupted = r.status in OPEN and not self._driven(r.run_id, driver)
        finished = (StepStatus.VERIFIED, StepStatus.UNDONE, StepStatus.FAILED)
        return {
            "run_id": r.run_id,
            "playbook": r.playbook,
            "level": r.level,
            "sites": list(r.sites),
            "actor": r.actor,
            "status": r.status,
            "waiting": r.waiting,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "detail": r.detail,
            "steps_total": len(rows),
            "steps_done": sum(x.status in finished for x in rows),
            "break_glass": bool(r.options.get("break_glass")),
            "reason": r.options.get("reason"),
            "driver_pid": driver.get("pid") if driver else None,
            "interrupted": interrupted,
            "stop_requested": r.stop_requested,
        }

    def show_run(self, caller: Actor | None = None, *, run_id: str) -> JSON:
        try:
            info = self.journal.run(run_id)
        except RunError:
            raise NotFound(f"no run {run_id}") from None
        out = self._run_summary(info)
        out["steps"] = [
            {
                "seq": r.seq,
                "site": r.site,
                "step": r.step,
                "device": r.device,
                "method": r.method,
                "status": r.status,
                "error": r.error,
            }
            for r in self.journal.steps(run_id)
        ]
        out["gates"] = [
            {"site": g.site, "step": g.step, "status": g.status, "detail": g.detail}
            for g in self.journal.gates(run_id)
        ]
        out["attestations"] = [
            {"site": a.site, "zone": a.zone, "actor": a.actor, "reason": a.reason, "at": a.at}
            for a in self.journal.attestations(run_id).values()
        ]
        approval = self.journal.approval(run_id)
        out["approval"] = approval.as_dict() if approval else None
        return RunView.model_validate(out).wire()

    def wait_run(
        self, caller: Actor | None = None, *, run_id: str, since: str | None, wait: float
    ) -> JSON:
        """`show_run`, once its answer's `version` differs from `since` or `wait` seconds have
        passed (a long-poll: the reader learns of a change at once). `since` None: at once."""
        deadline = time.monotonic() + wait
        while True:
            seen = self.changes.count()
            out = self.show_run(caller, run_id=run_id)
            left = deadline - time.monotonic()
            if since is None or version(out) != since or left <= 0 or self._stopping.is_set():
                return out
            self.changes.wait(seen, min(left, RECHECK_S))

    def approve(self, caller: Actor | None, *, run_id: str, reason: str | None) -> JSON:
        self._require_active()
        self._exists(run_id)
        what = self._executor(_who(caller)).approve(run_id, _who(caller), reason)
        self.changes.notify()
        self.schedule(run_id, 0.0)
        from agent.wire.steering import Approved  # noqa: PLC0415 - #18

        return Approved(run_id=run_id, approved=what, by=_who(caller)).wire()

    def rollback(self, caller: Actor | None, *, run_id: str, reason: str | None) -> JSON:
        self._require_active()
        self._exists(run_id)
        # a run still proceeding is first stopped at a step boundary (its driver, in this
        # process or another, sends nothing more), then rolled back
        report = self._executor(_who(caller)).rollback(run_id)
        self.changes.notify()
        if self.scheduler is not None and self.scheduler.get_job(f"run:{run_id}"):
            self.scheduler.remove_job(f"run:{run_id}")
        from agent.wire.steering import RollbackOut  # noqa: PLC0415 - #18

        return RollbackOut.model_validate(
            {
                "run_id": run_id,
                "status": report.status,
                "steps": [
                    {"device": o.device, "step": o.step, "status": o.status}
                    for o in report.outcomes
                ],
            }
        ).wire()

    def attest(
        self, caller: Actor | None, *, run_id: str, site: str, zone: str, reason: str
    ) -> JSON:
        self._require_active()
        self._exists(run_id)
        self._executor(_who(caller)).attest(run_id, site, zone, _who(caller), reason)
        self.changes.notify()
        self.schedule(run_id, 0.0)
        from agent.wire.steering import Attested  # noqa: PLC0415 - #18

        return Attested(run_id=run_id, site=site, zone=zone, by=_who(caller)).wire()

    def incident(
        self,
        caller: Actor | None,
        *,
        action: Literal["open", "close"],
        name: str | None,
        site: str | None,
        reason: str,
    ) -> JSON:
        from agent.wire.steering import IncidentOut  # noqa: PLC0415 - #18

        self._require_active()
        who = _who(caller)
        if site is not None:
            self._known_sites([site])
        if action == "open":
            incident_id = "INC-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            taken = {i.incident_id for i in self.journal.incidents()}
            if incident_id in taken:  # two declared within a second (was: UNIQUE constraint)
                incident_id += "-" + str(sum(t.startswith(incident_id) for t in taken) + 1)
            label = name or (f"attack at {site}" if site else "incident")
            self.journal.open_incident(incident_id, label, site, who, reason)
            with audit.bind(incident_id=incident_id, actor=who):
                self.log.warning("incident.declared", name=label, site=site, reason=reason)
            return IncidentOut(incident_id=incident_id, name=label, site=site, status="open").wire()
        opened = self.journal.incidents(open_only=True)
        match = [i for i in opened if name in (None, i.incident_id, i.name)]
        if not match:
            raise NotFound(f"no open incident {name or ''}".strip())
        inc = match[0]
        self.journal.close_incident(inc.incident_id, who, reason)
        with audit.bind(incident_id=inc.incident_id, actor=who):
            self.log.info("incident.closed", name=inc.name, reason=reason)
        return IncidentOut(incident_id=inc.incident_id, status="closed").wire()

    def notify(
        self,
        caller: Actor | None,
        *,
        incident: str | None,
        kind: str,
        to: str,
        ref: str,
        at: str | None = None,
        by: str | None = None,
    ) -> JSON:
        """`cordon incident notify`: a regulator was notified (the report's clocks read it), made
        `at` (default: now; a time in the future is refused, nothing written) by `by`."""
        if at is not None and datetime.fromisoformat(at) > datetime.now(UTC) + timedelta(minutes=1):
            raise ConfigError(
                f"notification time {at} is in the future: nothing recorded",
                hint="give the time the notification was made (--at), or leave it out for now",
            )
        opened = self.journal.incidents(open_only=incident is None)
        match = [i for i in opened if incident in (None, i.incident_id, i.name)]
        if len(match) != 1:
            raise NotFound(
                f"no incident {incident}" if incident else f"{len(match)} open incidents",
                hint="name the incident: cordon incident notify INCIDENT ...",
            )
        iid = match[0].incident_id
        with audit.bind(incident_id=iid, actor=_who(caller)):
            self.log.info(
                "regulatory.notified",
                kind=kind,
                to=to,
                ref=ref,
                notified_at=at,
                notified_by=by,
            )
        made_by = by or _who(caller)
        from agent.wire.steering import Notified  # noqa: PLC0415 - #18

        return Notified(incident_id=iid, kind=kind, to=to, ref=ref, by=made_by, at=at).wire()

    def audit_report(
        self,
        caller: Actor | None = None,
        *,
        run: str | None,
        incident: str | None,
        verify: bool = True,
    ) -> JSON:
        """The report of the chain this daemon writes to (the group's in PostgreSQL when the
        state is there), verified as `cordon audit report` verifies it, in the same read (one
        snapshot): its `chain` says verified, or broken and where; the seals are anchored when
        CORDON_AUDIT_SEAL_PUBKEY pins a key. `verify=False` (the live view, which shows no
        verdict and asks every few seconds): not verified, and the report says so."""
        from agent.audit import report as audit_report  # noqa: PLC0415 - on use only (#18)
        from agent.audit.pipeline import current_source  # noqa: PLC0415
        from agent.audit.seals import ENV_PUBLIC_KEY, load_public_key  # noqa: PLC0415

        spec = settings.current().audit_seal_pubkey if verify else None
        key = (
            load_public_key(spec, what=f"seal public key (${ENV_PUBLIC_KEY})", base_dir=Path.cwd())
            if spec
            else None
        )
        with current_source().open(verify=verify, public_key=key) as read:
            rep = audit_report.build(read, run=run, incident=incident)
        return rep.as_dict()

    # -- checks -------------------------------------------------------------------------------

    def _known_sites(self, sites: list[str] | None) -> None:
        for name in sites or []:
            if self.inv.site(name) is None:
                raise NotFound(f"no site {name} in the inventory {self.inv.path}")

    def _exists(self, run_id: str) -> None:
        try:
            self.journal.run(run_id)
        except RunError:
            raise NotFound(f"no run {run_id} in the journal") from None


def link_changes(p: Plan, inv: Inventory) -> list[LinkChange]:
    """The inventory links each step cuts or reopens (a link is cut when its interface is shut or
    its traffic dropped by our table): what a person confirming a run must read."""
    out: list[LinkChange] = []
    for step in p.steps:
        site = inv.site(step.site)
        if site is None:
            continue
        for c in step.changes:
            for link in (lk for lk in site.links if lk.device == c.device):
                was, will = c.before.cuts(link.interface), c.after.cuts(link.interface)
                if was != will:
                    out.append(
                        LinkChange(
                            site=step.site,
                            step=step.step,
                            link=link.name,
                            kind=link.kind.value,
                            device=link.device,
                            interface=link.interface,
                            change="cut" if will else "reopened",
                        )
                    )
    return out


def _who(caller: Actor | None) -> str:
    return caller.user if caller is not None else DAEMON_ACTOR


def _scheduler(url: str) -> BackgroundScheduler:
    from agent.service.scheduler import make_scheduler  # noqa: PLC0415 - a daemon's only

    return make_scheduler(url)


@contextmanager
def local(inventory: Path, state_dir: Path, **kw: Any) -> Iterator[Service]:
    service = Service(inventory, state_dir, scheduler=False, **kw)
    try:
        yield service
    finally:
        service.stop()

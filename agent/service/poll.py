"""Health polling and drift detection: read every device back through the drivers' pool, compare
with the isolation state the journal recorded (`agent.engine.drift`), raise and clear alarms
(audited: `drift.alarm`, `drift.cleared`, `drift.reapplied`), and re-apply the recorded state
when the daemon's policy says so.

What is read, per device (nothing else is touched):
- the interfaces that matter (those the record shuts, and the device's link interfaces): over
  SNMP, one GET of ifAdminStatus, ifOperStatus and the column that names the interface (ifName,
  or ifDescr), with the ifIndex cached from one walk of the name columns and walked again when
  the device renumbered (the name no longer matches) or every `rewalk_s`; from the driver's
  facts over SSH when the device has no SNMP settings;
- on a platform that holds packet rules (nftables firewalls), the comments of its rules
  (`nft -j list table inet cordon`, one command on the warm shell);
- where the record keeps must-survive flows through a cut by accept rules, the traffic those
  rules counted (`capabilities.RuleTraffic`, one more read on the same session; a driver
  without it is not asked). A must-survive flow's monitors stream continuously: a flow whose
  rules, present in both reads, counted no packet (or packets one way only) since the previous
  poll raises a traffic alarm naming the flow (`traffic.stopped`, kind `traffic_stopped`, stored
  with the drift alarms), cleared by the first poll that sees it move again, or once the record
  no longer keeps it by a rule (`traffic.resumed`). The judgement is `agent.verify.counters`'s.
A device recorded as normal is read too (its table must be absent, its links up), so a site in
normal mode with leftovers shows. A device with nothing to read (a normal switch without links)
is skipped; so is every device of a site a run holds (its record is in transition).

Reads run in parallel (`workers` threads), each device bounded by `device_timeout`; a device that
does not answer is "unreachable", never drift, and its open alarms stay open (unknown is not
clean). A device whose read failed otherwise (credentials, host key) is "error".

An alarm is audited before it is stored. A re-application (`reapply` said yes) marks the open
alarms of the device; they are cleared by the next poll that no longer sees them (`drift.cleared`,
outcome `reapplied`): the record was pushed and verified by the driver, the poll confirms it.
With active/standby, a poll's re-applications belong to the term it started in (the daemon
passes `poll_once` a `reapply` bound to it) and each command is checked right before it is sent,
the device's session in hand (`reapply_recorded`'s `may_send`, as a run's): a refusal
(`FencedError`: the node steps down) is audited (`drift.reapplied`, outcome `fenced`) and the
poll asks for no further re-application; nothing is sent.

Imports the drivers' public types and pool, the platform registry and capabilities (the device
reads themselves live with the platforms: `agent.platforms.snmp.status`, the nftables driver's
`rule_comments`), the engine's pure drift module, the executor's read-back expectation
(`agent.run.transaction`), the network state, the audit trail and `agent.service.health`; never
the API, the CLI or the twin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial

from agent import audit
from agent.drivers.base import ChangeSet, Driver, Expectation, Via
from agent.drivers.pool import Pool
from agent.engine.drift import FIXABLE, Drift, Readback, detect, reapply_lines, watched
from agent.errors import (
    ConnectError,
    CordonError,
    DeviceError,
    FencedError,
    RunError,
    SnmpError,
)
from agent.inventory.models import Inventory, Platform
from agent.network.paths import flow_path
from agent.network.state import NORMAL, DeviceState, NftRule, allow_rules
from agent.platforms import registry
from agent.platforms.capabilities import ReadsRuleComments, ReadsSnmp, RuleTraffic, having, require
from agent.platforms.snmp import status
from agent.service.health import (
    TRAFFIC_STOPPED,
    Alarm,
    Change,
    HealthStore,
    PollRow,
    PollStatus,
    drift_alarms,
    traffic_change,
)
from agent.verify.counters import Movement, Reading, judge

Reapply = Callable[[str], bool]  # device -> re-applied (the daemon's on_drift policy decides)
# raises FencedError when the term may no longer send (`Journal.may_send`); what: the command
SendCheck = Callable[[str], None]


@dataclass(frozen=True)
class DevicePoll:
    """One device's part of a poll."""

    device: str
    site: str
    status: PollStatus
    drifts: tuple[Drift, ...] = ()
    error: str | None = None
    duration_s: float = 0.0
    oper: Mapping[str, bool | None] = field(default_factory=dict)
    reapplied: bool = False


@dataclass
class PollReport:
    started_at: float
    duration_s: float = 0.0
    devices: list[DevicePoll] = field(default_factory=list)
    opened: list[Drift] = field(default_factory=list)
    cleared: list[Alarm] = field(default_factory=list)
    reapplied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nothing to read
    stopped: list[tuple[str, str]] = field(default_factory=list)  # (device, flow) alarms opened
    resumed: list[tuple[str, str]] = field(default_factory=list)  # (device, flow) alarms cleared
    busy: list[str] = field(default_factory=list)  # held by a run: not read
    fenced: str | None = None  # a re-application refused: this node's term ended (why)

    def with_status(self, status: str) -> list[DevicePoll]:
        return [d for d in self.devices if d.status == status]

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "drift": 0, "unreachable": 0, "error": 0}
        for d in self.devices:
            out[d.status] += 1
        return out


@dataclass(frozen=True)
class _Plan:
    device: str
    site: str
    platform: Platform
    recorded: DeviceState
    interfaces: frozenset[str]
    table: bool
    via_if: Via
    guarded: tuple[tuple[str, tuple[NftRule, ...]], ...] = ()  # must-survive flow, its rules here


@dataclass
class _Read:
    seen: Readback
    oper: dict[str, bool | None]
    errors: list[CordonError]
    duration_s: float
    traffic: dict[str, tuple[tuple[NftRule, ...], Reading]] | None = None  # None: not read


class Poller:
    """Reads the fleet back once per `poll_once()` (the daemon's scheduler calls it every
    period). `states()` gives the journal's recorded device states; `locked()` the sites a run
    holds now (their devices are not read: their record is in transition); `reapply(device)`
    is asked for a device with a repairable drift and returns whether it re-applied the record
    (the daemon's `on_drift` policy; see `reapply_recorded`).

    Sessions come from `pool`: each read device holds up to two (ssh for the nft table, snmp
    for the interfaces), so a pool smaller than that evicts and reconnects every period."""

    def __init__(
        self,
        inv: Inventory,
        pool: Pool,
        states: Callable[[], Mapping[str, DeviceState]],
        store: HealthStore,
        reapply: Reapply | None = None,
        *,
        locked: Callable[[], Iterable[str]] | None = None,
        workers: int = 16,
        device_timeout: float = 30.0,
        rewalk_s: float = 600.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.inv = inv
        self.pool = pool
        self.states = states
        self.store = store
        self.reapply = reapply
        self.locked = locked or (lambda: ())
        self.workers = workers
        self.device_timeout = device_timeout
        self.rewalk_s = rewalk_s  # re-walk a device's interface table at least this often
        self.log = audit.get_logger()
        self._links: dict[str, set[str]] = {}
        for site in inv.sites:
            for link in site.links:
                self._links.setdefault(link.device, set()).add(link.interface)
                if link.peer_device and link.peer_interface:
                    self._links.setdefault(link.peer_device, set()).add(link.peer_interface)
        # device -> (when walked, interface -> (ifIndex, the column naming it) or None)
        self._index: dict[str, tuple[float, dict[str, status.Located | None]]] = {}
        # device -> [(must-survive flow, the accept rules that would keep it there)]
        self._keeps: dict[str, list[tuple[str, tuple[NftRule, ...]]]] = {}
        ruled = {dev.name for _, dev in inv.devices() if registry.platform(dev.platform).rules_by}
        for flow in inv.flows:
            if flow.must_survive:
                path = flow_path(inv, flow)
                for device in sorted(ruled & {h.device for h in path.hops}):
                    rules = tuple(allow_rules(path, device, ""))
                    if rules:
                        self._keeps.setdefault(device, []).append((flow.name, rules))
        # device -> (when read, flow -> (its rules read, their traffic)): the previous poll's
        self._traffic: dict[str, tuple[float, dict[str, tuple[tuple[NftRule, ...], Reading]]]] = {}
        self._lock = threading.Lock()
        self._inflight: set[str] = set()  # reads given up on that have not ended yet
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cordon-poll")

    def close(self) -> None:
        """Stop the reading threads (a read still blocked ends within its driver timeouts)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one poll ---------------------------------------------------------------------------

    def plans(self) -> tuple[list[_Plan], list[str], list[str]]:
        """What to read on each device now; the devices with nothing to read; the busy ones."""
        states = self.states()
        busy_sites = set(self.locked())
        plans: list[_Plan] = []
        skipped: list[str] = []
        busy: list[str] = []
        for site, dev in self.inv.devices():
            if site.name in busy_sites:
                busy.append(dev.name)
                continue
            recorded = states.get(dev.name, NORMAL)
            interfaces = watched(recorded, self._links.get(dev.name, ()))
            table = registry.platform(dev.platform).rules_by is not None
            if not interfaces and not table:
                skipped.append(dev.name)
                continue
            via: Via = "snmp" if dev.snmp is not None else "ssh"
            guarded = tuple(
                (flow, held)
                for flow, rules in self._keeps.get(dev.name, ())
                if (held := tuple(r for r in rules if r in recorded.rules))
            )
            plans.append(
                _Plan(dev.name, site.name, dev.platform, recorded, interfaces, table, via, guarded)
            )
        return plans, skipped, busy

    def poll_once(self, reapply: Reapply | None = None) -> PollReport:
        """Read every device, update the alarms (audited first), ask for a re-application
        where a repairable drift is open, record each device's poll. A device whose site a run
        took, or whose record changed, while it was being read is left for the next poll.
        `reapply`: this poll's (the daemon's, bound to the term the poll started in) instead of
        the poller's own; once one is refused (`FencedError`) no other is asked for."""
        ask = self.reapply if reapply is None else reapply
        report = PollReport(started_at=time.time())
        t0 = time.monotonic()
        plans, report.skipped, report.busy = self.plans()
        reads = self._gather(plans)
        states, busy_sites = self.states(), set(self.locked())
        moved = {
            p.device
            for p in plans
            if p.site in busy_sites or states.get(p.device, NORMAL) != p.recorded
        }
        report.busy += sorted(moved)
        plans = [p for p in plans if p.device not in moved]
        open_now: dict[str, list[Alarm]] = {}
        for alarm in drift_alarms(self.store.open_alarms()):
            open_now.setdefault(alarm.device, []).append(alarm)
        traffic_open = [a for a in self.store.open_alarms() if a.kind == TRAFFIC_STOPPED]
        rows: list[PollRow] = []
        for plan in plans:
            result = self._settle(plan, reads[plan.device], report, open_now.get(plan.device, []))
            self._settle_traffic(plan, reads[plan.device], report, traffic_open)
            if result.status == "drift" and self._repair(plan, report, ask):
                result = replace(result, reapplied=True)
            report.devices.append(result)
            detail = result.error or ""
            if result.drifts:
                detail = "; ".join(d.detail for d in result.drifts)
            rows.append(
                PollRow(
                    plan.device,
                    plan.site,
                    report.started_at,
                    result.status,
                    detail[:2000],
                    round(result.duration_s, 4),
                )
            )
        self.store.record_polls(rows)
        report.duration_s = time.monotonic() - t0
        return report

    def _settle(
        self,
        plan: _Plan,
        read: _Read | str,
        report: PollReport,
        open_now: Sequence[Alarm] | None,
    ) -> DevicePoll:
        """One device's alarms after its read: audited first, then stored."""
        if isinstance(read, str):  # given up on: its alarms stay as they are
            return DevicePoll(plan.device, plan.site, "unreachable", error=read)
        drifts = tuple(detect(plan.device, plan.recorded, read.seen, plan.platform))
        change = self.store.diff(
            plan.device, plan.site, drifts, read.seen.scopes, open_now=open_now
        )
        self._audit(change)
        self.store.commit(change)
        report.opened += change.new
        report.cleared += change.gone
        error = "; ".join(e.message for e in read.errors) or None
        status: PollStatus = "ok"
        if drifts:
            status = "drift"
        elif any(isinstance(e, ConnectError) for e in read.errors):
            status = "unreachable"
        elif read.errors:
            status = "error"
        return DevicePoll(plan.device, plan.site, status, drifts, error, read.duration_s, read.oper)

    def _settle_traffic(
        self, plan: _Plan, read: _Read | str, report: PollReport, open_now: Sequence[Alarm]
    ) -> None:
        """Judge each guarded must-survive flow's traffic since the previous poll; open, refresh
        and clear its alarm (audited first, then stored)."""
        if isinstance(read, str):
            return  # not read: its alarms stay as they are
        guarded = {flow for flow, _ in plan.guarded}
        stopped: dict[str, str] = {}
        resumed = {
            a.subject: "the record no longer keeps it by a rule on this device"
            for a in open_now
            if a.device == plan.device and a.subject not in guarded
        }
        if read.traffic is not None:
            at = time.monotonic()
            was_at, was = self._traffic.get(plan.device, (at, {}))
            for flow, (rules, reading) in read.traffic.items():
                before = was.get(flow)
                if before is None or before[0] != rules:
                    continue  # first reading of these rules: nothing to compare yet
                j = judge(before[1], reading)
                where = f"on {plan.device} (site {plan.site}) in {at - was_at:.0f} s"
                if j.movement in (Movement.STILL, Movement.ONE_WAY):
                    stopped[flow] = (
                        f"must-survive flow {flow} stopped: {j.detail} {where}, the rules "
                        "that keep it present"
                    )
                elif j.movement is Movement.MOVED:
                    resumed[flow] = f"traffic again: {j.detail} {where}"
            self._traffic[plan.device] = (at, read.traffic)
        change = traffic_change(plan.device, plan.site, stopped, resumed, open_now)
        for flow, detail in change.new:
            self.log.warning(
                "traffic.stopped",
                device=plan.device,
                site=plan.site,
                flow=flow,
                kind=TRAFFIC_STOPPED,
                detail=detail,
                outcome="open",
            )
        for a, why in change.gone:
            self.log.info(
                "traffic.resumed",
                device=a.device,
                site=a.site,
                flow=a.subject,
                kind=TRAFFIC_STOPPED,
                detail=why,
                alarm_id=a.id,
                open_s=round(time.time() - a.first_seen, 3),
                outcome="cleared",
            )
        self.store.commit_traffic(change)
        report.stopped += [(plan.device, f) for f, _ in change.new]
        report.resumed += [(plan.device, a.subject) for a, _ in change.gone]

    def _audit(self, change: Change) -> None:
        for d in change.new:
            self.log.warning(
                "drift.alarm",
                device=d.device,
                site=change.site,
                kind=d.kind,
                subject=d.subject,
                detail=d.detail,
                outcome="open",
            )
        for a in change.gone:
            self.log.info(
                "drift.cleared",
                device=a.device,
                site=a.site,
                kind=a.kind,
                subject=a.subject,
                detail=a.detail,
                alarm_id=a.id,
                open_s=round(time.time() - a.first_seen, 3),
                reapplied=a.reapplied,
                outcome="reapplied" if a.reapplied else "cleared",
            )

    def _repair(self, plan: _Plan, report: PollReport, reapply: Reapply | None) -> bool:
        """Ask the daemon to re-apply the record when a repairable alarm is open (none once a
        re-application of this poll was refused by the fence)."""
        if reapply is None or report.fenced is not None or plan.recorded == NORMAL:
            return False
        if plan.site in set(self.locked()) or self.states().get(plan.device) != plan.recorded:
            return False  # a run is at it: never re-apply over a run
        open_ = drift_alarms(self.store.open_alarms(plan.device))
        if not any(a.kind in FIXABLE for a in open_):
            return False
        ids = [a.id for a in open_]
        try:
            done = reapply(plan.device)
        except CordonError as exc:
            fenced = isinstance(exc, FencedError)  # the term ended: nothing sent, it steps down
            if fenced:
                report.fenced = exc.message
            self.log.error(
                "drift.reapplied",
                device=plan.device,
                site=plan.site,
                outcome="fenced" if fenced else "failed",
                error=exc.message,
                alarms=ids,
            )
            return False
        if not done:
            return False
        self.store.mark_reapplied(plan.device)
        self.log.info(
            "drift.reapplied", device=plan.device, site=plan.site, outcome="ok", alarms=ids
        )
        report.reapplied.append(plan.device)
        return True

    # -- reading ----------------------------------------------------------------------------

    def _gather(self, plans: Sequence[_Plan]) -> dict[str, _Read | str]:
        """Read `plans` in parallel; a device past `device_timeout` (counted from when its
        read started) is given up with a reason, its thread left to end on its own (the
        drivers bound every operation) and the device not read again until it has."""
        out: dict[str, _Read | str] = {}
        starts: dict[str, float] = {}
        futures: dict[Future[_Read], str] = {}

        def job(plan: _Plan) -> _Read:
            starts[plan.device] = t0 = time.monotonic()
            return self._read(plan, t0)

        for plan in plans:
            with self._lock:
                if plan.device in self._inflight:
                    out[plan.device] = "an earlier read is still running (no answer)"
                    continue
                self._inflight.add(plan.device)
            fut = self._executor.submit(job, plan)
            fut.add_done_callback(partial(self._done, plan.device))
            futures[fut] = plan.device
        pending = set(futures)
        while pending:
            running = [starts[futures[f]] for f in pending if futures[f] in starts]
            left = min(running) + self.device_timeout - time.monotonic() if running else 0.5
            done, pending = wait(
                pending, timeout=min(max(left, 0.01), 0.5), return_when=FIRST_COMPLETED
            )
            for fut in done:
                exc = fut.exception()
                # device errors are inside the read; anything else is a bug: say so
                out[futures[fut]] = (
                    fut.result() if exc is None else f"poll failed: {type(exc).__name__}: {exc}"
                )
            now = time.monotonic()
            for fut in list(pending):
                name = futures[fut]
                if name in starts and now - starts[name] >= self.device_timeout:
                    pending.discard(fut)
                    out[name] = f"no answer within {self.device_timeout:g} s"
        return out

    def _done(self, device: str, _fut: object) -> None:
        with self._lock:
            self._inflight.discard(device)

    def _read(self, plan: _Plan, t0: float) -> _Read:
        errors: list[CordonError] = []
        rules: tuple[str, ...] | None = None
        table_read = False
        admin: dict[str, bool] = {}
        oper: dict[str, bool | None] = {}
        missing: set[str] = set()
        if_read = False
        traffic = None
        if plan.table:
            try:
                rules = self.pool.run(plan.device, _table_comments, via="ssh")
                table_read = True
            except CordonError as exc:
                errors.append(exc)
        if plan.guarded and table_read:
            try:
                traffic = self.pool.run(plan.device, partial(_traffic, plan.guarded), via="ssh")
            except CordonError as exc:
                errors.append(exc)
        if plan.interfaces:
            try:
                admin, oper, missing = self.pool.run(
                    plan.device, partial(self._interfaces, plan), via=plan.via_if
                )
                if_read = True
            except CordonError as exc:
                errors.append(exc)
        seen = Readback(admin, frozenset(missing), if_read, rules, table_read)
        return _Read(seen, oper, errors, time.monotonic() - t0, traffic)

    def _interfaces(self, plan: _Plan, d: Driver) -> _Ifs:
        names = sorted(plan.interfaces)
        snmp = having(d, ReadsSnmp)
        if snmp is not None:
            got = self._snmp_get(plan.device, snmp, names)
            return got if got is not None else self._snmp_walk(plan.device, snmp, names)
        facts = d.facts()  # no SNMP: the driver's facts over SSH
        admin: dict[str, bool] = {}
        oper: dict[str, bool | None] = {}
        missing: set[str] = set()
        for n in names:
            i = facts.interface(n)
            if i is None:
                missing.add(n)
            else:
                admin[n], oper[n] = i.admin_up, i.oper_up
        return admin, oper, missing

    def _snmp_get(self, device: str, d: ReadsSnmp, names: Sequence[str]) -> _Ifs | None:
        """GETs with the cached ifIndex; None when the cache is missing, old, or stale."""
        with self._lock:
            walked_at, index = self._index.get(device, (0.0, {}))
        if time.monotonic() - walked_at > self.rewalk_s:
            return None
        return status.read(d, index, names)

    def _snmp_walk(self, device: str, d: ReadsSnmp, names: Sequence[str]) -> _Ifs:
        """Walk where the watched interfaces are, cache it, then GET."""
        index = status.locate(d, names, "poll")
        with self._lock:
            self._index[device] = (time.monotonic(), index)
        got = self._snmp_get(device, d, names)
        if got is None:
            raise SnmpError(device, "poll", "the interface table changed while being read")
        return got


_Ifs = tuple[dict[str, bool], dict[str, bool | None], set[str]]


def _table_comments(d: Driver) -> tuple[str, ...] | None:
    """The comments of the rules of `table inet cordon` ("" for none), None when absent."""
    return require(d, ReadsRuleComments).rule_comments("poll")


def _traffic(
    guarded: Sequence[tuple[str, tuple[NftRule, ...]]], d: Driver
) -> dict[str, tuple[tuple[NftRule, ...], Reading]] | None:
    """The traffic counted by each guarded flow's rules (one read); None when the driver
    cannot read it (the platform does not count its rules' traffic: no judgement)."""
    reader = having(d, RuleTraffic)
    if reader is None:
        return None
    rules = [r for _, rs in guarded for r in rs]
    got = reader.rule_traffic(rules)
    out: dict[str, tuple[tuple[NftRule, ...], Reading]] = {}
    i = 0
    for flow, rs in guarded:
        out[flow] = (rs, tuple(got[i : i + len(rs)]))
        i += len(rs)
    return out


def reapply_recorded(
    pool: Pool,
    inv: Inventory,
    device: str,
    state: DeviceState,
    may_send: SendCheck | None = None,
) -> None:
    """Push `device`'s recorded isolation state back through its driver (the whole nft table,
    the recorded shutdowns) and verify it by read-back. Only ever closes: a normal record has
    nothing to re-apply (reopening is a rollback). Raises DeviceError (ConnectError,
    CommandRejected, VerifyError...) on failure, RunError for a normal record. `may_send`
    (with active/standby: the term's `Journal.may_send`) is asked right before each command,
    the device's session in hand; its `FencedError` sends nothing more."""
    from agent.run.transaction import expectation  # noqa: PLC0415 - the executor's read-back

    found = inv.find_device(device)
    if found is None:
        raise DeviceError(device, "lookup", "no such device in the inventory")
    lines = reapply_lines(found[1].platform, state)
    if not lines:
        raise RunError(
            f"{device}: its recorded state is normal: there is nothing to re-apply",
            hint="a leftover on a device recorded as normal is removed by a rollback or a "
            "run, decided by a person",
        )
    what = f"drift re-apply on {device}"
    sending = None if may_send is None else partial(may_send, what)
    for method, commands in lines:
        via = registry.via(method)
        change = ChangeSet(tuple(commands), action="drift.reapply")
        pool.run(device, partial(_apply, change, sending), via=via)
        pool.run(device, partial(_verify, expectation(method, NORMAL, state)), via=via)


def _apply(change: ChangeSet, sending: Callable[[], None] | None, d: Driver) -> object:
    if sending is not None:  # the session in hand: it may have been waited for, or connected
        sending()
    return d.apply(change)


def _verify(exp: Expectation, d: Driver) -> object:
    return d.verify(exp, action="drift.reapply.verify")

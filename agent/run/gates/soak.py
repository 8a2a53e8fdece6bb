"""The soak gate: after a reconnection, sample the checks every interval (rule counters, uplink
packets, flow probes), compare with the previous sample (journaled, so a restart continues the
same soak), pass when healthy for the whole time, and on an anomaly re-isolate and stop: the
zones at fault cut again by a step the planner plans and the renderer writes, or, when no zone
can be blamed, the opening step just before the soak undone. Imports the gate protocol, the
run's context, model, transaction and recovery, plan and soak (pure), the journal's rows, the
drivers' protocol."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from agent.drivers.base import Driver
from agent.engine import soak
from agent.engine.journal import NewStep
from agent.engine.plan import reisolation
from agent.errors import CordonError
from agent.platforms.capabilities import Counters, InterfaceCounters, require
from agent.playbook.models import CHANGE_ACTIONS, OPENING_ACTIONS, Playbook, Soak, Step
from agent.run import recovery, transaction
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Stopped, Verdict, Waiting
from agent.run.gates.verify import record
from agent.run.model import StepOutcome
from agent.status import GateStatus, StepStatus
from agent.verify.check import CHANGES_POLL_S, check_flows, site_flows, unverified_line
from agent.verify.evidence import FlowStatus


class SoakGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        """One tick of a soak."""
        assert isinstance(step, Soak)
        ctx, run_id, opts, now = run.ctx, run.run_id, run.opts, time.time()
        gate = ctx.journal.gate(run_id, site, step.name)
        seconds = opts.soak_seconds if opts.soak_seconds is not None else step.seconds
        interval = step.interval if opts.soak_seconds is None else min(step.interval, seconds / 5)
        interval = max(interval, 0.2)
        if gate is None:
            previous = previous_change(run.pb, step.name)
            if previous is not None and not any(
                r.site == site and r.step == previous for r in ctx.journal.steps(run_id)
            ):
                why = f"step {previous} changed nothing at {site}: nothing new to watch"
                ctx.obs.gate(
                    run_id,
                    site,
                    step.name,
                    GateStatus.SKIPPED,
                    detail={"why": why},
                    say=f"{site}: {step.name}: skipped ({why})",
                )
                return Passed()
            detail: dict[str, Any] = {
                "kind": "soak",
                "until": now + seconds,
                "interval": interval,
                "ticks": 0,
                "sample": None,
            }
            ctx.obs.soak_started(site, step.name, seconds, interval)
        else:
            detail = dict(gate.detail)
            if gate.wake_at is not None and now < gate.wake_at:
                return Waiting(_why(site, step, detail, now), gate.wake_at)
        states = ctx.journal.device_states()
        found = ctx.inv.site(site)
        assert found is not None
        watch = soak.watched(found, states)
        prev = soak.Sample.from_dict(detail["sample"]) if detail.get("sample") else None
        anomalies: list[soak.Anomaly] = []
        try:
            cur = _sample(ctx, found.name, watch, step)
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
        if step.probes:
            # every source on the site's flows: a failed flow is an anomaly (naming the sources
            # that contradicted it), a flow no source could check is said, never passed
            flows = site_flows(ctx.inv, site)
            out = check_flows(
                ctx.inv,
                ctx.sources,
                site,
                flows,
                ctx.journal.device_states,
                in_flight=ctx.journal.devices_in_flight,
                changes=ctx.journal,
                poll=CHANGES_POLL_S,
            )
            first = int(detail.get("ticks", 0)) == 0
            record(ctx, run_id, site, step.name, flows, out, audit_passed=first)
            anomalies += [soak.Anomaly(None, p) for p in out.problems()]
            detail["flows"] = {
                "passed": [r.flow for r in out.results if r.status is FlowStatus.PASSED],
                "failed": [r.flow for r in out.failed()],
                "sources": [s.name for s in ctx.sources],
            }
            detail["unverified"] = [unverified_line(r) for r in out.unverified()]
        detail["ticks"] = int(detail.get("ticks", 0)) + 1
        if cur is not None:
            detail["sample"] = cur.as_dict()
        if anomalies:
            return _reisolate(run, site, step, anomalies, detail)
        if now >= float(detail["until"]):
            ctx.obs.soak_passed(run_id, site, step.name, seconds, detail)
            return Passed()
        wake = min(now + interval, float(detail["until"]))
        ctx.obs.gate(run_id, site, step.name, GateStatus.OPEN, wake_at=wake, detail=detail)
        return Waiting(_why(site, step, detail, now), wake)


def _why(site: str, step: Soak, detail: Mapping[str, Any], now: float) -> str:
    left = max(float(detail["until"]) - now, 0.0)
    return f"{site}: {step.name}: soaking, healthy so far, {left:.0f} s left"


def _sample(
    ctx: Context, site: str, watch: Mapping[str, Mapping[str, str]], step: Soak
) -> soak.Sample:
    counters: dict[str, dict[str, int]] = {}
    for device in sorted(watch):
        read = ctx.pool.run(device, _rule_counters)
        counters[device] = {c: read[c] for c in watch[device] if c in read}
    uplink: dict[str, int] = {}
    found = ctx.inv.site(site)
    if step.max_uplink_pps is not None and found is not None:
        for link in (lk for lk in found.links if lk.kind.value == "wan"):
            packets = ctx.pool.run(
                link.device, partial(_uplink_packets, link.interface), via="snmp"
            )
            uplink[f"{link.device} {link.interface}"] = packets
    return soak.Sample(time.time(), counters, uplink)


def _reisolate(
    run: GateRun,
    site: str,
    step: Soak,
    anomalies: Sequence[soak.Anomaly],
    detail: dict[str, Any],
) -> Verdict:
    """Cut again what the soak found unhealthy: the zones at fault (their reconnection rules
    removed, as a new journaled step planned and rendered like any other), or, when no zone can
    be blamed, the opening step just before the soak (undone)."""
    ctx, run_id = run.ctx, run.run_id
    zones = sorted({a.zone for a in anomalies if a.zone})
    reason = "; ".join(a.what for a in anomalies)
    ctx.obs.soak_anomaly(site, step.name, zones, reason)
    outcomes: list[StepOutcome] = []
    if zones:
        found = ctx.inv.site(site)
        assert found is not None
        cut = reisolation(found, zones, ctx.journal.device_states())
        for c in cut.changes:
            new = NewStep(
                0, site, cut.step, c.device, c.method, c.commands, c.undo, c.before, c.after
            )
            outcomes.append(transaction.apply(ctx, ctx.obs.step_appended(run_id, new)))
    else:
        last = previous_change(run.pb, step.name, OPENING_ACTIONS)
        rows = [r for r in ctx.journal.steps(run_id) if r.site == site and r.step == last]
        outcomes += recovery.undo_rows(ctx, rows)
        zones = [f"(step {last})"] if last else []
    ok = all(o.status in (StepStatus.VERIFIED, StepStatus.UNDONE) for o in outcomes)
    detail.update(
        reason=reason,
        reisolated=zones,
        outcome="re-isolated" if ok else "re-isolation FAILED: check the site now",
    )
    ctx.obs.soak_reisolated(run_id, site, step.name, zones, detail, ok=ok)
    return Stopped(f"{site}: {step.name}: {reason}")


def previous_change(pb: Playbook, step: str, actions: Sequence[str] = CHANGE_ACTIONS) -> str | None:
    """The last step of one of `actions` before `step` in the playbook (what a soak watches, or
    what it undoes when no zone can be blamed)."""
    names = [s.name for s in pb.steps]
    earlier = [s for s in pb.steps[: names.index(step)] if s.action in actions]
    return earlier[-1].name if earlier else None


def _rule_counters(d: Driver) -> dict[str, int]:
    return {str(k): int(v) for k, v in require(d, Counters).rule_counters().items()}


def _uplink_packets(interface: str, d: Driver) -> int:
    return int(
        require(d, InterfaceCounters).interface_counters([interface])[interface].out_ucast_pkts
    )

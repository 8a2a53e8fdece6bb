"""Time-to-contain on the twin, the Hospi Grand Ouest scenario: from the trigger to all 9
establishments contained AND every flow checked by the flow sources. `isolate-site` on
rennes-la-sagesse and `preventive-degraded` on the 8 sister sites, started at the same moment in
two threads, each `Executor.run(pb, sites)` with the sources a composition root gives a run when
the twin is up (`cordon demo`, the daemon, `--local`): `production_sources` (the devices' own
decisions, the accepts' counters, probe points) and the twin's prober (`flows.TwinSource`).

Measured with (a) warm connections (`Pool.warm()` before the trigger) and (b) cold ones (a fresh
Pool, no session open; the driver modules are imported once beforehand, as in a running agent),
and side by side in the same run when asked (`--only`): the twin's prober alone, the twin's
probing before session 3 (every flow probed with one 0.5 s timeout), the 8 sister sites one after
the other (`order: serial`), and the two runs one after the other (as `cordon demo` does).

Every repetition starts from normal: both runs are rolled back and the whole flow matrix is
probed (all 135 flows open) before the next one. After each containment, outside the timing,
the whole matrix is probed independently of the sources (1 s timeout for every flow) against the
recorded device states. Printed per scenario: the median, min, max and spread (max - min) over
the repetitions, and the breakdown of the last site checked (plan, backups, apply, read-back,
the sources asked: wall time, rounds, each source's share), each source's call time over every
site, and each platform's device reads made by the sources (from the audit log, the RunReport
outcomes, the sources and the pool wrapped with timers). `--handshakes`: one extra, untimed
containment per mode runs, meanwhile, the twin's probe of flows expected closed
(`flows.handshake_probe`) on the must-survive flows (open throughout) with waits of 1 to 30 ms:
how many open flows a wait that short would have called closed under that load, against the
verifier's 100 ms.

The example group runs on a mix of platforms (FortiGate, Stormshield, Linux firewalls; IOS,
IOS-XE, AOS-CX switches); `--groups mixed linux` (the default) measures it and, in the same run,
the same group with every firewall on Linux nftables (`scripts.synth.hospi_grand_ouest(mixed=
False)`), one twin after the other, and prints both side by side.

Run as root: `.venv/bin/python -m benchmarks.bench_contain [--runs N] [--only NAME ...]
[--groups mixed|linux ...] [--handshakes]`. Holds the twin lock (`agent.lab.build.exclusive`)
throughout; refuses if a twin is already up; brings each twin up and always takes it down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from agent import audit
from agent.drivers.base import Driver
from agent.drivers.pool import Pool
from agent.engine.journal import Journal, StepRow
from agent.errors import CordonError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.inventory.select import select_sites
from agent.lab import build, flows
from agent.lab.probe import ProbeTarget
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint
from agent.network.paths import flow_path
from agent.network.state import DeviceState, flow_open
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from agent.run.model import RunReport
from agent.verify.evidence import Evidence, FlowSource, Seen
from agent.verify.sources import production_sources
from benchmarks.machine import describe
from scripts.synth import hospi_grand_ouest

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
HIT = "rennes-la-sagesse"
# a flow source's check: (site, flows, expected) -> evidence
Verifier = Callable[[str, Sequence[Flow], Mapping[str, bool]], list[Evidence]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    warm: bool
    # all: the sources a composition root gives the run on the twin (`cordon demo`, the daemon,
    # `--local`): the production ones (device decisions, counters, probe points) and the twin's
    # prober; twin: the twin's prober alone; legacy: the twin's probing before session 3 (one
    # 0.5 s timeout for every flow), same retries
    verifier: str = "all"
    serial_sites: bool = False  # preventive-degraded with `order: serial`
    runs_in_turn: bool = False  # isolate-site, then preventive-degraded (as the demo)


SCENARIOS = [
    Scenario("warm", "warm pool, 2 runs in parallel, sites in parallel", warm=True),
    Scenario("cold", "fresh pool, 2 runs in parallel, sites in parallel", warm=False),
    Scenario("warm-twin-only", "warm, verified by the twin's prober alone", True, "twin"),
    Scenario(
        "warm-sources-in-turn",
        "warm, the same sources asked one after the other (before session 6)",
        True,
        "in-turn",
    ),
    Scenario("warm-0.5s-probing", "warm, verifier probing before: 0.5 s per flow", True, "legacy"),
    Scenario("cold-0.5s-probing", "cold, verifier probing before: 0.5 s per flow", False, "legacy"),
    Scenario(
        "warm-serial-sites", "warm, the 8 sister sites one after the other", True, serial_sites=True
    ),
    Scenario(
        "warm-runs-in-turn", "warm, isolate-site then preventive-degraded", True, runs_in_turn=True
    ),
]


def legacy_verifier(inv: Inventory, bp: Blueprint) -> Verifier:
    """The twin's probing as it was before it changed (kept here for the comparison): every
    flow asked in one batch with a 0.5 s timeout; the run's retries (8 s to settle, the journal
    re-read between rounds) are the same, so only the probing differs."""

    def verify(site: str, mine: Sequence[Flow], expected: Mapping[str, bool]) -> list[Evidence]:
        del site
        obs = flows.observe(inv, bp, _lookup(expected), flows=mine, timeout=0.5)
        return [
            Evidence(o.flow.name, "twin", Seen.OPEN if o.observed_open else Seen.CLOSED)
            for o in obs
        ]

    return verify


def _lookup(expected: Mapping[str, bool]) -> flows.Expectation:
    return lambda flow: expected[flow.name]


class TimedSource:
    """A flow source wrapped: (source, site, wall start, wall end, flows asked, flows not as
    expected) of every call, kept in `calls` (shared by every source of a containment)."""

    def __init__(
        self,
        name: str,
        inner: Verifier,
        calls: list[tuple[str, str, float, float, int, int]],
        lock: threading.Lock,
        contradictions: list[tuple[str, float, Evidence]],
    ) -> None:
        self.name = name
        self.inner = inner
        self.calls = calls
        self.contradictions = contradictions
        self._lock = lock

    def check(
        self, site: str, mine: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        return self._timed(site, mine, expected, lambda: self.inner(site, mine, expected))

    def _timed(
        self,
        site: str,
        mine: Sequence[Flow],
        expected: Mapping[str, bool],
        call: Callable[[], list[Evidence]],
    ) -> list[Evidence]:
        t0 = time.time()
        out = call()
        t1 = time.time()
        bad = [
            e
            for e in out
            if e.seen is not Seen.UNKNOWN and (e.seen is Seen.OPEN) != expected[e.flow]
        ]
        with self._lock:
            self.calls.append((self.name, site, t0, t1, len(mine), len(bad)))
            self.contradictions += [(site, t1, e) for e in bad]
        return out


class TimedStopsEarly(TimedSource):
    """A source that can stop waiting for a flow another source failed (`check_until`; the
    agent of a checkout before it, run with `PYTHONPATH`, has none: then `TimedSource`)."""

    def __init__(self, source: Any, *args: Any) -> None:
        super().__init__(source.name, source.check, *args)
        self.source = source

    def check_until(
        self, site: str, mine: Sequence[Flow], expected: Mapping[str, bool], failed: Any
    ) -> list[Evidence]:
        def call() -> list[Evidence]:
            return cast(list[Evidence], self.source.check_until(site, mine, expected, failed))

        return self._timed(site, mine, expected, call)


class CountingJournal(Journal):
    """The run's journal, counting the reads the flow checks poll while steps are in flight
    (`steps_in_flight`, `device_states`, by every caller) and the seconds spent in them
    (the journal's lock waited for included)."""

    def __init__(self, where: Path) -> None:
        super().__init__(where)
        self.polls: dict[str, list[float]] = {}
        self._count_lock = threading.Lock()

    def _count(self, name: str, t0: float) -> None:
        with self._count_lock:
            got = self.polls.setdefault(name, [0, 0.0])
            got[0] += 1
            got[1] += time.perf_counter() - t0

    def steps_in_flight(self) -> list[StepRow]:
        t0 = time.perf_counter()
        try:
            return super().steps_in_flight()
        finally:
            self._count("steps_in_flight", t0)

    def device_states(self) -> dict[str, DeviceState]:
        t0 = time.perf_counter()
        try:
            return super().device_states()
        finally:
            self._count("device_states", t0)


class Timed:
    """Every source of a containment, timed (see TimedSource)."""

    def __init__(self, sources: Sequence[FlowSource]) -> None:
        self.calls: list[tuple[str, str, float, float, int, int]] = []
        # (site, when answered, evidence) of every answer other than expected
        self.contradictions: list[tuple[str, float, Evidence]] = []
        lock = threading.Lock()
        self.sources = [
            TimedStopsEarly(s, self.calls, lock, self.contradictions)
            if hasattr(s, "check_until")
            else TimedSource(s.name, s.check, self.calls, lock, self.contradictions)
            for s in sources
        ]

    def of_site(self, site: str) -> list[tuple[str, str, float, float, int, int]]:
        return [c for c in self.calls if c[1] == site]


class TimedPool:
    """The run's pool as the flow sources see it: every device read they make timed,
    (device, platform, seconds), in `reads`. Everything else goes to the pool."""

    def __init__(self, pool: Pool, inv: Inventory) -> None:
        self._pool = pool
        self._platform = {d.name: d.platform for _, d in inv.devices()}
        self.reads: list[tuple[str, str, float]] = []
        self.spans: list[tuple[str, float, float]] = []  # (device, wall start, wall end)
        self._lock = threading.Lock()

    def run(
        self, device: str, fn: Callable[[Driver], T], via: Any = "ssh", wait: float | None = None
    ) -> T:
        t0, wall = time.perf_counter(), time.time()
        try:
            return self._pool.run(device, fn, via, wait=wait)
        finally:
            with self._lock:
                self.reads.append(
                    (device, self._platform.get(device, "?"), time.perf_counter() - t0)
                )
                self.spans.append((device, wall, time.time()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _union(spans: Sequence[tuple[float, float]]) -> float:
    """The wall time covered by possibly overlapping spans."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


class HandshakeSampler:
    """In a thread, until stopped: `flows.handshake_probe` (the verifier's probe of a flow
    expected closed) on flows that are open throughout, with waits far shorter than the
    verifier's. Any miss is a flow that is open but would have been called closed after that
    wait: how short a wait stays safe under the load of a containment."""

    WAITS = (0.001, 0.003, 0.01, 0.03)

    def __init__(self, targets: Sequence[ProbeTarget]) -> None:
        self.targets = list(targets)
        self.sent = dict.fromkeys(self.WAITS, 0)
        self.missed = dict.fromkeys(self.WAITS, 0)
        self.seen_ms: list[float] = []  # when the thread saw each handshake done (GIL included)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> HandshakeSampler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for wait in self.WAITS:
                    out = flows.handshake_probe(self.targets, wait)
                    self.sent[wait] += len(out)
                    self.missed[wait] += sum(not r.ok for r in out)
                    self.seen_ms += [r.elapsed_ms for r in out if r.ok]
                self._stop.wait(0.01)
        except BaseException as exc:  # re-raised by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def merge(self, other: HandshakeSampler) -> None:
        for w in self.WAITS:
            self.sent[w] += other.sent[w]
            self.missed[w] += other.missed[w]
        self.seen_ms += other.seen_ms


@dataclass
class Rep:
    seconds: float
    phases: dict[str, float]  # the critical (last verified) site's path, seconds
    work: dict[str, float]  # sums over all sites, seconds
    critical: str
    verify_calls: int
    rounds: int  # the critical site's rounds of asking (verify steps + re-asks)
    by_source: dict[str, list[float]]  # source kind -> each call's seconds, every site
    critical_sources: dict[str, float]  # source kind -> seconds summed on the critical site
    problems: list[str] = field(default_factory=list)  # flow problems the runs reported
    unverified: list[str] = field(default_factory=list)  # flows no source could check
    reads: list[tuple[str, str, float]] = field(default_factory=list)  # sources' device reads
    # the journal reads the checks poll (every caller): method -> [calls, seconds in them]
    polls: dict[str, list[float]] = field(default_factory=dict)
    # every verify step's waits before asking, every site ("site step: asked after ...")
    waits: list[str] = field(default_factory=list)
    # the critical site's audit records and source calls: (start, end, what), seconds from the
    # trigger (end None: an instant)
    timeline: list[tuple[float, float | None, str]] = field(default_factory=list)
    # the same for each other site with an answer not as expected (a re-ask)
    others: dict[str, list[tuple[float, float | None, str]]] = field(default_factory=dict)


@dataclass
class Result:
    scenario: Scenario
    reps: list[Rep] = field(default_factory=list)


@dataclass
class Bench:
    inv: Inventory
    bp: Blueprint
    tmp: Path
    log_dir: Path
    isolate: Playbook
    degrade: Playbook
    others: list[str]
    devices: list[str]
    warm_pool: Pool
    count: int = 0

    def sources(self, kind: str, pool: Pool) -> tuple[Timed, TimedPool]:
        """The scenario's flow sources, timed, and the pool the production ones read through."""
        timed_pool = TimedPool(pool, self.inv)
        if kind == "legacy":
            return Timed([_Named("twin", legacy_verifier(self.inv, self.bp))]), timed_pool
        twin = flows.TwinSource(self.inv, self.bp)
        if kind == "twin":
            return Timed([twin]), timed_pool
        if kind == "in-turn":
            every = [*production_sources(self.inv, cast(Pool, timed_pool)), twin]
            return Timed([InTurn(every)]), timed_pool
        return Timed([*production_sources(self.inv, cast(Pool, timed_pool)), twin]), timed_pool

    def contain(
        self, sc: Scenario, *, handshakes: HandshakeSampler | None = None
    ) -> tuple[Rep, Executor, list[RunReport]]:
        """One containment from normal; returns it, with the executor that can undo it."""
        self.count += 1
        journal = CountingJournal(self.tmp / f"journal-{self.count}.sqlite")
        pool = self.warm_pool if sc.warm else Pool(self.inv, keepalive=None)
        if sc.warm:
            opened = pool.warm(self.devices)
            if not all(o.ok for o in opened):
                raise CordonError(f"warm-up failed: {[o.error for o in opened if o.error]}")
        timed, timed_pool = self.sources(sc.verifier, pool)
        ex = Executor(self.inv, journal, pool, actor="bench-contain", sources=timed.sources)
        degrade = (
            self.degrade.model_copy(update={"order": "serial"}) if sc.serial_sites else self.degrade
        )
        jobs: list[tuple[Playbook, list[str]]] = [(self.isolate, [HIT]), (degrade, self.others)]
        reports: list[RunReport | None] = [None, None]
        errors: list[BaseException] = []
        ends = [0.0, 0.0]
        start = threading.Barrier(3 if not sc.runs_in_turn else 2)

        def one(i: int) -> None:
            try:
                reports[i] = ex.run(*jobs[i])
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            ends[i] = time.perf_counter()

        def both_in_turn() -> None:
            start.wait()
            one(0)
            one(1)

        def parallel(i: int) -> None:
            start.wait()
            one(i)

        threads = (
            [threading.Thread(target=both_in_turn)]
            if sc.runs_in_turn
            else [threading.Thread(target=parallel, args=(i,)) for i in (0, 1)]
        )
        sampler = None
        if handshakes is not None:
            must = [t for f, t in flows.targets(self.inv, self.bp) if f.must_survive]
            sampler = HandshakeSampler(must).start()
        for th in threads:
            th.start()
        start.wait()
        t0, wall0 = time.perf_counter(), time.time()
        for th in threads:
            th.join()
        seconds = max(ends) - t0
        if sampler is not None:
            sampler.stop()
            assert handshakes is not None
            handshakes.merge(sampler)
        if not sc.warm:
            pool.close()
        done = [r for r in reports if r is not None]
        # a run whose devices all changed and read back but whose flow check found problems
        # ends `failed`: recorded and shown; anything else stops the benchmark
        steps_ok = all(o.status == "verified" for r in done for o in r.outcomes)
        if (
            errors
            or len(done) != 2
            or not steps_ok
            or any(
                r.status not in ("done", "failed")
                or (r.status == "failed") != bool(r.flow_problems)
                for r in done
            )
        ):
            detail = [(r.status, r.flow_problems) for r in done]
            raise CordonError(f"{sc.name}: containment did not end done: {errors} {detail}")
        self.check_matrix(journal.device_states(), "after containment")
        rep = self.breakdown(done, timed, wall0, seconds, timed_pool.spans)
        rep.reads = list(timed_pool.reads)
        rep.problems = [p for r in done for p in r.flow_problems]
        rep.unverified = [u for r in done for u in r.flows_unverified]
        rep.polls = dict(journal.polls)
        # the verify steps' waits before asking (for steps in flight or coming next), said on
        # the critical site's timeline when their gate opened
        for r in done:
            for g in journal.gates(r.run_id):
                waits = g.detail.get("waits")
                if not isinstance(waits, list):
                    continue
                rep.waits += [f"{g.site} {g.step}: asked after {w}" for w in waits]
                if g.site == rep.critical:
                    rep.timeline += [
                        (g.opened_at - wall0, None, f"  {g.step}: asked after {w}") for w in waits
                    ]
        rep.timeline.sort(key=lambda x: x[0])
        undo_pool = self.warm_pool  # cold pools are closed: undo through the warm one
        undo = Executor(self.inv, journal, undo_pool, actor="bench-contain")
        return rep, undo, done

    def restore(self, ex: Executor, reports: Sequence[RunReport]) -> None:
        for r in reversed(reports):
            back = ex.rollback(r.run_id)
            if back.status != "rolled_back":
                raise CordonError(f"rollback of {r.run_id}: {back.status}")
        ex.journal.close()
        deadline = time.monotonic() + 3.0
        while True:
            obs = flows.observe(self.inv, self.bp, timeout=2.0)
            shut = [o.flow.name for o in obs if not o.observed_open]
            if not shut:
                return
            if time.monotonic() > deadline:
                raise CordonError(f"not back to normal after rollback: {shut} still closed")
            time.sleep(0.2)

    def check_matrix(self, states: Mapping[str, DeviceState], when: str) -> None:
        """Every flow, probed independently of the verifier, as the recorded states say."""
        paths = {f.name: flow_path(self.inv, f) for f in self.inv.flows}
        obs = flows.observe(
            self.inv, self.bp, lambda f: flow_open(states, paths[f.name]), timeout=1.0
        )
        wrong = [o.flow.name for o in obs if not o.as_expected]
        if wrong:
            raise CordonError(f"flow matrix {when} not as recorded: {wrong}")

    def breakdown(
        self,
        reports: Sequence[RunReport],
        timed: Timed,
        wall0: float,
        seconds: float,
        spans: Sequence[tuple[str, float, float]] = (),
    ) -> Rep:
        ids = {r.run_id for r in reports}
        records = [
            rec
            for path in sorted(self.log_dir.glob("audit-*.jsonl"))
            for rec in map(json.loads, path.read_text().splitlines())
            if rec.get("run_id") in ids
        ]

        def ts(rec: Mapping[str, object]) -> float:
            return datetime.fromisoformat(str(rec["ts"])).timestamp()

        started = {rec["run_id"]: ts(rec) for rec in records if rec["event"] == "run.started"}
        run_of = {s: r.run_id for r in reports for s in (r.plan.sites if r.plan else ())}
        finish = {site: max(c[3] for c in timed.of_site(site)) for site in run_of}
        critical = max(finish, key=lambda s: finish[s])

        def site_sum(event: str, site: str | None) -> float:
            return sum(
                float(rec.get("duration_s") or 0.0)
                for rec in records
                if rec["event"] == event and (site is None or rec.get("site") == site)
            )

        first_step = min(
            ts(rec)
            for rec in records
            if rec["event"] == "step.started" and rec.get("site") == critical
        )
        steps = sum(o.duration_s for r in reports for o in r.outcomes if o.site == critical)
        mine = timed.of_site(critical)
        verify = _union([(c[2], c[3]) for c in mine])
        plan_s = started[run_of[critical]] - wall0
        before = first_step - started[run_of[critical]]
        phases = {
            "trigger -> run.started (plan, journal; [1])": plan_s,
            "run.started -> first device step (backups; [2])": before,
            "device steps (apply + read-back)": steps,
            "  of which apply (device.change)": site_sum("device.change", critical),
            "  of which read-back (device.verify)": site_sum("device.verify", critical),
            "verify_flows, sources asked (wall)": verify,
            "journal, gaps": finish[critical] - wall0 - plan_s - before - steps - verify,
            "after the last verify until the run returns": seconds - (finish[critical] - wall0),
        }
        # the runs recorded over (containment done; the run then takes its after snapshots)
        finished = [ts(rec) for rec in records if rec["event"] == "run.finished"]
        if len(finished) == len(reports):
            phases["  of which after run.finished (after snapshots)"] = seconds - (
                max(finished) - wall0
            )
        every = [(c[2], c[3]) for c in timed.calls]
        work = {
            "device steps": sum(o.duration_s for r in reports for o in r.outcomes),
            "verify_flows (wall, per site)": sum(
                _union([(c[2], c[3]) for c in timed.of_site(s)]) for s in run_of
            ),
            "verify_flows (wall, all sites)": _union(every),
        }
        by_source: dict[str, list[float]] = {}
        for c in timed.calls:
            by_source.setdefault(_kind(c[0]), []).append(c[3] - c[2])
        critical_sources: dict[str, float] = {}
        for c in mine:
            critical_sources[_kind(c[0])] = critical_sources.get(_kind(c[0]), 0.0) + c[3] - c[2]
        first = timed.sources[0].name
        rounds = sum(c[0] == first for c in mine)
        by_name = {f.name: f for f in self.inv.flows}

        def site_timeline(site: str) -> list[tuple[float, float | None, str]]:
            """The site's audit records and source calls, and what happened meanwhile on the
            devices of its flows found not as expected: the other runs' steps there (the
            audit records of other sites) and the sources' reads of them."""
            out: list[tuple[float, float | None, str]] = [
                (ts(rec) - wall0, None, _what(rec)) for rec in records if rec.get("site") == site
            ]
            out += [
                (
                    c[2] - wall0,
                    c[3] - wall0,
                    f"source {c[0]} ({c[4]} flows, {c[5]} not as expected)",
                )
                for c in timed.of_site(site)
            ]
            out += [
                (
                    at - wall0,
                    None,
                    f"  not as expected: {e.flow} {e.seen.value} by {e.source}: {e.detail}",
                )
                for s2, at, e in timed.contradictions
                if s2 == site
            ]
            wrong = {e.flow for s2, _, e in timed.contradictions if s2 == site}
            crossed = {
                h.device
                for name in wrong
                if name in by_name
                for h in flow_path(self.inv, by_name[name]).hops
            }
            out += [
                (ts(rec) - wall0, None, f"  [{rec.get('site')}] {_what(rec)}")
                for rec in records
                if rec.get("site") != site and rec.get("device") in crossed
            ]
            out += [
                (a - wall0, b - wall0, f"  a source's read of {d}")
                for d, a, b in spans
                if d in crossed
            ]
            return sorted(out, key=lambda x: x[0])

        timeline = site_timeline(critical)
        reasked = sorted({s2 for s2, _, _ in timed.contradictions} - {critical})
        return Rep(
            seconds,
            phases,
            work,
            critical,
            len(timed.calls),
            rounds,
            by_source,
            critical_sources,
            timeline=timeline,
            others={site: site_timeline(site) for site in reasked},
        )


def _what(rec: Mapping[str, object]) -> str:
    """An audit record in a timeline: its event, step and device."""
    parts = [str(rec["event"])]
    parts += [str(rec[k]) for k in ("step", "device") if rec.get(k)]
    if rec.get("duration_s"):
        parts.append(f"{float(cast(float, rec['duration_s'])):.3f} s")
    return " ".join(parts)


def _kind(source: str) -> str:
    """A source's kind: `counters:fw1` -> `counters`."""
    return source.split(":", 1)[0]


class InTurn:
    """The sources as one, asked one after the other (how `agent.verify.check.ask` asked them
    before session 6): a source that cannot run answers UNKNOWN for each flow, as there."""

    name = "in-turn"

    def __init__(self, sources: Sequence[FlowSource]) -> None:
        self.sources = list(sources)

    def check(
        self, site: str, mine: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        out: list[Evidence] = []
        for s in self.sources:
            try:
                out += s.check(site, mine, expected)
            except CordonError as exc:
                out += [Evidence(f.name, s.name, Seen.UNKNOWN, exc.message) for f in mine]
        return out


@dataclass(frozen=True)
class _Named:
    """A check function as a named flow source."""

    name: str
    fn: Verifier

    def check(
        self, site: str, mine: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        return self.fn(site, mine, expected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="repetitions per scenario")
    parser.add_argument(
        "--only", nargs="*", choices=[s.name for s in SCENARIOS], help="scenarios to run"
    )
    parser.add_argument(
        "--groups",
        nargs="*",
        choices=list(GROUPS),
        default=list(GROUPS),
        help="the example group on its mix of platforms, and/or all on Linux firewalls",
    )
    parser.add_argument(
        "--handshakes",
        action="store_true",
        help="also sample short handshake waits during one extra containment per mode",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print the last site's audit records and source calls (last repetition)",
    )
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    print(describe())
    by_group: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="cordon-bench-contain-") as tmp:
        os.environ["CORDON_STATE_DIR"] = str(Path(tmp) / "state")
        log_dir = Path(tmp) / "logs"
        os.environ["CORDON_LOG_DIR"] = str(log_dir)
        audit.configure(log_dir, console=False)
        with build.exclusive(print):
            if LabState.load(build.DEFAULT_LAB) is not None:
                sys.exit("a twin is up: `cordon lab down` first")
            for group in args.groups:
                inv = load(GROUPS[group](Path(tmp) / group))
                platforms = sorted({d.platform for _, d in inv.devices()})
                print(f"\n=== group {group}: {', '.join(platforms)}", flush=True)
                state = build.up(inv)
                try:
                    results, handshakes = measure(
                        inv,
                        blueprint(inv, state.lab),
                        Path(tmp),
                        log_dir,
                        scenarios,
                        args.runs,
                        handshakes=args.handshakes,
                    )
                finally:
                    build.down()
                by_group[group] = results
                print(f"\n--- group {group}")
                report(results, handshakes, args.runs)
                if args.timeline:
                    timelines(results)
        audit.close()
        check = audit.verify(log_dir)
    side_by_side(by_group)
    print(f"\naudit chain: {check.records} records, {'intact' if check.ok else 'BROKEN'}")


def _mixed(_: Path) -> Path:
    return ROOT / "inventory" / "hospi-grand-ouest.yaml"


def _all_linux(folder: Path) -> Path:
    """The example group with every firewall on Linux nftables (and the IOS-style switches),
    written where its secrets will be generated."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hospi-grand-ouest.yaml"
    doc = hospi_grand_ouest(mixed=False)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


GROUPS: dict[str, Callable[[Path], Path]] = {"mixed": _mixed, "linux": _all_linux}


def side_by_side(by_group: Mapping[str, Sequence[Result]]) -> None:
    """Each scenario's median time-to-contain on each group, in one table."""
    groups = list(by_group)
    print(f"\ntime-to-contain, median seconds: {' vs '.join(groups)}")
    print(f"{'scenario':<22}" + "".join(f"{g:>10}" for g in groups))
    names = [r.scenario.name for r in next(iter(by_group.values()), [])]
    for name in names:
        cells = []
        for g in groups:
            res = next(r for r in by_group[g] if r.scenario.name == name)
            cells.append(f"{statistics.median(r.seconds for r in res.reps):>10.3f}")
        print(f"{name:<22}" + "".join(cells))


def measure(
    inv: Inventory,
    bp: Blueprint,
    tmp: Path,
    log_dir: Path,
    scenarios: Sequence[Scenario],
    runs: int,
    *,
    handshakes: bool = False,
) -> tuple[list[Result], dict[str, HandshakeSampler]]:
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    degrade = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv)
    others = [s.name for s in select_sites(inv, degrade.targets.selector()) if s.name != HIT]
    devices = [d.name for s in inv.sites if s.name in [HIT, *others] for d in s.devices]
    obs = flows.observe(inv, bp, timeout=2.0)
    if not all(o.observed_open for o in obs):
        raise CordonError("the twin's flow matrix is not all open before the benchmark")
    with Pool(inv, keepalive=None) as warm_pool:
        # imports the drivers' modules and opens every session once: cold runs then measure
        # connections, not imports
        warm_pool.warm(devices)
        bench = Bench(inv, bp, tmp, log_dir, isolate, degrade, others, devices, warm_pool)
        results = [Result(s) for s in scenarios]
        samplers: dict[str, HandshakeSampler] = {}
        for mode in ("warm", "cold") if handshakes else ():
            sc = next(s for s in SCENARIOS if s.name == mode)
            samplers[mode] = HandshakeSampler([])
            _, ex, done = bench.contain(sc, handshakes=samplers[mode])
            bench.restore(ex, done)
        for i in range(runs):  # round-robin: drift of the machine spreads over every scenario
            for res in results:
                rep, ex, done = bench.contain(res.scenario)
                bench.restore(ex, done)
                res.reps.append(rep)
                print(
                    f"  {res.scenario.name:<20} rep {i + 1}: {rep.seconds:.3f} s "
                    f"(last verified: {rep.critical}, {rep.rounds} rounds on it, "
                    f"{rep.verify_calls} source calls, {len(rep.unverified)} unverified)"
                    + (f" FAILED: {rep.problems}" if rep.problems else ""),
                    flush=True,
                )
    return results, samplers


def timelines(results: Sequence[Result]) -> None:
    """The last repetition's critical site (and any with a re-ask on it), event by event,
    seconds from the trigger; then every other site with an answer not as expected."""
    for res in results:
        for i, rep in enumerate(res.reps):
            last = i == len(res.reps) - 1
            shown = [(rep.critical, rep.timeline)] if last or rep.rounds > 2 else []
            shown += list(rep.others.items())
            for site, events in shown:
                print(f"\n{res.scenario.name}: timeline of {site} (repetition {i + 1}), s")
                for a, b, what in events:
                    span = f"{a:7.3f}" + (f" -{b:7.3f}" if b is not None else " " * 9)
                    print(f"  {span}  {what}")


def spread(values: Sequence[float]) -> str:
    """median, min, max and the spread (max - min) of `values`, seconds."""
    v = list(values)
    return f"{statistics.median(v):>8.3f}{min(v):>8.3f}{max(v):>8.3f}{max(v) - min(v):>8.3f}"


def report(
    results: Sequence[Result],
    handshakes: Mapping[str, HandshakeSampler],
    runs: int,
) -> None:
    print(
        f"\ntime-to-contain, {HIT} isolate-site + preventive-degraded on 8 sister sites, "
        f"trigger -> both runs done and every flow checked by the sources; {runs} repetitions "
        "each, all from normal (rolled back, 135/135 flows open, checked)"
    )
    print(f"{'scenario':<22}{'median':>8}{'min':>8}{'max':>8}{'spread':>8}{'failed':>8}  what")
    for res in results:
        bad = sum(bool(r.problems) for r in res.reps)
        print(
            f"{res.scenario.name:<22}{spread([r.seconds for r in res.reps])}"
            f"{f'{bad}/{len(res.reps)}':>8}  {res.scenario.what}"
        )
    for res in results:
        for r in res.reps:
            if r.problems:
                print(f"  {res.scenario.name}: {r.seconds:.3f} s, run failed: {r.problems}")
    for res in results:
        reps = res.reps
        crit = sorted({r.critical for r in reps})
        print(
            f"\n{res.scenario.name}: breakdown of the last site verified ({', '.join(crit)}), "
            f"seconds {'median':>8}{'min':>8}{'max':>8}{'spread':>8}"
        )
        for phase in reps[0].phases:
            print(f"  {phase:<50}{spread([r.phases[phase] for r in reps])}")
        print(f"  {'= time-to-contain':<50}{spread([r.seconds for r in reps])}")
        rounds = sorted({r.rounds for r in reps})
        print(f"  rounds of asking on it (verify steps + re-asks): {rounds}")
        kinds = sorted({k for r in reps for k in r.critical_sources})
        for k in kinds:
            print(
                f"  on it, source {k:<35}{spread([r.critical_sources.get(k, 0.0) for r in reps])}"
            )
        for k in reps[0].work:
            print(f"  summed over the 9 sites: {k:<25}{spread([r.work[k] for r in reps])}")
        kinds = sorted({k for r in reps for k in r.by_source})
        for k in kinds:
            calls = [x for r in reps for x in r.by_source.get(k, [])]
            print(
                f"  one call of source {k:<10} (every site, {len(calls)} calls): median "
                f"{statistics.median(calls):.3f} s, max {max(calls):.3f} s"
            )
        plats = sorted({pl for r in reps for _, pl, _ in r.reads})
        for pl in plats:
            secs = [x for r in reps for _, p2, x in r.reads if p2 == pl]
            print(
                f"  a device read by the sources, {pl:<16} ({len(secs)} reads): median "
                f"{statistics.median(secs) * 1000:.0f} ms, max {max(secs) * 1000:.0f} ms"
            )
        unv = sorted({u for r in reps for u in r.unverified})
        print(f"  flows unverified (no source could tell): {len(unv)} distinct")
        waits = [w for r in reps for w in r.waits]
        print(
            f"  verify steps that waited before asking (every site, every repetition): {len(waits)}"
        )
        for w in waits[:8]:
            print(f"    {w}")
        for m in sorted({m for r in reps for m in r.polls}):
            calls = [r.polls.get(m, [0, 0.0])[0] for r in reps]
            secs = [r.polls.get(m, [0, 0.0])[1] for r in reps]
            print(
                f"  journal.{m} (every caller, per containment): calls median "
                f"{statistics.median(calls):.0f}, seconds in it{spread(secs)}"
            )
        for u in unv[:5]:
            print(f"    {u}")
    print(
        "\n[1] in turn: includes the whole run before it. [2] serial sites: includes the sites "
        "before it. Device steps: RunReport outcomes' durations; apply and read-back: the "
        "device.change and device.verify audit records; verify_flows: the sources' calls (wall: "
        "overlapping calls counted once)."
    )
    for mode, hs in handshakes.items():
        misses = ", ".join(
            f"{w * 1000:g} ms: {hs.missed[w]}/{hs.sent[w]} missed" for w in HandshakeSampler.WAITS
        )
        ms = hs.seen_ms
        print(
            f"\nhandshake probes (the verifier's probe of flows expected closed) on the "
            f"must-survive flows, open throughout a {mode} containment, with waits of {misses}; "
            f"seen done by the probing thread after median {statistics.median(ms):.2f} ms, "
            f"max {max(ms):.2f} ms. The verifier waits at least "
            f"{flows.CLOSED_TIMEOUT_S * 1000:.0f} ms."
        )


if __name__ == "__main__":
    main()

"""`cordon demo`: the main job on the built-in example, readable by a newcomer.

Brings up the Hospi Grand Ouest twin, shows the inventory and the flow matrix, declares an attack
at La Sagesse (isolate it, switch the 8 sister sites to preventive degraded mode while probing the
must-survive flows), shows the degraded flow matrix, restores everything, verifies the audit chain,
and takes the twin down (unless --keep). Narration only; the work is done by the modules.

A composition root like the daemon's `main`: imports the inventory, the playbooks, the executor
(`agent.run`), the journal, the drivers' pool, the network model, audit and the twin (`agent.lab`).
"""

from __future__ import annotations

import getpass
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import click

from agent import audit
from agent.cli.commands.inventory import render as render_inventory
from agent.cli.options import inventory_option
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import zones_of
from agent.errors import CordonError
from agent.inventory import default_path, load
from agent.inventory.models import Inventory
from agent.inventory.select import select_sites
from agent.lab import build, flows, ready
from agent.lab.infect import cure, infect
from agent.lab.probe import ContinuousProber
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint
from agent.network.paths import flow_path
from agent.network.state import DeviceState, flow_open
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook, ReconnectZone
from agent.run.executor import Executor
from agent.run.model import RunOptions
from agent.status import GateStatus, RunStatus
from agent.verify.sources import production_sources

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def _say(text: str, *, color: bool) -> None:
    click.echo(click.style(text, bold=True) if color else text)


@click.command()
@inventory_option
@click.option("--keep", is_flag=True, help="Leave the twin up afterwards (`cordon lab down`).")
def demo(inventory_path: Path | None, keep: bool) -> None:
    """Build the digital twin of the example group and show that every flow works."""
    color = sys.stdout.isatty()
    inv = load(inventory_path or default_path())
    with build.exclusive(click.echo):
        _demo(inv, keep=keep, color=color)


def _demo(inv: Inventory, *, keep: bool, color: bool) -> None:
    timings: dict[str, float] = {}
    _say(f"== 1. The inventory: {inv.path}", color=color)
    click.echo(render_inventory(inv))
    platforms = ", ".join(sorted({str(d.platform) for _, d in inv.devices()}))
    _say(
        "\n== 2. The digital twin: real namespaces, sshd, nftables, snmpd, zone services; "
        f"each device as its platform ({platforms})",
        color=color,
    )
    if LabState.load(build.DEFAULT_LAB) is not None:
        click.echo("a twin is already up: taking it down first")
        build.down()
    t = time.perf_counter()
    state = build.up(inv)
    timings["twin up"] = time.perf_counter() - t
    click.echo(
        f"twin up in {timings['twin up']:.1f} s: {len(state.namespaces)} namespaces, "
        f"{len(state.procs)} processes; links settled {state.timings.get('settle_s', 0):.1f} s "
        f"after the daemons started, all {len(inv.flows)} declared flows checked open"
    )
    bp = blueprint(inv, state.lab)
    failed = True
    try:
        _say(
            "\n== 3. The flow matrix before the attack: every flow, real TCP from its source",
            color=color,
        )
        # `build.up` returned only once every flow worked (`ready.check`, which raises
        # LabError naming the flow, device and hop otherwise): the same check, shown.
        t = time.perf_counter()
        obs = ready.check(inv, bp)
        click.echo(flows.render(obs, elapsed_s=time.perf_counter() - t, color=color))
        with tempfile.TemporaryDirectory(prefix="cordon-demo-") as tmp:
            _contain_and_restore(inv, bp, Path(tmp), timings, color=color)
        failed = False
    finally:
        if keep and not failed:
            click.echo("\ntwin left up: try `cordon lab flows`, then `cordon lab down`")
        else:
            t = time.perf_counter()
            build.down()
            timings["twin down"] = time.perf_counter() - t
    _say("\n== Summary", color=color)
    for phase, seconds in timings.items():
        click.echo(f"  {phase:<44} {seconds:6.2f} s")


HIT = "rennes-la-sagesse"


def _contain_and_restore(
    inv: Inventory, bp: Blueprint, tmp: Path, timings: dict[str, float], *, color: bool
) -> None:
    journal = Journal(tmp / "journal.sqlite")
    isolate = load_playbook(PLAYBOOKS / "isolate-site.yaml", inv)
    degrade = load_playbook(PLAYBOOKS / "preventive-degraded.yaml", inv)
    others = [s.name for s in select_sites(inv, degrade.targets.selector()) if s.name != HIT]
    must = [(f, t) for f, t in flows.targets(inv, bp) if f.must_survive]
    with Pool(inv, keepalive=None) as pool:
        ex = Executor(
            inv,
            journal,
            pool,
            actor=getpass.getuser(),
            sources=[*production_sources(inv, pool), flows.TwinSource(inv, bp)],
        )
        _say(
            f"\n== 4. Attack declared at {HIT}: isolate it (L1-L3), and switch the "
            f"{len(others)} sister sites to preventive degraded mode (L1-L2)",
            color=color,
        )
        p1, p2 = ex.plan(isolate, [HIT]), ex.plan(degrade, others)
        to_cut = len({fi.flow for p in (p1, p2) for fi in p.impact if fi.change == "cut"})
        click.echo(
            f"plan: {len(p1.changes) + len(p2.changes)} device changes; {to_cut} flows to cut; "
            f"{len(must)} must-survive flows probed every 200 ms meanwhile"
        )
        t = time.perf_counter()
        with ContinuousProber([t for _, t in must], interval=0.2) as prober:
            runs = [ex.run(isolate, [HIT]), ex.run(degrade, others)]
            stats = prober.stop()
        timings["contain all 9 sites (verified)"] = time.perf_counter() - t
        for r in runs:
            click.echo(
                f"run {r.run_id}: {r.status}, {len(r.outcomes)} device steps verified by "
                f"read-back in {r.duration_s:.2f} s"
                + (f"; flow check: {r.flow_problems}" if r.flow_problems else "")
                + (f"; {len(r.flows_unverified)} flows unverified" if r.flows_unverified else "")
            )
        sent = sum(st.sent for st in stats.values())
        lost = sum(st.failed for st in stats.values())
        click.echo(f"must-survive probes during containment: {sent} sent, {lost} failed")
        _say("\n== 5. The flow matrix in degraded mode", color=color)
        states = journal.device_states()
        obs, elapsed = flows.timed_observe(inv, bp, _expect(inv, states))
        cut = [o for o in obs if not o.observed_open]
        click.echo(flows.render(cut, elapsed_s=elapsed, color=color))
        click.echo(
            f"{len(obs) - len(cut)} other flows open as expected "
            f"(all {len(must)} must-survive among them)"
            if all(o.as_expected for o in obs)
            else "SOME FLOWS ARE NOT AS EXPECTED"
        )
        for name, st in sorted(journal.sites().items()):
            click.echo(f"  site {name:<32} {st.mode:<9} {st.level}")
        _recover(inv, bp, ex, timings, color=color)
    journal.close()
    obs, elapsed = flows.timed_observe(inv, bp)
    bad = [o for o in obs if not o.as_expected]
    click.echo(
        f"flow matrix: {len(obs) - len(bad)} of {len(obs)} flows open, as before the "
        f"attack (probed in {elapsed:.2f} s)"
    )
    audit.close()
    check = audit.verify(audit.current_log_dir())
    click.echo(
        f"audit trail: {check.records} chained records in {audit.current_log_dir()}, "
        f"`cordon audit verify`: {'intact' if check.ok else 'BROKEN'} ({check.verdict}); "
        + (
            "seals signed and checked against the pinned key"
            if check.anchored
            else "seals NOT anchored: no key pinned (`cordon audit keygen`, README: The audit log)"
        )
    )
    if bad or any(r.status != RunStatus.DONE for r in runs) or lost:
        raise CordonError("the demo did not go as planned", hint="see the output above")


INFECTED = f"{HIT}/admin/pc-admin-1"


def reconnected_zones(inv: Inventory, reconnect: Playbook, site_name: str) -> list[str]:
    """The zones of `site_name` the reconnect playbook reopens (its zone sets select by name,
    role or criticality, as the planner reads them): the demo attests each one, since a
    reconnection waits for an operator's attestation of every zone it reopens."""
    site = inv.site(site_name)
    if site is None:
        raise CordonError(f"no site {site_name} in the inventory {inv.path}")
    zones = sorted(
        {
            z.name
            for s in reconnect.steps
            if isinstance(s, ReconnectZone)
            for z in zones_of(site, s.zones)
        }
    )
    if not zones:
        raise CordonError(f"the reconnect playbook reopens no zone of {site_name}")
    return zones


SOAK_S = 3.0  # seconds on the twin; hours in production (the playbook's own values)


def _recover(
    inv: Inventory, bp: Blueprint, ex: Executor, timings: dict[str, float], *, color: bool
) -> None:
    """Reconnect La Sagesse zone by zone (an infected PC is caught), then restore-normal."""
    reconnect = load_playbook(PLAYBOOKS / "reconnect.yaml", inv)
    zones = reconnected_zones(inv, reconnect, HIT)
    _say(
        f"\n== 6. Recovery at {HIT}: reconnect to the clean core one zone at a time "
        f"(servers first, internet last), each zone attested and soaked {SOAK_S:g} s",
        color=color,
    )
    pid = infect(INFECTED, rate=20.0)
    click.echo(
        f"(the twin's admin PC {INFECTED} is still infected: process {pid} scans the core "
        "as soon as it has a route there)"
    )
    attest = {z: f"{z}: restored from offline backups, EDR scan clean" for z in zones}
    t = time.perf_counter()
    first = ex.run(
        reconnect, [HIT], options=RunOptions(soak_seconds=SOAK_S, attest=attest), poll=0.2
    )
    timings["reconnect until the infected zone is caught"] = time.perf_counter() - t
    _story(ex, first.run_id)
    caught = next(
        (g for g in ex.journal.gates(first.run_id) if g.status == GateStatus.REISOLATED), None
    )
    if first.status != RunStatus.REISOLATED or caught is None:
        raise CordonError(f"the infected zone was not caught (run {first.status})")
    click.echo(f"run {first.run_id}: {first.status}: {caught.detail.get('reason')}")
    _site_flows(inv, bp, ex, color=color)

    _say("\n== 7. The admin PC is reimaged; reconnect the rest of the site", color=color)
    cure(INFECTED)
    t = time.perf_counter()
    second = ex.run(
        reconnect,
        [HIT],
        options=RunOptions(
            soak_seconds=SOAK_S,
            attest={"admin": "pc-admin-1 reimaged, account passwords reset", "building": "ok"},
        ),
        poll=0.2,
    )
    timings["reconnect the rest (admin .. internet)"] = time.perf_counter() - t
    _story(ex, second.run_id)
    click.echo(f"run {second.run_id}: {second.status}")
    _site_flows(inv, bp, ex, color=color)

    _say(
        "\n== 8. All clear: restore-normal on every establishment (two-person rule)",
        color=color,
    )
    restore = load_playbook(PLAYBOOKS / "restore-normal.yaml", inv)
    t = time.perf_counter()
    started = ex.start(restore, options=RunOptions(needs_approval=True))
    changes = len(started.plan.changes) if started.plan else 0
    click.echo(f"run {started.run_id}: waits for a second operator ({changes} device changes)")
    ex.approve(started.run_id, "second-operator", "crisis cell: incident closed")
    click.echo("approved by second-operator (in this demo one person plays both roles)")
    final = ex.drive(started.run_id, poll=0.2)
    timings["restore-normal, 9 sites (verified)"] = time.perf_counter() - t
    click.echo(f"run {final.run_id}: {final.status}, {len(final.outcomes)} device steps")
    if second.status != RunStatus.DONE or final.status != RunStatus.DONE:
        raise CordonError("the recovery did not go as planned", hint="see the output above")


def _story(ex: Executor, run_id: str) -> None:
    """The reconnection, as the journal tells it: each zone step and each soak's outcome."""
    rows: dict[str, list[str]] = {}
    for r in ex.journal.steps(run_id):
        rows.setdefault(r.step, []).append(f"{r.status} on {r.device}")
    gates = {g.step: g for g in ex.journal.gates(run_id)}
    for name in [*_steps(ex, run_id), *(n for n in rows if n.startswith("reisolate"))]:
        g = gates.get(name)
        if g is not None:
            ticks = g.detail.get("ticks")
            extra = g.detail.get("reason") or g.detail.get("why") or ""
            extra = extra or (f"{ticks} checks, all healthy" if ticks else "")
            click.echo(f"  {name:<22} {g.status:<11} {extra}")
        elif name in rows:
            click.echo(f"  {name:<22} {', '.join(rows[name])}")


def _steps(ex: Executor, run_id: str) -> list[str]:
    text = ex.journal.playbook_json(run_id)
    return [s.name for s in Playbook.model_validate_json(text or "").steps]


def _site_flows(inv: Inventory, bp: Blueprint, ex: Executor, *, color: bool) -> None:
    states = ex.journal.device_states()
    mine = [f for f in inv.flows if HIT in (f.source.site, f.destination.site)]
    obs = flows.observe(inv, bp, _expect(inv, states), flows=mine, timeout=1.0)
    click.echo(flows.render(obs, color=color))
    site = ex.journal.sites().get(HIT)
    mode, level = (site.mode, site.level) if site else (None, None)
    click.echo(f"site {HIT}: {mode} {level or ''}")
    if any(not o.as_expected for o in obs):
        raise CordonError("flows at the site are not as the journal says", hint="see above")


def _expect(inv: Inventory, states: Mapping[str, DeviceState]) -> flows.Expectation:
    paths = {f.name: flow_path(inv, f) for f in inv.flows}
    return lambda flow: flow_open(states, paths[flow.name])

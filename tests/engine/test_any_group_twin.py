"""Every shipped playbook on the twin of the second test group (tests/data/ght-vallee.yaml), with
real TCP: its devices answer on management interfaces not called mgmt0, its switches answer in
the inventory's IOS-style names (CLI and SNMP), and each playbook's flow matrix after the run is
the planned one; its must-survive flows never fail a probe (every 200 ms) while it runs; a second
run sends nothing; its rollback restores the matrix it started from. The recovery playbooks run
after an isolation: reconnect zone by zone (attested, short soaks), then restore-normal (two
people) back to the pre-incident matrix, exactly.

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.lab import flows
from agent.lab.probe import ContinuousProber
from agent.platforms.registry import one_shot
from agent.platforms.snmp.driver import SnmpDriver
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions
from tests.conftest import (
    ROOT,
    Twin,
    assert_never_failed,
    matrix,
    must_survive,
    own_twin,
)
from tests.engine.test_any_group import RUNS, VALLEE
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]


@pytest.fixture(scope="module")
def vallee(twin_lock: None) -> Iterator[Twin]:
    with own_twin(VALLEE) as built:
        yield built


def test_devices_answer_in_the_inventory_names(vallee: Twin) -> None:
    """Every device answers on its own management interface; a switch's CLI shows `Gi1/0/1` and
    `GigabitEthernet1/0/24`, its SNMP agent finds them by ifName."""
    for _site, device in vallee.inv.devices():
        with one_shot(Target.of(vallee.inv, device.name)) as drv:
            facts = drv.facts()
        names = {i.name for i in facts.interfaces}
        assert device.management.interface in names or device.platform == "cisco_ios"
        if device.name == "cs-sw1":
            assert {"GigabitEthernet1/0/24", "GigabitEthernet1/0/6"} <= names
        if device.name == "hn-sw-b":
            assert {"Gi1/0/1", "Te1/1/1.23"} <= names
    snmp = SnmpDriver(Target.of(vallee.inv, "cs-sw1"))
    try:
        assert snmp.interface_index("GigabitEthernet1/0/6") > 0
    finally:
        snmp.close()


@pytest.fixture
def engine(vallee: Twin, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(vallee.inv, keepalive=None) as pool:
        ex = Executor(
            vallee.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(vallee.inv, vallee.bp)],
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


# each containment playbook as test_any_group runs it, and two more shapes: a port under its
# short IOS name on the switch managed on GigabitEthernet0/0, a zone that has no role
CONTAINMENT: list[tuple[str, str, list[str], dict[str, str]]] = [
    (name, name, *RUNS[name])
    for name in ("isolate-site", "preventive-degraded", "segment", "segment-port")
] + [
    (
        "segment-port-short-name",
        "segment-port",
        ["hopital-nord"],
        {"device": "hn-sw-b", "interface": "Gi1/0/4"},
    ),
    ("segment-zone-without-role", "segment", ["hopital-nord"], {"zone": "gtc"}),
]


@pytest.mark.parametrize(
    ("name", "sites", "params"), [c[1:] for c in CONTAINMENT], ids=[c[0] for c in CONTAINMENT]
)
def test_shipped_playbook_on_the_other_twin(
    vallee: Twin, engine: Executor, name: str, sites: list[str], params: dict[str, str]
) -> None:
    original = matrix(vallee)
    assert all(original.values()), {k for k, v in original.items() if not v}
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", vallee.inv, params)
    predicted = {fi.flow: fi.after for fi in plan(pb, vallee.inv, sites=sites).impact}
    assert not all(predicted.values())
    must = must_survive(vallee)
    with ContinuousProber(must, interval=0.2) as prober:
        report = engine.run(pb, sites)
        stats = prober.stop()
    assert report.status == "done", report
    assert report.flow_problems == []
    assert_never_failed(stats, must)
    assert wait_for(lambda: matrix(vallee) == predicted, timeout=10)
    assert {engine.journal.sites()[s].mode for s in sites} == {"isolated"}
    # a second time: nothing to change, nothing sent
    again = engine.run(pb, sites)
    assert again.status == "done", again
    assert again.outcomes == []
    assert matrix(vallee) == predicted
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(vallee) == original, timeout=10)
    assert {engine.journal.sites()[s].mode for s in sites} == {"normal"}


@dataclass(frozen=True)
class Recovery:
    """An incident at `site`: `first` run on `hit`, then `site` reconnected and every site
    restored. `zones`: what reconnect takes there, by role and criticality, in its order;
    `to_core`: a flow to the datacentre the cut closed; `internet`: a flow reopened last;
    `held`: flows that stay cut until restore-normal; `mode`: the site's mode after reconnect
    (`normal` when nothing else was cut there: its devices are back to their baseline)."""

    site: str
    first: str
    hit: list[str]
    zones: dict[str, list[str]]
    to_core: str
    internet: str
    held: list[str]
    mode: str


RECOVERIES = [
    # the site with two internet uplinks, remote and vendor access, a zone on two switches
    Recovery(
        "hopital-nord",
        "isolate-site",
        ["hopital-nord"],
        {
            "servers": ["dc-local"],
            "life-critical": ["reanimation", "urgences-tel"],
            "clinical": ["labo"],
            "admin": ["bureautique", "gtc"],
        },
        "hn-dpi-hds",
        "hn-visiteurs-internet",
        ["hn-nomades-dpi", "hn-vendor-labo", "hn-compta-dpi"],
        "reconnected",
    ),
    # both sites degraded; the one with no servers zone and a life-critical zone with no role
    # is reconnected, then restore-normal lifts both
    Recovery(
        "clinique-sud",
        "preventive-degraded",
        ["hopital-nord", "clinique-sud"],
        {
            "life-critical": ["soins-intensifs"],
            "clinical": ["imagerie"],
            "admin": ["admin-sud"],
        },
        "cs-irm-hds",
        "cs-invite-internet",
        ["hn-dpi-hds", "hn-visiteurs-internet"],
        "normal",  # no remote or vendor access, no segmentation: all of it reconnected
    ),
]


@pytest.mark.parametrize("case", RECOVERIES, ids=[f"{r.first}-{r.site}" for r in RECOVERIES])
def test_recovery_on_the_other_twin(vallee: Twin, engine: Executor, case: Recovery) -> None:
    """After the incident, the site is reconnected zone by zone in the playbook's order (each
    zone attested, each soak passed before the next), then restore-normal, approved by a second
    operator, brings back the pre-incident matrix exactly. Must-survive flows never fail a
    probe; each run again changes nothing; rolled back newest first, each run restores the
    matrix it started from, down to the baseline."""
    site = case.site
    original = matrix(vallee)
    assert all(original.values()), {k for k, v in original.items() if not v}
    must = must_survive(vallee)
    first = load_playbook(ROOT / "playbooks" / f"{case.first}.yaml", vallee.inv)
    incident = engine.run(first, case.hit)
    assert incident.status == "done", incident
    isolated = matrix(vallee)
    assert not isolated[case.to_core] and not isolated[case.internet]

    # reconnect: the zones it takes here are chosen by role and criticality, not by name
    reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", vallee.inv)
    zones = [z for step in case.zones.values() for z in step]
    attest = {z: f"{z}: reimaged and scanned clean (ticket INC-7)" for z in zones}
    with ContinuousProber(must, interval=0.2) as prober:
        back = engine.run(
            reconnect, [site], options=RunOptions(soak_seconds=1.0, attest=attest), poll=0.2
        )
        stats = prober.stop()
    assert back.status == "done", back
    assert back.flow_problems == []
    assert_never_failed(stats, must)
    rows = engine.journal.steps(back.run_id)
    assert {r.status for r in rows} == {"verified"}
    order = list(dict.fromkeys(r.step for r in rows))
    assert order[: len(case.zones)] == list(case.zones)
    reconnected_zones: dict[str, set[str]] = {}  # from the rules' comments, as sent
    for r in rows:
        text = "\n".join(r.commands)
        found = re.findall(rf"{re.escape(r.step)}: reconnect ([a-z0-9-]+)", text)
        reconnected_zones.setdefault(r.step, set()).update(found)
    assert {k: v for k, v in reconnected_zones.items() if v} == {
        k: set(v) for k, v in case.zones.items()
    }
    gates = {g.step: g for g in engine.journal.gates(back.run_id)}
    soaks = [f"soak-{step}" for step in case.zones]
    assert all(gates[s].status == "passed" for s in soaks), {s: gates[s] for s in soaks}
    assert [gates[s].opened_at for s in soaks] == sorted(gates[s].opened_at for s in soaks)
    attested = {g.step.split(":")[0] for g in gates.values() if g.step.endswith(":preconditions")}
    assert set(case.zones) <= attested
    reconnected = matrix(vallee)
    assert reconnected[case.to_core]  # back to the datacentre
    assert reconnected[case.internet]  # internet last
    # remote access, vendor maintenance, the L3 segmentation and other sites stay as they were
    assert not any(reconnected[f] for f in case.held)
    assert engine.journal.sites()[site].mode == case.mode
    again = engine.run(reconnect, [site], options=RunOptions(soak_seconds=1.0), poll=0.2)
    assert again.status == "done", again
    assert again.outcomes == []
    assert matrix(vallee) == reconnected

    # restore-normal: nothing is sent before a second operator approves
    sites, _ = RUNS["restore-normal"]
    restore = load_playbook(ROOT / "playbooks" / "restore-normal.yaml", vallee.inv)
    with ContinuousProber(must, interval=0.2) as prober:
        started = engine.start(restore, sites, options=RunOptions(needs_approval=True))
        assert engine.proceed(started.run_id).status == "awaiting_approval"
        assert {r.status for r in engine.journal.steps(started.run_id)} == {"pending"}
        assert matrix(vallee) == reconnected
        engine.approve(started.run_id, "bob", "incident closed by the crisis cell")
        final = engine.drive(started.run_id, poll=0.2)
        stats = prober.stop()
    assert final.status == "done", final
    assert_never_failed(stats, must)
    assert wait_for(lambda: matrix(vallee) == original, timeout=10)
    assert {engine.journal.sites()[s].mode for s in sites} == {"normal"}
    assert engine.plan(restore, sites).empty
    assert engine.plan(reconnect, [site]).empty

    # rolled back newest first: each run's own starting matrix, then the baseline
    assert engine.rollback(started.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(vallee) == reconnected, timeout=10)
    assert engine.rollback(back.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(vallee) == isolated, timeout=10)
    assert engine.rollback(incident.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(vallee) == original, timeout=10)

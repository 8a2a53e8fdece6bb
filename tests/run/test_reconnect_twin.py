"""Recovery on the twin: La Sagesse isolated, then reconnected to the clean core one zone at a
time (servers first), each zone attested and checked against its baseline, each followed by a
soak watched by the firewall's counters and flow probes. An infected admin PC starts scanning the
core the moment its zone is reconnected: the soak catches it, re-isolates that zone alone and
stops, saying why. Cured, the next reconnect run finishes; restore-normal (two people) brings
back the original flow matrix exactly, and running it again changes nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.lab import flows, netns
from agent.lab.infect import cure, infect
from agent.platforms.fortigate.driver import FortiGateDriver
from agent.platforms.registry import one_shot
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions
from tests.conftest import ROOT, Twin, matrix
from tests.daemon.on_twin import ZONES  # every zone of the site reconnected
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

SITE = "rennes-la-sagesse"
INFECTED = f"{SITE}/admin/pc-admin-1"


def audit_events(name: str) -> list[dict[str, object]]:
    out = []
    for path in sorted(Path(os.environ["CORDON_LOG_DIR"]).glob("audit-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event") == name:
                out.append(rec)
    return out


@pytest.fixture
def engine(twin: Twin, tmp_path: Path) -> Iterator[Executor]:
    """An executor with the twin's flow probes; every run rolled back after, newest first, and
    the scanner cured, whatever the test did."""
    journal = Journal(tmp_path / "journal.sqlite")
    probes = flows.TwinSource(twin.inv, twin.bp)
    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(twin.inv, journal, pool, actor="alice", sources=[probes])
        try:
            yield ex
        finally:
            cure(INFECTED)
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_reconnect_zone_by_zone_catches_the_infected_zone(twin: Twin, engine: Executor) -> None:
    original = matrix(twin)
    assert all(original.values())
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", twin.inv)
    assert engine.run(isolate, [SITE]).status == "done"
    isolated = matrix(twin)
    assert not isolated["rns-ehr-core"]
    assert not isolated["rns-admin-files"]

    infect(INFECTED, rate=20.0)
    reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", twin.inv)
    attest = {z: f"{z}: reimaged and scanned clean (ticket INC-42)" for z in ZONES}
    report = engine.run(
        reconnect, [SITE], options=RunOptions(soak_seconds=3.0, attest=attest), poll=0.2
    )
    assert report.status == "reisolated", report
    gates = {g.step: g for g in engine.journal.gates(report.run_id)}
    # zones reconnected in the playbook's order, each soak passed before the next zone
    for soak in ("soak-servers", "soak-life-critical", "soak-clinical"):
        assert gates[soak].status == "passed", gates[soak]
        assert int(gates[soak].detail["ticks"]) >= 3
    rows = engine.journal.steps(report.run_id)
    order = [r.step for r in rows if r.status == "verified"]
    assert order[:4] == ["servers", "life-critical", "clinical", "admin"]
    assert gates["soak-servers"].opened_at < gates["soak-life-critical"].opened_at
    assert gates["soak-life-critical"].opened_at < gates["soak-clinical"].opened_at
    # the infected zone was caught by the counters and re-isolated, alone; the run stopped
    caught = gates["soak-admin"]
    assert caught.status == "reisolated"
    assert "zone admin" in str(caught.detail["reason"])
    assert "new connections toward the core" in str(caught.detail["reason"])
    assert caught.detail["reisolated"] == ["admin"]
    assert order[-1] == "reisolate admin"
    assert "soak-building" not in gates
    assert all(r.status == "pending" for r in rows if r.step in ("building", "wan", "internet"))
    events = audit_events("reconnect.reisolated")
    assert any(
        e.get("run_id") == report.run_id and "zone admin" in str(e["reason"]) for e in events
    )
    attested = audit_events("reconnect.attested")
    assert {e["zone"] for e in attested if e.get("run_id") == report.run_id} >= set(ZONES)

    after = matrix(twin)
    assert after["rns-ehr-core"]  # servers reconnected to the core
    assert after["rns-backup-core"]
    assert not after["rns-admin-internet"]  # internet stays cut
    assert engine.journal.sites()[SITE].mode == "isolated"
    # admin has no route to the core any more: the scanner's attempts die at the firewall
    counters = engine.pool.run("rns-fw1", lambda d: d.rule_counters())  # type: ignore[attr-defined]
    assert not any("reconnect admin" in c for c in counters)

    # cured and attested again, the next run reconnects admin and the rest, internet last
    cure(INFECTED)
    again = engine.run(
        reconnect,
        [SITE],
        options=RunOptions(soak_seconds=2.0, attest={"admin": "reimaged", "building": "ok"}),
        poll=0.2,
    )
    assert again.status == "done", again
    done = {g.step: g.status for g in engine.journal.gates(again.run_id)}
    assert done["soak-servers"] == "skipped"  # nothing new to watch: already reconnected
    assert done["soak-admin"] == "passed"
    assert done["soak-internet"] == "passed"
    reconnected = matrix(twin)
    assert reconnected["rns-admin-internet"]
    # remote access, vendor maintenance and the L3 segmentation stay until restore-normal
    assert not reconnected["rns-vendor-maint"]
    assert not reconnected["rns-admin-files"]
    assert engine.journal.sites()[SITE].mode == "reconnected"

    # restore-normal needs a second operator; then the original matrix, exactly
    restore = load_playbook(ROOT / "playbooks" / "restore-normal.yaml", twin.inv)
    started = engine.start(restore, [SITE], options=RunOptions(needs_approval=True))
    assert engine.proceed(started.run_id).status == "awaiting_approval"
    assert engine.journal.steps(started.run_id)[0].status == "pending"
    engine.approve(started.run_id, "bob", "incident closed by the crisis cell")
    final = engine.drive(started.run_id, poll=0.2)
    assert final.status == "done", final
    assert wait_for(lambda: matrix(twin) == original, timeout=10)
    assert engine.journal.sites()[SITE].mode == "normal"
    assert engine.plan(restore, [SITE]).empty
    assert engine.plan(reconnect, [SITE]).empty


@contextmanager
def reconfigured_by_hand(twin: Twin, site: str) -> Iterator[str]:
    """Change the site's firewall behind Cordon's back, the way its platform is configured (a
    FortiGate: a firewall address created over its REST API; a Linux firewall: an nft table
    nobody declared), for the block; yields the name the change shows under, and undoes it."""
    fw = SITE_FIREWALLS[site]
    found = twin.inv.find_device(fw)
    assert found is not None
    if found[1].platform == "linux_nftables":
        ns = twin.bp.device_ns[fw]
        netns.run(["nft", "add", "table", "inet", "intruder"], netns=ns)
        try:
            yield "intruder"
        finally:
            netns.run(["nft", "delete", "table", "inet", "intruder"], netns=ns)
        return
    assert found[1].platform == "fortigate", found[1].platform
    body = {"name": "intruder", "subnet": "198.18.99.99 255.255.255.255"}
    with one_shot(Target.of(twin.inv, fw)) as d:
        assert isinstance(d, FortiGateDriver)
        d._call("POST", "cmdb/firewall/address", operation="test.tamper", body=body)
    try:
        yield "intruder"
    finally:
        with one_shot(Target.of(twin.inv, fw)) as d:
            assert isinstance(d, FortiGateDriver)
            d._call("DELETE", "cmdb/firewall/address/intruder", operation="test.untamper")


SITE_FIREWALLS = {SITE: "rns-fw1", "bretagne-etab-2": "bz2-fw1"}


@pytest.mark.parametrize("site", sorted(SITE_FIREWALLS))
def test_reconnect_refuses_a_device_not_back_to_baseline(
    twin: Twin, engine: Executor, site: str
) -> None:
    """A firewall reconfigured since the isolation (an object nobody declared: on La Sagesse's
    FortiGate a firewall address, on Bretagne 2's Linux firewall an nft table) is not
    reconnected: the precondition fails, nothing is sent, the reason names the difference."""
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", twin.inv)
    assert engine.run(isolate, [site]).status == "done"
    before = matrix(twin)
    with reconfigured_by_hand(twin, site) as name:
        reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", twin.inv)
        # one pass, not a drive: were the precondition met, the run would wait for the other
        # zones' attestations (forever) instead of failing here
        started = engine.start(
            reconnect, [site], options=RunOptions(soak_seconds=1.0, attest={"servers": "restored"})
        )
        report = engine.proceed(started.run_id)
    assert report.status == "failed", report
    gate = engine.journal.gate(report.run_id, site, "servers:preconditions")
    assert gate is not None
    assert gate.status == "failed"
    assert name in str(gate.detail["reason"])
    assert all(r.status == "pending" for r in engine.journal.steps(report.run_id))
    assert matrix(twin) == before

"""Probe points on the twin (#15), on the small group of tests/verify/data/probe-group.yaml: the
probe process runs in a namespace with a leg on each zone's VLAN (as on a site VM), the daemon
side reaches it through the twin's management veth only, over mutual TLS with both certificates
pinned. During a real preventive-degraded run on pl-a it confirms the must-survive flows open
(the one through the cut WAN thanks to the plan's probe accepts) and the cut flows closed; a
client with another key is refused by the probe; a probe whose certificate is not the pinned one
is refused by the daemon side; an order from a source that is not one of its legs is refused.

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.errors import ProbeError
from agent.inventory.models import Inventory
from agent.lab import flows, netns
from agent.lab.probe import ProbeTarget, Status, probe_tcp
from agent.lab.topology import ROOT_LINK
from agent.playbook import load as load_playbook
from agent.probe import channel, client
from agent.probe.protocol import Attempt, Order
from agent.run.executor import Executor
from agent.verify import probes
from agent.verify.evidence import FlowStatus, Seen, combine
from tests.conftest import ROOT, Twin, own_twin
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

GROUP = Path(__file__).parent / "data" / "probe-group.yaml"
SITE = "pl-a"
KEPT = {"icu-hl7", "icu-ehr", "srv-ehr"}
CUT = {"icu-web", "srv-web", "srv-files"}


@pytest.fixture(scope="module")
def twin(twin_lock: None) -> Iterator[Twin]:
    with own_twin(GROUP) as built:
        yield built


def source(inv: Inventory) -> probes.ProbeSource:
    (src,) = probes.probe_sources(inv)
    assert isinstance(src, probes.ProbeSource)
    return src


def verdicts(inv: Inventory, expected: dict[str, bool]) -> dict[str, FlowStatus]:
    src = source(inv)
    evidence = src.check(SITE, list(inv.flows), expected)
    assert {e.source for e in evidence} == {"probe:pa-probe"}
    for e in evidence:
        assert "from probe address 198.18.93." in e.detail, e
        assert "not the flow's source host" in e.detail, e
    return {r.flow: r.status for r in combine(expected, evidence)}


def test_probe_alive_through_the_management_veth(twin: Twin) -> None:
    """The daemon side sees the probe alive with the inventory's legs; the route it takes is the
    twin's management veth (the root namespace has no other way into 198.18/15)."""
    (h,) = probes.health(twin.inv)
    assert h.alive, h.detail
    assert h.id == "pa-probe"
    assert "icu=198.18.93.50" in h.detail and "srv=198.18.93.120" in h.detail
    route = netns.run(["ip", "route", "get", "198.19.96.40"]).stdout
    assert f"dev {ROOT_LINK}" in route
    ns = twin.state.namespaces
    assert "cdn.p.pa-probe" in ns
    # the probe runs as a journaled process of the twin, stopped by PID at `lab down`
    assert any(p["kind"] == "probe" and p["netns"] == "cdn.p.pa-probe" for p in twin.state.procs)


def test_the_probe_host_is_no_way_between_zones(twin: Twin) -> None:
    """A zone host cannot talk to the probe's leg (its filter drops it: a timeout, where a port
    nobody listens on would refuse), and a host that routes through the probe's leg to another
    zone gets nowhere (no forwarding), while the same flow through the firewall is open."""
    monitor = twin.bp.host_ns["pl-a/icu/monitor"]
    (leg,) = probe_tcp([ProbeTarget(monitor, "198.18.93.50", 8443)], timeout=1.0)
    assert leg.status is Status.TIMEOUT, leg
    central = ProbeTarget(monitor, "198.18.93.70", 2575)
    (direct,) = probe_tcp([central], timeout=2.0)
    assert direct.ok, direct
    netns.run(["ip", "route", "add", "198.18.93.70/32", "via", "198.18.93.50"], netns=monitor)
    try:
        (through,) = probe_tcp([central], timeout=1.0)
        assert not through.ok, through
    finally:
        netns.run(["ip", "route", "del", "198.18.93.70/32"], netns=monitor)
    forward = netns.run(["sysctl", "-n", "net.ipv4.ip_forward"], netns="cdn.p.pa-probe")
    assert forward.stdout.strip() == "0"


@pytest.fixture
def engine(twin: Twin, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(
            twin.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(twin.inv, twin.bp)],
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_probe_confirms_an_isolation(twin: Twin, engine: Executor) -> None:
    """Before: every tested flow open. During preventive-degraded at pl-a: the must-survive flows
    open (icu-ehr and srv-ehr cross the cut WAN: the plan's probe accepts let the probe's test
    through), the internet flows closed; all passed, none unverified. After rollback: open."""
    inv = twin.inv
    normal = {f.name: True for f in inv.flows}
    assert verdicts(inv, normal) == dict.fromkeys(normal, FlowStatus.PASSED)
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv)
    predicted = {fi.flow: fi.after for fi in plan(pb, inv, sites=[SITE]).impact}
    assert {k for k, v in predicted.items() if v} == KEPT
    report = engine.run(pb, [SITE])
    assert report.status == "done", report
    during = verdicts(inv, predicted)
    assert during == dict.fromkeys(predicted, FlowStatus.PASSED), during
    # the evidence is the probe's own: it saw the cut flows closed, the kept ones open
    seen = {e.flow: e.seen for e in source(inv).check(SITE, list(inv.flows), predicted)}
    assert seen == {**dict.fromkeys(KEPT, Seen.OPEN), **dict.fromkeys(CUT, Seen.CLOSED)}
    # a cut flow claimed open is contradicted by the probe: failed, not passed
    wrong = {**predicted, "icu-web": True}
    assert verdicts(inv, wrong)["icu-web"] is FlowStatus.FAILED
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: verdicts(inv, normal) == dict.fromkeys(normal, FlowStatus.PASSED))


def test_without_the_probe_accepts_the_probe_sees_a_kept_flow_cut(
    twin: Twin, tmp_path: Path
) -> None:
    """Why the plan mirrors the accepts: the same run planned from the inventory without the
    probe point keeps icu-ehr open for the monitor, but the probe's test of it is dropped by the
    WAN cut, and the probe contradicts the plan (failed, not a silent pass)."""
    bare = twin.inv.model_copy(
        update={"sites": tuple(s.model_copy(update={"probes": ()}) for s in twin.inv.sites)}
    )
    assert bare.path == twin.inv.path
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(bare, keepalive=None) as pool:
        ex = Executor(
            bare,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(bare, twin.bp)],
        )
        pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", bare)
        predicted = {fi.flow: fi.after for fi in plan(pb, bare, sites=[SITE]).impact}
        report = ex.run(pb, [SITE])
        try:
            assert report.status == "done", report
            # the monitor's own flow is open (the twin's prober, from its namespace)...
            seen = {o.flow.name: o.observed_open for o in flows.observe(bare, twin.bp)}
            assert seen["icu-ehr"] and seen["srv-ehr"]
            # ...but the probe, from its own address, is dropped by the cut
            during = verdicts(twin.inv, predicted)
            assert during["icu-ehr"] is FlowStatus.FAILED
            assert during["srv-ehr"] is FlowStatus.FAILED
            assert during["icu-hl7"] is FlowStatus.PASSED  # inside the site: nothing cut
        finally:
            assert ex.rollback(report.run_id).status == "rolled_back"
    journal.close()


def test_a_client_with_another_key_is_refused(twin: Twin, tmp_path: Path) -> None:
    """Mutual TLS: the probe accepts the pinned daemon certificate only."""
    channel.new_identity(tmp_path / "other.pem", tmp_path / "other.key", "cordon-daemon")
    ctx = channel.client_context(tmp_path / "other.pem", tmp_path / "other.key")
    target = source(twin.inv).target()
    with pytest.raises(ProbeError) as err:
        client.ask(target, Order("hello"), ctx, timeout=5.0)
    assert "TLS failed" in str(err.value) or "closed the channel" in str(err.value)
    # the right identity still gets an answer (the refusal was the key, not the path)
    ok = client.ask(target, Order("hello"), probes.client_context(twin.inv), timeout=5.0)
    assert ok["probe"] == "pa-probe"


def test_a_probe_not_matching_its_pin_is_refused(twin: Twin) -> None:
    """The daemon side checks the probe's certificate against the inventory's pin before
    sending anything: a wrong pin makes the probe's evidence unknown, naming why."""
    site = twin.inv.site(SITE)
    assert site is not None
    probe = site.probes[0]
    wrong = probe.model_copy(
        update={"control": probe.control.model_copy(update={"certificate": "sha256:" + "0" * 64})}
    )
    src = probes.ProbeSource(twin.inv, SITE, wrong)
    evidence = src.check(SITE, list(twin.inv.flows), {f.name: True for f in twin.inv.flows})
    assert evidence and {e.seen for e in evidence} == {Seen.UNKNOWN}
    assert all("not the pinned" in e.detail for e in evidence)
    # the pinned identity still talks to it: the refusal was the pin
    (h,) = probes.health(twin.inv)
    assert h.alive


def test_the_probe_refuses_orders_outside_its_legs(twin: Twin) -> None:
    """An authenticated order is still validated: a source that is not one of its legs (here
    the monitor's own address) is refused, nothing opened."""
    target = source(twin.inv).target()
    bad = Order("run", (Attempt("icu-hl7", "198.18.93.10", "198.18.93.70", 2575, 1.0),))
    with pytest.raises(ProbeError) as err:
        client.ask(target, bad, probes.client_context(twin.inv), timeout=5.0)
    assert "not one of this probe's leg addresses" in str(err.value)


def test_scheduled_runs_are_kept_for_the_daemon(twin: Twin) -> None:
    """On a schedule, the probe opens its declared flows and keeps the results."""
    answered = probes.schedule(twin.inv, interval_s=5.0)
    assert answered == {"pa-probe": "6 flows every 5 s"}
    try:
        assert wait_for(lambda: len(probes.kept_results(twin.inv, "pa-probe")) >= 6)
        kept = probes.kept_results(twin.inv, "pa-probe")
        assert {r.flow for r in kept} == KEPT | CUT
        assert {r.outcome.value for r in kept} == {"connected"}
    finally:
        assert probes.schedule(twin.inv, interval_s=0) == {"pa-probe": "0 flows every 0 s"}

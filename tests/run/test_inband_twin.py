"""The example group managed IN BAND (tests/data/hgo-inband.yaml), on its own twin: no
out-of-band network; the agent (the root namespace, through the one veth the twin made, cabled
to the core's it-admin zone) reaches every device through the core firewall and the WAN.

Every shipped containment and recovery playbook runs and is verified through that WAN while the
sites are otherwise cut: preventive-degraded, isolate-site, reconnect zone by zone with (short)
soaks, restore-normal (two people) and the rollbacks. After EVERY device step, of a run or of
an undo, a new management session (SSH, host key pinned) opens to each device of the step's
site, and a connection from the core's EHR server to the same devices on the same port, which
crosses the same cut without being the agent's, is dropped exactly when the recorded state
cuts the WAN (and it does, at some step of each run: the check is not vacuous).

A firewall managed through its WAN has that link cut whole during a cut, its own traffic too,
but for the agent's management of it (local exceptions): the agent's SSH to it opens, a port of
its own it listens on does not, from the agent's address or the core's EHR server (and both open
before the cut and after the rollback).

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan, zones_of
from agent.inventory.models import Endpoint
from agent.lab import flows, netns
from agent.lab.probe import ContinuousProber, ProbeTarget, probe_tcp
from agent.lab.topology import ROOT_LINK
from agent.network import management as mg
from agent.network.paths import Hop, PortHop, RouteHop
from agent.network.state import DeviceState
from agent.platforms.registry import one_shot
from agent.playbook import load as load_playbook
from agent.playbook.models import ReconnectZone
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
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

INBAND = ROOT / "tests" / "data" / "hgo-inband.yaml"
EHR_CORE = "hgo-core/servers/dpi-central"  # a core host that is not the agent
RNS = "rennes-la-sagesse"
SISTERS = ["saint-nazaire-estuaire", "bretagne-etab-1"]
# "<site>: [undo ]<step>: <device>: <status>": a device step done (Observer.step_done/undo)
STEP_DONE = re.compile(r"^(?P<site>[a-z0-9-]+): (?:undo )?.+: (?P<device>[a-z0-9-]+): \w+$")


@pytest.fixture(scope="module")
def inband(twin_lock: None) -> Iterator[Twin]:
    with own_twin(INBAND) as built:
        yield built


@dataclass
class Watch:
    """After each device step: a management session to every device of the step's site, and
    the EHR server's connection to the same address and port (not the agent's) through the
    same cut, against what the recorded state says of it."""

    twin: Twin
    journal: Journal | None = None
    sessions: int = 0
    failures: list[str] = field(default_factory=list)
    foreign_cut: int = 0  # steps after which the non-management connection was (rightly) cut
    foreign_open: int = 0
    agent_data_cut: int = 0  # steps after which the agent's own non-management flow was cut

    def summary(self) -> str:
        return (
            f"in band: {self.sessions} management sessions opened after device steps, none "
            f"failed; the EHR server's connection through the cut was dropped {self.foreign_cut} "
            f"times and open {self.foreign_open} times, the agent's own to a site's EHR front "
            f"end (443) cut {self.agent_data_cut} times, each as the recorded state said"
        )

    def __call__(self, message: str) -> None:
        m = STEP_DONE.match(message)
        if m is None or self.journal is None:
            return
        site = m["site"]
        for target in Target.all(self.twin.inv, site=site):
            try:
                with one_shot(target) as drv:
                    facts = drv.facts()
                assert facts.interfaces, f"{target.name} answered with no interface"
                self.sessions += 1
            except Exception as exc:  # recorded: the test fails on any
                self.failures.append(f"after '{message}': {target.name}: {exc}")
        self._foreign(site, message)
        self._agent_data(site, message)

    def _foreign(self, site: str, message: str) -> None:
        assert self.journal is not None
        inv = self.twin.inv
        paths = mg.management_paths(inv)
        states = self.journal.device_states()
        ehr = inv.host(_endpoint(EHR_CORE))
        assert ehr is not None
        for _site, device in inv.devices():
            if _site.name != site:
                continue
            path = paths[device.name]
            foreign = mg.ManagementPath(
                path.device,
                path.site,
                str(ehr.address),
                path.dst,
                path.ports,
                None,
                # from the EHR server's zone: the same hops past the core firewall
                _from_servers_zone(path),
                path.entry,
            )
            expect_cut = mg.where_cut(states, foreign, 22) is not None
            (result,) = probe_tcp(
                [ProbeTarget(self.twin.bp.host_ns[EHR_CORE], path.dst, 22)], timeout=1.0
            )
            if result.ok == expect_cut:
                self.failures.append(
                    f"after '{message}': {EHR_CORE} -> {device.name}:22 is "
                    f"{result.status} but the recorded state says "
                    f"{'cut' if expect_cut else 'open'}"
                )
            if expect_cut:
                self.foreign_cut += 1
            else:
                self.foreign_open += 1

    def _agent_data(self, site_name: str, message: str) -> None:
        """The agent itself, to the site's EHR front end (not a management port): through the
        twin's veth, cut exactly when the recorded state of the site's firewall cuts it."""
        assert self.journal is not None
        site = self.twin.inv.site(site_name)
        assert site is not None
        zone = next(z for z in site.zones if z.role is not None and z.role.value == "servers")
        ehr = zone.host("ehr")
        wan = next(lk for lk in site.links if lk.kind.value == "wan")
        assert ehr is not None and zone.gateway is not None
        agent = str(self.twin.inv.group.management.agent_address)
        fw = self.journal.device_states().get(wan.device, DeviceState())
        there = fw.forward(
            wan.interface, zone.gateway.interface, agent, str(ehr.address), None, 443
        )
        back = fw.forward(
            zone.gateway.interface, wan.interface, str(ehr.address), agent, 443, None, reply=True
        )
        expect_cut = wan.interface in fw.down_interfaces or "drop" in (there, back)
        address = str(netns.check_twin_address(str(ehr.address), "agent data probe"))
        # from the root namespace through the twin's veth only (bound to it, whatever routes say)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ROOT_LINK.encode())
            sock.settimeout(1.0)
            opened = sock.connect_ex((address, 443)) == 0
        if opened == expect_cut:
            self.failures.append(
                f"after '{message}': the agent -> {site_name} ehr:443 "
                f"{'opened' if opened else 'did not open'} but the recorded state says "
                f"{'cut' if expect_cut else 'open'}"
            )
        self.agent_data_cut += int(expect_cut)


def _endpoint(text: str) -> Endpoint:
    site, zone, host = text.split("/")
    return Endpoint(site=site, zone=zone, host=host)


def _from_servers_zone(path: mg.ManagementPath) -> tuple[Hop, ...]:
    """The management path's hops as the core's EHR server takes them: routed by the core
    firewall from the servers zone (lan0.300) instead of the agent's zone."""
    out: list[Hop] = []
    for hop in path.hops:
        if isinstance(hop, RouteHop) and hop.device == "core-fw1":
            out.append(RouteHop(hop.device, "lan0.300", hop.out_if))
        elif not (isinstance(hop, PortHop) and hop.device == "core-sw1"):
            out.append(hop)
    return tuple(out)


@pytest.fixture
def watch(inband: Twin) -> Watch:
    return Watch(inband)


@pytest.fixture
def engine(inband: Twin, watch: Watch, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    watch.journal = journal
    with Pool(inband.inv, keepalive=None) as pool:
        ex = Executor(
            inband.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(inband.inv, inband.bp)],
            progress=watch,
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_the_agent_reaches_every_device_in_band_through_its_veth(inband: Twin) -> None:
    """No out-of-band network: the root namespace's only way in is the veth the twin made,
    cabled to the core's it-admin zone, and every device answers there on its data address."""
    assert "oob" not in " ".join(inband.bp.nodes)
    for _site, device in inband.inv.devices():
        route = subprocess.run(
            ["ip", "-o", "route", "get", str(device.management.address)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"dev {ROOT_LINK} " in route, route
        with one_shot(Target.of(inband.inv, device.name)) as drv:
            assert drv.facts().interfaces


def test_preventive_degraded_and_its_rollback_keep_management(
    inband: Twin, engine: Executor, watch: Watch
) -> None:
    original = matrix(inband)
    assert all(original.values()), {k for k, v in original.items() if not v}
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inband.inv)
    predicted = {fi.flow: fi.after for fi in plan(pb, inband.inv, sites=SISTERS).impact}
    must = must_survive(inband)
    with ContinuousProber(must, interval=0.2) as prober:
        report = engine.run(pb, SISTERS)
        stats = prober.stop()
    assert report.status == "done", report
    assert report.flow_problems == []
    assert_never_failed(stats, must)
    assert wait_for(lambda: matrix(inband) == predicted, timeout=10)
    # the sites are cut from the core (their WAN) but managed through it
    assert not predicted["stn-ehr-core"] and not predicted["bz1-backup-core"]
    assert watch.foreign_cut > 0 and watch.foreign_open > 0 and watch.agent_data_cut > 0
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(inband) == original, timeout=10)
    assert watch.failures == []
    assert watch.sessions >= 2 * len(SISTERS) * 2
    print(watch.summary())


def _agent_opens(address: str, port: int) -> bool:
    """A TCP connection from the agent's address (the root namespace, through the twin's veth
    only, whatever routes say) to a twin address: does it open?"""
    address = str(netns.check_twin_address(address, "agent probe"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ROOT_LINK.encode())
        sock.settimeout(1.0)
        return sock.connect_ex((address, port)) == 0


def test_a_wan_cut_leaves_the_firewall_managed_through_it_and_nothing_else(
    inband: Twin, engine: Executor, watch: Watch
) -> None:
    """stn-fw1 is managed at its WAN address: preventive degraded cuts that WAN whole. The
    agent's SSH to it still opens; another port the firewall listens on (a listener in its
    namespace, on its WAN address) is reachable before the cut, neither from the agent's
    address nor from the core's EHR server during it, and again after the rollback."""
    site, fw = "saint-nazaire-estuaire", "stn-fw1"
    found = inband.inv.find_device(fw)
    assert found is not None
    address = str(found[1].management.address)
    assert found[1].management.interface == "wan0"
    ehr_ns = inband.bp.host_ns[EHR_CORE]
    with netns.socket_in(inband.bp.device_ns[fw]) as server:
        server.bind((address, 0))  # an unused port of the firewall's own, on its WAN address
        server.listen(16)
        port = server.getsockname()[1]
        assert port != 22

        def from_ehr(p: int) -> bool:
            (result,) = probe_tcp([ProbeTarget(ehr_ns, address, p)], timeout=1.0)
            return result.ok

        before = (_agent_opens(address, 22), _agent_opens(address, port), from_ehr(port))
        assert before == (True, True, True)
        pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inband.inv)
        report = engine.run(pb, [site])
        assert report.status == "done", report
        state = engine.journal.device_states()[fw]
        assert {r.tag for r in state.rules if r.local} == {f"management:{fw}"}
        # during the cut: the agent's management opens (a new session, host key pinned) ...
        assert _agent_opens(address, 22)
        with one_shot(Target.of(inband.inv, fw)) as drv:
            assert drv.facts().interfaces
        # ... and nothing else of the firewall's own through its WAN
        assert not _agent_opens(address, port)
        assert not from_ehr(port)
        assert not from_ehr(22)
        assert engine.rollback(report.run_id).status == "rolled_back"
        assert (_agent_opens(address, 22), _agent_opens(address, port), from_ehr(port)) == before
    assert watch.failures == []
    assert watch.foreign_cut > 0


def test_isolate_reconnect_restore_through_the_wan(
    inband: Twin, engine: Executor, watch: Watch
) -> None:
    """La Sagesse isolated, reconnected zone by zone with soaks, every site restored (two
    people), then everything rolled back newest first: managed in band all along."""
    original = matrix(inband)
    must = must_survive(inband)
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inband.inv)
    incident = engine.run(isolate, [RNS])
    assert incident.status == "done", incident
    isolated = matrix(inband)
    assert not isolated["rns-ehr-core"] and not isolated["rns-admin-internet"]
    assert watch.foreign_cut > 0 and watch.agent_data_cut > 0

    reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", inband.inv)
    site = inband.inv.site(RNS)
    assert site is not None
    zones = [
        z.name
        for s in reconnect.steps
        if isinstance(s, ReconnectZone)
        for z in zones_of(site, s.zones)
    ]
    attest = {z: f"{z}: reimaged and scanned clean (ticket INC-15)" for z in zones}
    with ContinuousProber(must, interval=0.2) as prober:
        back = engine.run(
            reconnect, [RNS], options=RunOptions(soak_seconds=1.0, attest=attest), poll=0.2
        )
        stats = prober.stop()
    assert back.status == "done", back
    assert back.flow_problems == []
    assert_never_failed(stats, must)
    gates = engine.journal.gates(back.run_id)
    soaks = [g for g in gates if g.step.startswith("soak-")]
    assert soaks and all(g.status == "passed" for g in soaks), soaks
    reconnected = matrix(inband)
    assert reconnected["rns-ehr-core"] and reconnected["rns-admin-internet"]

    restore = load_playbook(ROOT / "playbooks" / "restore-normal.yaml", inband.inv)
    sites = [s.name for s in inband.inv.sites if s.kind.value == "establishment"]
    started = engine.start(restore, sites, options=RunOptions(needs_approval=True))
    assert engine.proceed(started.run_id).status == "awaiting_approval"
    engine.approve(started.run_id, "bob", "incident closed by the crisis cell")
    final = engine.drive(started.run_id, poll=0.2)
    assert final.status == "done", final
    assert wait_for(lambda: matrix(inband) == original, timeout=10)

    assert engine.rollback(started.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(inband) == reconnected, timeout=10)
    assert engine.rollback(back.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(inband) == isolated, timeout=10)
    assert engine.rollback(incident.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(inband) == original, timeout=10)
    assert watch.failures == []
    assert watch.sessions > 0
    print(watch.summary())

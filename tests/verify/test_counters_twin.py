"""Live traffic of must-survive flows on the twin. Every must-survive flow streams (the twin's
monitors: a TCP connection, a message every 200 ms). The lab zone and the sterilisation zone of
a site are cut from its servers on its firewall (bretagne-etab-2's Linux nftables firewall, then
nantes-jules-verne's FortiGate), the two must-survive flows between them kept by accept rules
(pushed through the driver, verified, recorded): the `counters:<firewall>` source confirms both
open from the rules' counters. With the poller reading
the firewall, one of the flows is then stopped on purpose (an administrator's drop rule in a
table of their own on the firewall, evaluated before Cordon's): the first poll whose interval
lies after the stop raises the alarm naming that flow, its site and device (audited, stored),
the other flow stays quiet; the drop removed, the stream reconnects and the alarm clears."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import audit
from agent.drivers import ChangeSet, Timeouts
from agent.drivers.pool import Pool
from agent.lab import netns, streams
from agent.network.state import NORMAL, DeviceState
from agent.platforms import registry
from agent.run.transaction import expectation
from agent.service.health import TRAFFIC_STOPPED, HealthStore
from agent.service.poll import Poller, PollReport
from agent.verify.counters import counter_sources
from agent.verify.evidence import Seen
from tests import secret_scan
from tests.conftest import Twin
from tests.daemon.test_drift import events
from tests.lab.twinops import wait_for
from tests.verify.test_counters import kept_state

pytestmark = pytest.mark.twin

HAND = "handcut"  # the administrator's own table on the firewall


@dataclass(frozen=True)
class Case:
    fw: str
    site: str
    flow: str  # stopped on purpose
    other: str  # keeps streaming


CASES = [
    Case("bz2-fw1", "bretagne-etab-2", "bz2-lab-lis", "bz2-sterilisation-trace"),
    Case("nts-fw1", "nantes-jules-verne", "nts-lab-lis", "nts-sterilisation-trace"),
]


def push(twin: Twin, pool: Pool, fw: str, state: DeviceState) -> None:
    """Cordon's rules for `state` on the firewall, in its platform's terms, through its driver,
    verified."""
    found = twin.inv.find_device(fw)
    assert found is not None
    how = registry.platform(str(found[1].platform)).rules
    assert how is not None
    lines = tuple(how.script(state).splitlines())
    pool.run(fw, lambda d: d.apply(ChangeSet(lines, action="test")))
    pool.run(fw, lambda d: d.verify(expectation(how.method, NORMAL, state)))


def hand_drop(twin: Twin, fw: str, flow_name: str) -> None:
    """Drop the flow both ways on the firewall, in a table of the administrator's, before
    Cordon's (priority -10): its packets never reach Cordon's rules."""
    fl = twin.inv.flow(flow_name)
    assert fl is not None
    src, dst = twin.inv.host(fl.source), twin.inv.host(fl.destination)
    assert src is not None and dst is not None and fl.destination.service is not None
    svc = dst.service(fl.destination.service)
    assert svc is not None
    a, b, port = src.address, dst.address, svc.port
    script = (
        f"table inet {HAND} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority -10; policy accept;\n"
        f"    ip saddr {a} ip daddr {b} tcp dport {port} drop\n"
        f"    ip saddr {b} ip daddr {a} tcp sport {port} drop\n"
        "  }\n"
        "}\n"
    )
    netns.run(["nft", "-f", "-"], netns=twin.bp.device_ns[fw], input=script)


def stream_status(twin: Twin) -> dict[str, dict[str, object]]:
    return streams.read_status(twin.state.dir / "streams.json")


@dataclass
class Rig:
    case: Case
    pool: Pool
    store: HealthStore
    poller: Poller
    log_dir: Path

    def __repr__(self) -> str:
        return f"Rig({self.case.fw})"


@pytest.fixture(params=CASES, ids=[c.fw for c in CASES])
def rig(twin: Twin, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    case: Case = request.param
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    timeouts = Timeouts(connect=5.0, command=8.0, snmp=1.0, snmp_retries=1)
    pool = Pool(twin.inv, keepalive=None, timeouts=timeouts)
    store = HealthStore(tmp_path / "health.sqlite")
    states: dict[str, DeviceState] = {}
    poller = Poller(twin.inv, pool, lambda: dict(states), store, device_timeout=30.0)
    state = kept_state(twin.inv, case.flow, case.other, device=case.fw)
    try:
        push(twin, pool, case.fw, state)
        states[case.fw] = state
        yield Rig(case, pool, store, poller, log_dir)
    finally:
        ns = twin.bp.device_ns[case.fw]
        netns.run(["nft", "delete", "table", "inet", HAND], netns=ns, check=False)
        push(twin, pool, case.fw, NORMAL)
        poller.close()
        pool.close()
        store.close()
        audit.close()
        assert secret_scan.scan_tree(log_dir, twin.secrets) == []


def stopped_flows(store: HealthStore) -> set[str]:
    return {a.subject for a in store.open_alarms() if a.kind == TRAFFIC_STOPPED}


def poll_after(poller: Poller, gap_s: float = 1.0) -> PollReport:
    """One poll, `gap_s` after the previous one (several of the streams' messages apart)."""
    time.sleep(gap_s)
    return poller.poll_once()


def test_every_must_survive_flow_streams(twin: Twin) -> None:
    must = {f.name for f in twin.inv.flows if f.must_survive}

    def all_streaming() -> bool:
        st = stream_status(twin)
        return set(st) == must and all(s["connected"] and s["sent"] for s in st.values())

    assert wait_for(all_streaming, timeout=20), stream_status(twin)


def test_the_counter_alarm_fires_within_one_poll_and_clears(twin: Twin, rig: Rig) -> None:
    pool, store, poller, log_dir = rig.pool, rig.store, rig.poller, rig.log_dir
    FW, SITE, FLOW, OTHER = rig.case.fw, rig.case.site, rig.case.flow, rig.case.other
    chosen = [f for f in twin.inv.flows if f.name in (FLOW, OTHER)]
    (src,) = [s for s in counter_sources(twin.inv, pool, window_s=2.0) if s.device == FW]
    seen = {e.flow: e for e in src.check(SITE, chosen, {FLOW: True, OTHER: True})}
    assert {f: e.seen for f, e in seen.items()} == {FLOW: Seen.OPEN, OTHER: Seen.OPEN}, seen

    poller.poll_once()  # the first reading of the rules' counters
    report = poll_after(poller)
    assert report.stopped == [] and stopped_flows(store) == set()
    assert [d.status for d in report.devices if d.device == FW] == ["ok"]

    hand_drop(twin, FW, FLOW)
    straddling = poll_after(poller)  # its interval began before the stop
    within_one = poll_after(poller)  # the first poll whose whole interval is after it
    assert (FW, FLOW) in straddling.stopped + within_one.stopped
    assert stopped_flows(store) == {FLOW}  # the other flow still moves: no alarm
    (alarm,) = [a for a in store.open_alarms() if a.kind == TRAFFIC_STOPPED]
    assert (alarm.device, alarm.site, alarm.subject) == (FW, SITE, FLOW)
    assert f"must-survive flow {FLOW} stopped" in alarm.detail
    (ev,) = events(log_dir, "traffic.stopped")
    assert (ev["flow"], ev["device"], ev["site"]) == (FLOW, FW, SITE)
    # the stream itself saw its connection drop (unacknowledged messages)
    assert wait_for(lambda: not stream_status(twin)[FLOW]["connected"], timeout=10)

    netns.run(["nft", "delete", "table", "inet", HAND], netns=twin.bp.device_ns[FW])
    assert wait_for(lambda: bool(stream_status(twin)[FLOW]["connected"]), timeout=15)

    def cleared() -> bool:
        poll_after(poller, 0.5)
        return FLOW not in stopped_flows(store)

    assert wait_for(cleared, timeout=20), store.open_alarms()
    (back,) = events(log_dir, "traffic.resumed")
    assert (back["flow"], back["device"], back["outcome"]) == (FLOW, FW, "cleared")
    assert store.alarm(alarm.id) is not None
    assert store.alarm(alarm.id).status == "cleared"  # type: ignore[union-attr]

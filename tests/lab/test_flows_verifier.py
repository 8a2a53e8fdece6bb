"""The engine's flow verifier on the twin catches both kinds of wrong flow, whatever its probe
timeouts: a flow expected closed that is really open (the short handshake-only probe still sees
it), and a flow expected open that is really cut (the long probe declares it closed). Its
handshake probe refuses any target outside the twin range before a socket exists; it stops
waiting for a flow another source has already failed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent.engine.plan import plan
from agent.errors import LabError, SafetyError
from agent.inventory.models import Flow
from agent.lab import flows, netns
from agent.lab.probe import ProbeTarget
from agent.network.paths import flow_path
from agent.network.state import DeviceState, flow_open
from agent.playbook import load as load_playbook
from agent.verify.check import Board
from agent.verify.evidence import Evidence, Seen
from tests.conftest import ROOT, Twin

SITE = "bretagne-etab-3"
TABLE = "cdt_verifier_cut"


def degraded_states(twin: Twin) -> dict[str, DeviceState]:
    """The device states preventive-degraded would record at SITE (nothing is applied)."""
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
    p = plan(pb, twin.inv, sites=[SITE], current={})
    return {c.device: c.after for c in p.changes}  # in order: the last change of a device wins


def site_flows(twin: Twin) -> list[Flow]:
    return [f for f in twin.inv.flows if SITE in (f.source.site, f.destination.site)]


@pytest.fixture
def cut_one_flow(twin: Twin) -> Iterator[Flow]:
    """One must-survive flow of SITE silently dropped at its source host (not through any
    device, so no recorded state knows); the drop is removed afterwards, whatever happens."""
    flow = next(f for f in site_flows(twin) if f.must_survive and f.source.site == SITE)
    ((_, target),) = flows.targets(twin.inv, twin.bp, [flow])
    rules = (
        f"table inet {TABLE} {{\n  chain out {{\n    type filter hook output priority 0;\n"
        f"    ip daddr {target.dst} tcp dport {target.port} drop\n  }}\n}}\n"
    )
    netns.run(["nft", "-f", "-"], netns=target.netns, input=rules)
    try:
        yield flow
    finally:
        netns.run(["nft", "delete", "table", "inet", TABLE], netns=target.netns)
    (after,) = flows.observe(twin.inv, twin.bp, flows=[flow], timeout=2.0)
    assert after.observed_open, "the test's drop was not removed"


@pytest.mark.twin
def test_a_flow_expected_closed_that_is_open_is_reported(twin: Twin) -> None:
    """The records say SITE is degraded, the twin is normal: every flow the degradation would
    cut is really open, and each one is reported, and nothing else."""
    states = degraded_states(twin)
    paths = {f.name: flow_path(twin.inv, f) for f in twin.inv.flows}
    should_close = {f.name for f in site_flows(twin) if not flow_open(states, paths[f.name])}
    assert should_close  # internet, remote access, vendor, WAN flows of the site
    verify = flows.engine_verifier(twin.inv, twin.bp, settle=0.0)
    problems = verify(SITE, states)
    assert sorted(problems) == sorted(
        f"flow {name}: expected closed, observed open" for name in should_close
    )


@pytest.mark.twin
def test_a_flow_expected_open_that_is_cut_is_reported(twin: Twin, cut_one_flow: Flow) -> None:
    """Nothing recorded, so every flow of SITE is expected open; the one silently cut is
    reported closed (after its full open timeout), the others are fine."""
    verify = flows.engine_verifier(twin.inv, twin.bp, settle=0.0)
    assert verify(SITE, {}) == [f"flow {cut_one_flow.name}: expected open, observed closed"]


@pytest.mark.twin
def test_the_recorded_states_are_read_again_before_a_retry(twin: Twin) -> None:
    """The engine passed states that went stale (they say degraded; since, everything was put
    back): re-reading them through `current` lets the check settle instead of failing."""
    stale = degraded_states(twin)
    reads: list[int] = []

    def current() -> dict[str, DeviceState]:
        reads.append(1)
        return {}

    verify = flows.engine_verifier(twin.inv, twin.bp, settle=5.0, current=current)
    assert verify(SITE, stale) == []
    assert reads


@pytest.mark.twin
def test_verifier_timeouts_are_checked(monkeypatch: pytest.MonkeyPatch, twin: Twin) -> None:
    """The timeouts can be set per process; a bad value is refused, never silently replaced."""
    monkeypatch.setenv("CORDON_VERIFY_CLOSED_TIMEOUT_S", "not-a-number")
    with pytest.raises(LabError, match="CORDON_VERIFY_CLOSED_TIMEOUT_S"):
        flows.engine_verifier(twin.inv, twin.bp)
    monkeypatch.setenv("CORDON_VERIFY_CLOSED_TIMEOUT_S", "0.2")
    flows.engine_verifier(twin.inv, twin.bp)
    with pytest.raises(LabError, match="positive"):
        flows.engine_verifier(twin.inv, twin.bp, open_timeout=0.0)


def test_handshake_probe_refuses_targets_outside_the_twin_range() -> None:
    """Network safety: nothing is opened for an address outside 198.18.0.0/15."""
    with pytest.raises(SafetyError):
        flows.handshake_probe([ProbeTarget("cdn-nowhere", "192.0.2.10", 443)], 0.1)


@pytest.mark.twin
def test_the_twin_stops_waiting_for_a_flow_another_source_failed(
    twin: Twin, cut_one_flow: Flow
) -> None:
    """The silently cut flow would be probed for a whole (long) open timeout; once another
    source has failed it (posted on the round's board, as `check.ask` does when that source
    answers) the twin gives up on it: UNKNOWN, naming that source, never closed; the other flows
    are still probed and seen open."""
    mine = site_flows(twin)
    expected = {f.name: True for f in mine}
    source = flows.TwinSource(twin.inv, twin.bp, open_timeout=30.0)
    board = Board()
    seen = [Evidence(cut_one_flow.name, "device:x", Seen.CLOSED, "drop")]
    threading.Timer(0.5, lambda: board.post(expected, seen)).start()
    got = {e.flow: e for e in source.check_until(SITE, mine, expected, board)}
    assert got[cut_one_flow.name].seen is Seen.UNKNOWN
    assert "device:x" in got[cut_one_flow.name].detail
    others = [e.seen for name, e in got.items() if name != cut_one_flow.name]
    assert others and set(others) == {Seen.OPEN}

"""How a site's flows are checked (`agent.verify.check`), pure: the sources are asked at the same
time (a check costs its slowest source, not their sum) with the evidence kept in the sources'
order; between two rounds, a failed flow whose expectation changed in the recorded states is
asked again at once, one whose expectation did not after the pause; a device whose session
another run holds is UNKNOWN after a short wait, not after the pool's connect timeout."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import pytest

from agent.drivers.base import Timeouts
from agent.drivers.pool import Pool
from agent.errors import DeviceError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.network.paths import PortHop, RouteHop, flow_path
from agent.network.state import DeviceState
from agent.verify.check import ask, check_flows, wait_for_change
from agent.verify.decisions import DeviceDecisions
from agent.verify.evidence import SESSION_WAIT_S, Evidence, FlowStatus, Seen
from tests.conftest import EXAMPLE
from tests.engine.fakes import World

SITE = "nantes-jules-verne"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def mine(inv: Inventory) -> list[Flow]:
    return [f for f in inv.flows if SITE in (f.source.site, f.destination.site)]


def cut(inv: Inventory, flow: Flow) -> dict[str, DeviceState]:
    """Recorded states in which `flow` is cut: the first switch port of its path shut."""
    hop = next(h for h in flow_path(inv, flow).hops if isinstance(h, PortHop))
    return {hop.device: DeviceState().shut(hop.interface, "cli")}


class Meeting:
    """A source that answers only once every other Meeting source of the check is asking too
    (a barrier): asked one after the other, the first one never gets past it."""

    def __init__(self, name: str, seen: Seen, barrier: threading.Barrier) -> None:
        self.name, self.seen, self.barrier = name, seen, barrier

    def check(self, _site: str, flows: Sequence[Flow], _exp: Mapping[str, bool]) -> list[Evidence]:
        self.barrier.wait()  # BrokenBarrierError (not a CordonError) when asked alone
        return [Evidence(f.name, self.name, self.seen) for f in flows]


class Broken:
    name = "device"

    def check(self, _site: str, _flows: Sequence[Flow], _exp: Mapping[str, bool]) -> list[Evidence]:
        raise DeviceError("nts-fw1", "decide", "connection refused")


def test_the_sources_are_asked_at_the_same_time_evidence_in_their_order(inv: Inventory) -> None:
    flows = mine(inv)[:2]
    meet = threading.Barrier(2, timeout=30)
    sources = [Meeting("twin", Seen.OPEN, meet), Broken(), Meeting("probe:p", Seen.CLOSED, meet)]
    errors: dict[str, str] = {}
    got = ask(sources, SITE, flows, {f.name: True for f in flows}, errors)  # type: ignore[arg-type]
    assert [e.source for e in got] == ["twin", "twin", "device", "device", "probe:p", "probe:p"]
    assert [e.seen for e in got[2:4]] == [Seen.UNKNOWN, Seen.UNKNOWN]
    assert "could not run" in got[2].detail
    assert "connection refused" in errors["device"]


def test_a_changed_expectation_is_returned_at_the_first_reading_that_shows_it(
    inv: Inventory,
) -> None:
    flow = mine(inv)[0]
    paths = {flow.name: flow_path(inv, flow)}
    readings = [{}, {}, cut(inv, flow), {}]
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    got = wait_for_change(
        paths,
        [flow],
        {flow.name: True},
        lambda: readings.pop(0),
        5.0,
        poll=0.02,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    assert got == {flow.name: False}
    assert slept == [0.02, 0.02]  # two readings unchanged, the third changed: no more waiting


def test_an_unchanged_expectation_waits_the_whole_pause(inv: Inventory) -> None:
    flow = mine(inv)[0]
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    got = wait_for_change(
        {flow.name: flow_path(inv, flow)},
        [flow],
        {flow.name: True},
        dict,
        0.3,
        poll=0.1,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    assert got == {flow.name: True}
    assert sum(slept) == pytest.approx(0.3)


def test_a_flow_cut_by_the_other_run_is_asked_again_as_soon_as_it_is_recorded(
    inv: Inventory,
) -> None:
    """The twin saw a flow closed that the states read before asking said open (a sister site's
    run cut it and records it a moment later): asked again, without the pause, once the states
    say closed, and passed; the pause is never slept."""
    flows = mine(inv)[:2]
    first = flows[0]
    reads = [0]

    def current() -> dict[str, DeviceState]:
        reads[0] += 1
        return {} if reads[0] == 1 else cut(inv, first)

    class Twin:
        name = "twin"

        def __init__(self) -> None:
            self.asked: list[dict[str, bool]] = []

        def check(
            self, _site: str, asked: Sequence[Flow], exp: Mapping[str, bool]
        ) -> list[Evidence]:
            self.asked.append(dict(exp))
            # the network: the first flow is cut, the other open
            return [
                Evidence(f.name, self.name, Seen.CLOSED if f.name == first.name else Seen.OPEN)
                for f in asked
            ]

    def never(_s: float) -> None:
        raise AssertionError("slept although the expectation had changed")

    twin = Twin()
    out = check_flows(inv, [twin], SITE, flows, current, pause=60.0, sleep=never)
    assert [r.status for r in out.results] == [FlowStatus.PASSED, FlowStatus.PASSED]
    assert out.rounds == 2
    assert twin.asked[1] == {first.name: False}  # only the failed flow, its new expectation


def test_a_device_another_run_holds_is_unknown_after_a_short_wait(inv: Inventory) -> None:
    """A device whose pooled session another thread holds (a run changing it) is not waited for
    the pool's connect timeout (60 s here): after SESSION_WAIT_S what it would have told is
    UNKNOWN, saying why; the other devices of the path still answer."""
    flow = next(f for f in mine(inv) if f.source.site != f.destination.site)
    routed = [h.device for h in flow_path(inv, flow).hops if isinstance(h, RouteHop)]
    held = routed[0]
    world = World()
    with Pool(inv, keepalive=None, factory=world.factory, timeouts=Timeouts(connect=60.0)) as pool:
        taken, done = threading.Event(), threading.Event()

        def hold() -> None:
            with pool.session(held):
                taken.set()
                done.wait(120)

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait(30)
        try:
            got = DeviceDecisions(inv, pool).check(SITE, [flow], {flow.name: True})
        finally:
            done.set()
            holder.join()
    mine_ev = [e for e in got if e.source == f"device:{held}"]
    assert [e.seen for e in mine_ev] == [Seen.UNKNOWN]
    assert f"waited {SESSION_WAIT_S:g} s for a pooled session" in mine_ev[0].detail

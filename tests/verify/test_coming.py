"""A first round waits, briefly, for the next step another run is about to send when it would
change a flow's expectation (#18): a sister site asked while the hit site's run was between two
steps on a firewall of the flow's path (its cut-internet settled, its cut-wan not yet started)
read the expectation before that cut, the cut landed while the sources were asking, the device
saw the flow closed, the round failed and was asked again. Held until that step lands, the flow
is asked once, expecting the cut; a step that does not change the flow holds nothing; a step
that never starts holds the flow only `coming_wait` seconds, then it is asked as recorded (never
unverified for it). Pure; the journal's query and the gate's landings on a real journal file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.engine.journal import Journal, NewStep
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.network.paths import RouteHop, flow_path
from agent.network.state import DeviceState
from agent.run.gates.verify import coming
from agent.status import RunStatus, StepStatus
from agent.verify.check import Landing, check_flows
from agent.verify.evidence import Evidence, FlowStatus, Seen
from tests.conftest import EXAMPLE

SITE = "nantes-jules-verne"
FLOW = "rns-telerad-nts"  # crosses rns-fw1, the hit site's firewall


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def telerad(inv: Inventory) -> Flow:
    return next(f for f in inv.flows if f.name == FLOW)


def wan_cut(inv: Inventory) -> DeviceState:
    """rns-fw1 with the interface the flow enters it by shut (what a WAN cut does to it)."""
    hop = next(
        h
        for h in flow_path(inv, telerad(inv)).hops
        if isinstance(h, RouteHop) and h.device == "rns-fw1"
    )
    return DeviceState().shut(hop.in_if, "cli")


class Network:
    """Reports what the network does now: the flow closed once `cut` is set."""

    name = "device"

    def __init__(self) -> None:
        self.cut = False
        self.asked: list[dict[str, bool]] = []

    def check(self, _site: str, flows: Sequence[Flow], exp: Mapping[str, bool]) -> list[Evidence]:
        self.asked.append(dict(exp))
        seen = Seen.CLOSED if self.cut else Seen.OPEN
        return [Evidence(f.name, self.name, seen) for f in flows]


def test_a_flow_the_next_step_of_another_run_cuts_is_asked_once_it_landed(
    inv: Inventory,
) -> None:
    flow, cut = telerad(inv), wan_cut(inv)
    net = Network()
    reads = [0]
    lands_at = 3

    def soon() -> dict[str, str | Landing]:
        reads[0] += 1
        if reads[0] > lands_at:
            net.cut = True  # sent, applied, settled: recorded below
            return {}
        return {"rns-fw1": Landing("run A step 3 (cut-wan)", cut)}

    def current() -> dict[str, DeviceState]:
        return {"rns-fw1": cut} if net.cut else {}

    out = check_flows(inv, [net], SITE, [flow], current, coming=soon, sleep=lambda _s: None)
    assert net.asked == [{FLOW: False}]  # once, the cut expected
    assert [r.status for r in out.results] == [FlowStatus.PASSED]
    assert out.rounds == 1
    (wait,) = out.waits
    assert wait.endswith(" s for rns-fw1: run A step 3 (cut-wan) coming next")


def test_a_next_step_that_leaves_the_flow_as_it_is_holds_nothing(inv: Inventory) -> None:
    flow = telerad(inv)

    def never(_s: float) -> None:
        raise AssertionError("waited for a step that cannot change the flow")

    soon = {"rns-fw1": Landing("run A step 2 (cut-internet)", DeviceState())}
    net = Network()
    out = check_flows(inv, [net], SITE, [flow], dict, coming=lambda: soon, sleep=never)
    assert net.asked == [{FLOW: True}]
    assert [r.status for r in out.results] == [FlowStatus.PASSED]


def test_a_next_step_that_never_starts_holds_the_flow_only_a_moment(inv: Inventory) -> None:
    flow, cut = telerad(inv), wan_cut(inv)
    soon = {"rns-fw1": Landing("run A step 3 (cut-wan)", cut)}
    net = Network()
    out = check_flows(
        inv, [net], SITE, [flow], dict, coming=lambda: soon, coming_wait=0.05, poll=0.01
    )
    assert net.asked == [{FLOW: True}]  # asked as recorded: the step did not come
    assert [r.status for r in out.results] == [FlowStatus.PASSED]


def test_the_gate_lands_the_next_step_of_each_other_running_run(tmp_path: Path) -> None:
    """The next step each other running run has yet to start, per device, merged on the state
    recorded now and on that run's step in flight there; the gate's own run, a run awaiting
    approval and a device two runs are about to change (not known) as said."""
    j = Journal(tmp_path / "journal.db")
    kept = DeviceState().shut("eth9", "snmp")
    j.set_device("d1", kept, "X")
    one, two = DeviceState().shut("eth1", "cli"), DeviceState().shut("eth2", "cli")
    both = DeviceState().shut("eth1", "cli").shut("eth2", "cli")

    def step(seq: int, name: str, device: str, to: DeviceState) -> NewStep:
        return NewStep(seq, "s", name, device, "cli", ("x",), ("y",), DeviceState(), to)

    j.start_run("B", "pb", "L1", ["s"], "t", [step(1, "a", "d1", one), step(2, "b", "d1", both)])
    j.mark("B", 1, StepStatus.STARTED)
    j.start_run("C", "pb", "L1", ["c"], "t", [step(1, "a", "d2", one)])
    j.start_run("D", "pb", "L1", ["d"], "t", [step(1, "a", "d2", two)])
    j.start_run("E", "pb", "L1", ["e"], "t", [step(1, "a", "d3", one)])  # the gate's own
    j.start_run(
        "F", "pb", "L1", ["f"], "t", [step(1, "a", "d4", one)], status=RunStatus.AWAITING_APPROVAL
    )
    got = coming(SimpleNamespace(journal=j), "E")  # type: ignore[arg-type]
    assert got == {
        "d1": Landing("run B step 2 (b)", DeviceState(down=kept.down | both.down)),
        "d2": Landing("run C step 1 (a)"),
    }
    assert [(r.run_id, r.seq) for r in j.steps_coming()] == [("B", 2), ("C", 1), ("D", 1), ("E", 1)]

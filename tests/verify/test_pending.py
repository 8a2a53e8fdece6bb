"""A flow's expectation is not known while a device of its path has a step in flight (journaled
as started, applied or undoing by an open run, not yet settled): the check waits for the step to
settle, then asks the sources once with the expectation recorded then, instead of asking with
the stale one, failing the round and asking again (the race two parallel runs had, #18). A flow
still pending at the deadline is unverified, saying which step held it; a step in flight on a
device of no flow's path holds nothing. Pure: the journal's reads are given as callables; the
journal's own query (`devices_in_flight`) is tested on a real journal file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.engine.journal import Journal, NewStep
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.network.paths import PortHop, RouteHop, flow_path
from agent.network.state import DeviceState
from agent.run.gates.verify import landings
from agent.status import RunStatus, StepStatus
from agent.verify.check import IN_FLIGHT_SOURCE, Landing, check_flows, pending
from agent.verify.evidence import Evidence, FlowStatus, Seen
from tests.conftest import EXAMPLE

SITE = "nantes-jules-verne"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def mine(inv: Inventory) -> list[Flow]:
    return [f for f in inv.flows if SITE in (f.source.site, f.destination.site)]


def first_port(inv: Inventory, flow: Flow) -> PortHop:
    return next(h for h in flow_path(inv, flow).hops if isinstance(h, PortHop))


class Network:
    """A source that reports what the network does: `cut` flows closed, the others open
    (whatever it is asked to expect), and keeps what it was asked."""

    name = "twin"

    def __init__(self, cut: set[str]) -> None:
        self.cut = cut
        self.asked: list[dict[str, bool]] = []

    def check(self, _site: str, flows: Sequence[Flow], exp: Mapping[str, bool]) -> list[Evidence]:
        self.asked.append(dict(exp))
        return [
            Evidence(f.name, self.name, Seen.CLOSED if f.name in self.cut else Seen.OPEN)
            for f in flows
        ]


def test_a_flow_whose_path_is_being_cut_is_asked_once_after_the_step_settles(
    inv: Inventory,
) -> None:
    """Another run's step is on a device of the first flow's path (intent journaled, the cut
    already on the device, not yet recorded): the sources are not asked until it settles, then
    asked once, expecting the cut. Before, the flow was asked expecting open, failed the round
    and was asked again."""
    flows = mine(inv)[:2]
    first = flows[0]
    port = first_port(inv, first)
    settled_after = 3  # the step settles at the fourth reading
    reads = [0]

    def in_flight() -> dict[str, str]:
        reads[0] += 1
        return {} if reads[0] > settled_after else {port.device: "run B step 4 (cut)"}

    def current() -> dict[str, DeviceState]:
        done = reads[0] > settled_after  # recorded with the step's settling (one transaction)
        return {port.device: DeviceState().shut(port.interface, "cli")} if done else {}

    slept: list[float] = []
    net = Network({first.name})
    out = check_flows(inv, [net], SITE, flows, current, in_flight=in_flight, sleep=slept.append)
    assert net.asked == [{first.name: False, flows[1].name: True}]  # once, the cut expected
    assert [r.status for r in out.results] == [FlowStatus.PASSED, FlowStatus.PASSED]
    assert out.rounds == 1
    assert len(slept) == settled_after  # polled until it settled, no retry pause


def test_without_the_steps_in_flight_the_stale_expectation_fails_a_round(
    inv: Inventory,
) -> None:
    """The same race seen by a caller that gives no steps in flight (the behaviour before):
    asked with the stale expectation first, a failed round, asked again. What the test above
    removes."""
    flows = mine(inv)[:2]
    first = flows[0]
    port = first_port(inv, first)
    reads = [0]

    def current() -> dict[str, DeviceState]:
        reads[0] += 1
        return {port.device: DeviceState().shut(port.interface, "cli")} if reads[0] > 1 else {}

    net = Network({first.name})
    out = check_flows(inv, [net], SITE, flows, current, sleep=lambda _s: None)
    assert net.asked[0] == {first.name: True, flows[1].name: True}
    assert out.rounds == 2


def test_a_step_in_flight_elsewhere_holds_nothing(inv: Inventory) -> None:
    flows = mine(inv)
    on_a_path = {h.device for f in flows for h in flow_path(inv, f).hops}
    elsewhere = next(d.name for s in inv.sites for d in s.devices if d.name not in on_a_path)
    busy = {elsewhere: "run B step 1 (cut)"}
    assert pending({f.name: flow_path(inv, f) for f in flows}, flows, busy) == {}

    def never(_s: float) -> None:
        raise AssertionError("waited for a step on no flow's path")

    net = Network(set())
    out = check_flows(inv, [net], SITE, flows, dict, in_flight=lambda: busy, sleep=never)
    assert len(net.asked) == 1
    assert {r.status for r in out.results} == {FlowStatus.PASSED}


def test_a_step_that_never_settles_leaves_its_flows_unverified_not_asked(
    inv: Inventory,
) -> None:
    """A step still in flight at the deadline (a run that crashed mid-step, not yet resumed) on
    a sister site's firewall: the flow crossing it is unverified, saying which step held it,
    never asked; the flow that does not cross it is asked and passes."""
    by_name = {f.name: f for f in mine(inv)}
    crossing, local = by_name["rns-telerad-nts"], by_name["nts-icu-monitoring"]
    busy = {"rns-fw1": "run B step 4 (cut)"}
    net = Network(set())
    out = check_flows(
        inv, [net], SITE, [crossing, local], dict, in_flight=lambda: busy, settle=0.05, poll=0.01
    )
    assert [r.status for r in out.results] == [FlowStatus.UNVERIFIED, FlowStatus.PASSED]
    (why,) = out.results[0].evidence
    assert (why.source, why.seen) == (IN_FLIGHT_SOURCE, Seen.UNKNOWN)
    assert why.detail == "expectation unknown: rns-fw1: run B step 4 (cut) in flight"
    assert net.asked == [{local.name: True}]


def test_the_journal_names_the_devices_an_open_run_is_changing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    step = [
        NewStep(i, "s", f"cut{i}", f"d{i}", "cli", ("x",), ("y",), DeviceState(), DeviceState())
        for i in (1, 2, 3, 4)
    ]
    j.start_run("B", "pb", "L1", ["s"], "t", step)
    assert j.devices_in_flight() == {}  # pending: intent not yet acted on
    j.mark("B", 1, StepStatus.STARTED)
    j.mark("B", 2, StepStatus.STARTED)
    j.mark("B", 2, StepStatus.APPLIED)
    j.mark("B", 3, StepStatus.STARTED)
    j.settle_step("B", 3, StepStatus.VERIFIED, "d3", DeviceState())
    assert j.devices_in_flight() == {
        "d1": "run B step 1 (cut1)",
        "d2": "run B step 2 (cut2)",
    }
    j.mark("B", 3, StepStatus.UNDOING)
    assert "d3" in j.devices_in_flight()
    j.finish_run("B", RunStatus.FAILED, "stopped")  # a closed run changes nothing any more
    assert j.devices_in_flight() == {}


def route_in(inv: Inventory, flow: Flow, device: str) -> str:
    """The interface `flow` enters `device` by (a routing hop of its path)."""
    return next(
        h.in_if for h in flow_path(inv, flow).hops if isinstance(h, RouteHop) and h.device == device
    )


def test_a_step_in_flight_that_lands_without_changing_the_flow_holds_nothing(
    inv: Inventory,
) -> None:
    """The hit site's firewall is being changed (its segmentation) while a sister site checks a
    flow crossing it: where the step lands is known and leaves the flow as it is (an interface
    of the firewall on no path of the flow shut), so the flow is asked at once, not after the
    step settles (#18's journal gap)."""
    crossing = next(f for f in mine(inv) if f.name == "rns-telerad-nts")
    used = {
        n
        for h in flow_path(inv, crossing).hops
        if isinstance(h, RouteHop) and h.device == "rns-fw1"
        for n in (h.in_if, h.out_if)
    }
    other = next(
        i.name
        for s in inv.sites
        for d in s.devices
        if d.name == "rns-fw1"
        for i in d.interfaces
        if i.name not in used
    )
    busy = {"rns-fw1": Landing("run A step 9 (segment)", DeviceState().shut(other, "cli"))}

    def never(_s: float) -> None:
        raise AssertionError("waited for a step that cannot change the flow")

    net = Network(set())
    out = check_flows(inv, [net], SITE, [crossing], dict, in_flight=lambda: busy, sleep=never)
    assert net.asked == [{crossing.name: True}]
    assert [r.status for r in out.results] == [FlowStatus.PASSED]


@pytest.mark.parametrize("known", [True, False])
def test_a_step_in_flight_that_may_change_the_flow_or_lands_unknown_holds_it(
    inv: Inventory, known: bool
) -> None:
    """Landing on a state that cuts the flow (its interface on the firewall shut), or landing
    nowhere known: the flow waits for the step to settle, as without landings."""
    crossing = next(f for f in mine(inv) if f.name == "rns-telerad-nts")
    cut = DeviceState().shut(route_in(inv, crossing, "rns-fw1"), "cli")
    busy = {"rns-fw1": Landing("run A step 9 (cut)", cut if known else None)}
    assert pending({crossing.name: flow_path(inv, crossing)}, [crossing], busy, {}) == {
        crossing.name: "rns-fw1: run A step 9 (cut) in flight"
    }
    net = Network(set())
    out = check_flows(
        inv, [net], SITE, [crossing], dict, in_flight=lambda: busy, settle=0.05, poll=0.01
    )
    assert net.asked == []
    assert [r.status for r in out.results] == [FlowStatus.UNVERIFIED]


def test_a_failed_flow_is_asked_again_only_once_its_path_settled_even_with_landings(
    inv: Inventory,
) -> None:
    """Asked at once (the landing leaves it open), seen closed (the firewall mid-write): asked
    again only after the step on its path settled (the strict rule), not in a loop while the
    firewall is being written."""
    crossing = next(f for f in mine(inv) if f.name == "rns-telerad-nts")
    net = Network({crossing.name})
    reads = [0]
    settles_at = 4

    def in_flight() -> dict[str, str | Landing]:
        reads[0] += 1
        if reads[0] > settles_at:
            net.cut.clear()  # the firewall written: the flow open again
            return {}
        return {"rns-fw1": Landing("run A step 9", DeviceState())}

    slept: list[float] = []
    out = check_flows(inv, [net], SITE, [crossing], dict, in_flight=in_flight, sleep=slept.append)
    assert len(net.asked) == 2  # the first round, then once after the step settled
    assert [r.status for r in out.results] == [FlowStatus.PASSED]
    assert out.rounds == 2


def test_the_journal_gives_the_steps_in_flight_with_where_they_land(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    to = DeviceState().shut("eth1", "cli")
    step = [
        NewStep(i, "s", f"cut{i}", f"d{i}", "cli", ("x",), ("y",), DeviceState(), to)
        for i in (1, 2)
    ]
    j.start_run("B", "pb", "L1", ["s"], "t", step)
    assert j.steps_in_flight() == []
    j.mark("B", 2, StepStatus.STARTED)
    (row,) = j.steps_in_flight()
    assert (row.device, row.seq, row.after, row.status) == ("d2", 2, to, StepStatus.STARTED)
    j.finish_run("B", RunStatus.FAILED, "stopped")
    assert j.steps_in_flight() == []


def test_the_verify_gate_lands_each_step_on_the_state_recorded_now(tmp_path: Path) -> None:
    """Where the gate says each step in flight lands: the device's recorded state with the
    step's part replaced by its target (an undo's: its start); two steps in flight on one
    device: not known."""
    j = Journal(tmp_path / "journal.db")
    kept = DeviceState().shut("eth9", "snmp")  # shut by another method: stays
    j.set_device("d1", kept, "A")
    to = DeviceState().shut("eth1", "cli")
    new = [
        NewStep(1, "s", "cut", "d1", "cli", ("x",), ("y",), DeviceState(), to),
        NewStep(2, "s", "cut", "d2", "cli", ("x",), ("y",), DeviceState(), to),
        NewStep(3, "s", "cut2", "d2", "cli", ("x",), ("y",), DeviceState(), to),
        NewStep(4, "s", "cut", "d3", "cli", ("x",), ("y",), DeviceState(), to),
    ]
    j.start_run("B", "pb", "L1", ["s"], "t", new)
    for seq in (1, 2, 3, 4):
        j.mark("B", seq, StepStatus.STARTED)
    j.settle_step("B", 4, StepStatus.VERIFIED, "d3", to)
    j.mark("B", 4, StepStatus.UNDOING)
    got = landings(SimpleNamespace(journal=j))  # type: ignore[arg-type]
    assert got == {
        "d1": Landing("run B step 1 (cut)", DeviceState(down=kept.down | to.down)),
        "d2": Landing("run B step 2 (cut)"),
        "d3": Landing("run B step 4 (cut)", DeviceState()),
    }

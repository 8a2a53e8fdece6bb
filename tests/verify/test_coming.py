"""A first round waits, briefly, for the next step another run is about to send when it would
change a flow's expectation (#18): a sister site asked while the hit site's run was between two
steps on a firewall of the flow's path (its cut-internet settled, its cut-wan not yet started)
read the expectation before that cut, the cut landed while the sources were asking, the device
saw the flow closed, the round failed and was asked again. Held until that step lands, the flow
is asked once, expecting the cut; a step that does not change the flow holds nothing; a step
that never starts holds the flow only `coming_wait` seconds, then it is asked as recorded (never
unverified for it). Only the step each other run really sends next counts: at each site its
order walks now, its first device step with pending rows, when no gate (a verify, a soak, a
reconnect's preconditions) stands before it; never a later step, nor one queued behind a gate.
Pure; the journal's query and the gate's landings on a real journal file."""

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
from agent.playbook.models import Playbook
from agent.run.gates.attest import preconditions_key
from agent.run.gates.verify import coming
from agent.status import GateStatus, RunStatus, StepStatus
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


def playbook(*steps: str, order: str = "parallel") -> str:
    """A journaled playbook: `name:cut` / `name:reconnect` a device step, `name:verify` /
    `name:soak` a gate."""
    kinds: dict[str, dict[str, object]] = {
        "cut": {"action": "cut_link", "kinds": ["wan"]},
        "verify": {"action": "verify_flows"},
        "soak": {"action": "soak", "seconds": 60},
        "reconnect": {"action": "reconnect_zone", "zones": {"zones": ["z"]}},
    }
    return Playbook.model_validate(
        {
            "name": "pb",
            "level": "L1",
            "order": order,
            "steps": [{"name": n, **kinds[k]} for n, k in (s.split(":") for s in steps)],
        }
    ).model_dump_json(by_alias=True)


def step(seq: int, name: str, device: str, to: DeviceState, site: str = "s") -> NewStep:
    return NewStep(seq, site, name, device, "cli", ("x",), ("y",), DeviceState(), to)


def settle(j: Journal, run_id: str, seq: int) -> None:
    for status in (StepStatus.STARTED, StepStatus.APPLIED, StepStatus.VERIFIED):
        j.mark(run_id, seq, status)


ONE, TWO = DeviceState().shut("eth1", "cli"), DeviceState().shut("eth2", "cli")


def test_the_gate_lands_the_next_step_of_each_other_running_run(tmp_path: Path) -> None:
    """The next step each other running run has yet to start, per device, merged on the state
    recorded now and on that run's step in flight there; the gate's own run, a run awaiting
    approval, a run asked to stop, a run journaled without its playbook and a device two runs
    are about to change (not known) as said."""
    j = Journal(tmp_path / "journal.db")
    kept = DeviceState().shut("eth9", "snmp")
    j.set_device("d1", kept, "X")
    both = DeviceState().shut("eth1", "cli").shut("eth2", "cli")
    pb = playbook("a:cut", "b:cut")
    two_rows = [step(1, "a", "d1", ONE), step(2, "b", "d1", both)]
    j.start_run("B", "pb", "L1", ["s"], "t", two_rows, playbook_json=pb)
    j.mark("B", 1, StepStatus.STARTED)
    j.start_run("C", "pb", "L1", ["c"], "t", [step(1, "a", "d2", ONE, "c")], playbook_json=pb)
    j.start_run("D", "pb", "L1", ["d"], "t", [step(1, "a", "d2", TWO, "d")], playbook_json=pb)
    own = [step(1, "a", "d3", ONE, "e")]
    j.start_run("E", "pb", "L1", ["e"], "t", own, playbook_json=pb)  # the gate's own
    j.start_run(
        "F",
        "pb",
        "L1",
        ["f"],
        "t",
        [step(1, "a", "d4", ONE, "f")],
        playbook_json=pb,
        status=RunStatus.AWAITING_APPROVAL,
    )
    j.start_run("G", "pb", "L1", ["g"], "t", [step(1, "a", "d5", ONE, "g")], playbook_json=pb)
    j.request_stop("G", "stop")
    j.start_run("H", "pb", "L1", ["h"], "t", [step(1, "a", "d6", ONE, "h")])  # no playbook
    got = coming(SimpleNamespace(journal=j), "E")  # type: ignore[arg-type]
    assert got == {
        "d1": Landing("run B step 2 (b)", DeviceState(down=kept.down | both.down)),
        "d2": Landing("run C step 1 (a)"),
    }
    assert [(r.run_id, r.seq) for r in j.steps_coming()] == [
        ("B", 2),
        ("C", 1),
        ("D", 1),
        ("E", 1),
        ("G", 1),
        ("H", 1),
    ]


def test_only_the_next_step_of_a_run_is_coming_not_a_later_one(tmp_path: Path) -> None:
    """A run whose second pending step is on another device: only the first is coming (the
    second is sent once the first has settled); every device of that first step is."""
    j = Journal(tmp_path / "journal.db")
    rows = [step(1, "a", "d1", ONE), step(2, "a", "d2", ONE), step(3, "b", "d3", TWO)]
    j.start_run("B", "pb", "L1", ["s"], "t", rows, playbook_json=playbook("a:cut", "b:cut"))
    got = coming(SimpleNamespace(journal=j), "E")  # type: ignore[arg-type]
    assert sorted(got) == ["d1", "d2"]
    settle(j, "B", 1)
    settle(j, "B", 2)
    got = coming(SimpleNamespace(journal=j), "E")  # type: ignore[arg-type]
    assert got == {"d3": Landing("run B step 3 (b)", TWO)}


@pytest.mark.parametrize("gate", ["verify", "soak"])
def test_a_step_behind_a_gate_is_not_coming_until_the_gate_passed(
    tmp_path: Path, gate: str
) -> None:
    """A device step queued behind a gate of its run and site (not reached yet, then open) is
    not coming (nor while the step before the gate is in flight): the gate may take seconds to
    minutes; once it passed, the step is."""
    j = Journal(tmp_path / "journal.db")
    pb = playbook("a:cut", f"g:{gate}", "b:cut")
    j.start_run(
        "B",
        "pb",
        "L1",
        ["s"],
        "t",
        [step(1, "a", "d1", ONE), step(2, "b", "d2", TWO)],
        playbook_json=pb,
    )
    ctx = SimpleNamespace(journal=j)
    j.mark("B", 1, StepStatus.STARTED)
    assert coming(ctx, "E") == {}  # type: ignore[arg-type]
    settle(j, "B", 1)
    assert coming(ctx, "E") == {}  # type: ignore[arg-type]
    j.set_gate("B", "s", "g", GateStatus.OPEN)
    assert coming(ctx, "E") == {}  # type: ignore[arg-type]
    j.set_gate("B", "s", "g", GateStatus.PASSED)
    assert coming(ctx, "E") == {"d2": Landing("run B step 2 (b)", TWO)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "devices"),
    [("parallel", ["d1", "d3"]), ("serial", ["d1"]), ("waves", ["d3"])],
)
def test_the_sites_a_run_walks_now_as_its_order_says(
    tmp_path: Path, order: str, devices: list[str]
) -> None:
    """Site s1 past its first step (its second pending), s2 at its first: every site walks
    (parallel), the first not done (serial), the sites at the earliest step (waves)."""
    j = Journal(tmp_path / "journal.db")
    rows = [
        step(1, "a", "d0", ONE, "s1"),
        step(2, "b", "d1", ONE, "s1"),
        step(3, "a", "d3", ONE, "s2"),
        step(4, "b", "d4", ONE, "s2"),
    ]
    pb = playbook("a:cut", "b:cut", order=order)
    j.start_run("B", "pb", "L1", ["s1", "s2"], "t", rows, playbook_json=pb)
    settle(j, "B", 1)
    assert sorted(coming(SimpleNamespace(journal=j), "E")) == devices  # type: ignore[arg-type]


def test_nothing_is_coming_from_a_site_that_failed(tmp_path: Path) -> None:
    """A failed step: the site stops or rolls back, its pending steps are not coming."""
    j = Journal(tmp_path / "journal.db")
    rows = [step(1, "a", "d1", ONE), step(2, "a", "d2", ONE), step(3, "b", "d3", ONE)]
    j.start_run("B", "pb", "L1", ["s"], "t", rows, playbook_json=playbook("a:cut", "b:cut"))
    j.mark("B", 1, StepStatus.STARTED)
    j.mark("B", 1, StepStatus.FAILED)
    assert coming(SimpleNamespace(journal=j), "E") == {}  # type: ignore[arg-type]


def test_a_reconnect_step_is_coming_only_once_its_preconditions_passed(tmp_path: Path) -> None:
    """Its preconditions (an operator's attestation, the baselines) stand before it like a gate."""
    j = Journal(tmp_path / "journal.db")
    pb = playbook("r:reconnect")
    j.start_run("B", "pb", "L0", ["s"], "t", [step(1, "r", "d1", ONE)], playbook_json=pb)
    ctx = SimpleNamespace(journal=j)
    j.set_gate("B", "s", preconditions_key("r"), GateStatus.OPEN)
    assert coming(ctx, "E") == {}  # type: ignore[arg-type]
    j.set_gate("B", "s", preconditions_key("r"), GateStatus.PASSED)
    assert coming(ctx, "E") == {"d1": Landing("run B step 1 (r)", ONE)}  # type: ignore[arg-type]

"""The device-decision source's rule for a flow crossing several devices, without devices: each
device gives fixed answers (its interfaces, its decision on each packet, or none: its platform
cannot evaluate a flow); the first device that drops the flow decides CLOSED, OPEN only when every
routing device accepts both directions with every interface of the path up, UNKNOWN otherwise
(each device saying why), and a path of switch ports only is never confirmed open."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from agent.drivers.base import Facts, InterfaceState
from agent.errors import DeviceError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.platforms.capabilities import FlowDecision, FlowQuery, Verdict
from agent.verify.decisions import CANNOT, DeviceDecisions
from agent.verify.evidence import Evidence, Seen
from tests.conftest import EXAMPLE

T = TypeVar("T")
ROUTED, SWITCHED = "bz3-lab-lis", "bz3-emergency-phone"  # via bz3-fw1; bz3-sw1 ports only
SW_PORTS = ("1/1/49.140", "1/1/49.180", "1/1/2", "1/1/7", "1/1/5", "1/1/6", "1/1/4", "1/1/3")
FW_PORTS = ("lan0.140", "lan0.180")


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


class Switch:
    def __init__(self, name: str, down: Sequence[str] = ()) -> None:
        self.name, self.down = name, set(down)

    def facts(self) -> Facts:
        names = SW_PORTS if "sw" in self.name else FW_PORTS
        states = tuple(InterfaceState(n, admin_up=n not in self.down) for n in names)
        return Facts(self.name, "fake", "ssh", states)


class Firewall(Switch):
    """A routing device answering every packet with `verdict` (and the packets it was asked)."""

    def __init__(self, name: str, verdict: Verdict, why: str = "rule 7") -> None:
        super().__init__(name)
        self.verdict, self.why = verdict, why
        self.asked: list[FlowQuery] = []

    def decide_flows(self, queries: Sequence[FlowQuery]) -> list[FlowDecision]:
        self.asked += queries
        return [FlowDecision(self.verdict, self.why) for _ in queries]


class Pool:
    def __init__(self, devices: Mapping[str, Any]) -> None:
        self.devices = devices

    def run(
        self, device: str, fn: Callable[[Any], T], via: str = "ssh", wait: float | None = None
    ) -> T:
        found = self.devices.get(device)
        if found is None:
            raise DeviceError(device, "facts", "connection refused")
        return fn(found)


def ask(inv: Inventory, pool: Pool, name: str) -> list[Evidence]:
    flow: Flow = next(f for f in inv.flows if f.name == name)
    return DeviceDecisions(inv, pool).check(flow.source.site, [flow], {name: True})  # type: ignore[arg-type]


def test_every_routing_device_accepts_with_the_path_up_open(inv: Inventory) -> None:
    fw = Firewall("bz3-fw1", Verdict.ACCEPT)
    out = ask(inv, Pool({"bz3-sw1": Switch("bz3-sw1"), "bz3-fw1": fw}), ROUTED)
    assert out == [Evidence(ROUTED, "device:bz3-fw1", Seen.OPEN)]
    # asked about the request and its reply (the trunk `1/1/49`/`lan0` reported as its VLAN legs)
    assert [q.reply for q in fw.asked] == [False, True]
    assert (fw.asked[0].in_if, fw.asked[0].out_if) == ("lan0.140", "lan0.180")


def test_a_drop_decides_closed_naming_the_device(inv: Inventory) -> None:
    fw = Firewall("bz3-fw1", Verdict.DROP, "drop by ip site f rule handle 3")
    out = ask(inv, Pool({"bz3-sw1": Switch("bz3-sw1"), "bz3-fw1": fw}), ROUTED)
    assert out == [
        Evidence(ROUTED, "device:bz3-fw1", Seen.CLOSED, "drop by ip site f rule handle 3")
    ]


def test_a_port_down_on_the_path_decides_closed(inv: Inventory) -> None:
    fw = Firewall("bz3-fw1", Verdict.ACCEPT)
    out = ask(inv, Pool({"bz3-sw1": Switch("bz3-sw1", down=["1/1/2"]), "bz3-fw1": fw}), ROUTED)
    assert out == [
        Evidence(ROUTED, "device:bz3-sw1", Seen.CLOSED, "interface 1/1/2 is administratively down")
    ]


@pytest.mark.parametrize(
    ("fw", "why"),
    [
        (Firewall("bz3-fw1", Verdict.UNKNOWN, "meta mark"), "meta mark"),
        (Switch("bz3-fw1"), CANNOT),  # a platform without DecidesFlows
        (None, "could not ask: bz3-fw1: facts: connection refused"),
    ],
)
def test_a_device_that_cannot_tell_leaves_the_flow_unknown(
    inv: Inventory, fw: Any, why: str
) -> None:
    devices = {"bz3-sw1": Switch("bz3-sw1")} | ({"bz3-fw1": fw} if fw is not None else {})
    out = ask(inv, Pool(devices), ROUTED)
    assert [(e.source, e.seen) for e in out] == [("device:bz3-fw1", Seen.UNKNOWN)]
    assert why in out[0].detail


def test_switch_ports_only_is_never_open(inv: Inventory) -> None:
    out = ask(inv, Pool({"bz3-sw1": Switch("bz3-sw1")}), SWITCHED)
    assert [(e.source, e.seen) for e in out] == [("device", Seen.UNKNOWN)]
    assert "switch ports only" in out[0].detail
    down = ask(
        inv,
        Pool({"bz3-sw1": Switch("bz3-sw1", down=["1/1/3", "1/1/4", "1/1/5", "1/1/6"])}),
        SWITCHED,
    )
    assert [(e.source, e.seen) for e in down] == [("device:bz3-sw1", Seen.CLOSED)]


class Lean(Firewall):
    """A firewall that reads its interfaces alone; its `facts` (the whole configuration) must
    not be read by a flow verification."""

    def __init__(self, name: str, verdict: Verdict) -> None:
        super().__init__(name, verdict)
        self.reads: list[str] = []

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        self.reads.append(operation)
        return super().facts().interfaces

    def facts(self) -> Facts:
        raise AssertionError("facts read although the interfaces alone can be")


def test_a_device_that_reads_its_interfaces_alone_is_not_asked_its_facts(inv: Inventory) -> None:
    fw = Lean("bz3-fw1", Verdict.ACCEPT)
    got = ask(inv, Pool({"bz3-sw1": Switch("bz3-sw1"), "bz3-fw1": fw}), ROUTED)
    assert {e.source: e.seen for e in got} == {"device:bz3-fw1": Seen.OPEN}
    assert fw.reads == ["decide"]

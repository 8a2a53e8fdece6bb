"""A check waiting for a step in flight wakes at the journal's next write (the step settled),
not at its next poll (#18: nine sites' checks re-read the journal every 20 ms while a step was in
flight, each read under the journal's lock the runs' writes wait for). The journal's wake-up is
real (`Journal.version`, `wait_change`: a SQLite file); the poll is made too long to be what
wakes the check."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.engine.journal import Journal, NewStep
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network.paths import PortHop, flow_path
from agent.network.state import DeviceState
from agent.status import StepStatus
from agent.verify.check import settled, wait_for_change
from tests.conftest import EXAMPLE

SITE = "nantes-jules-verne"
NEVER_S = 5.0  # the poll: a wait that lasts it was not woken by the write (`Spy.timeouts`)


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


class Spy:
    """The journal as the check sees it (`Changes`), counting the waits that ended at their
    timeout instead of at a write."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.timeouts = 0

    def version(self) -> int:
        return self.journal.version()

    def wait_change(self, seen: int, timeout: float) -> int:
        now = self.journal.wait_change(seen, timeout)
        self.timeouts += now == seen
        return now


def never(_s: float) -> None:
    raise AssertionError("slept a poll instead of waiting for the journal")


def test_a_write_wakes_a_waiting_reader_and_only_a_write(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    seen = j.version()
    assert j.wait_change(seen, 0.01) == seen  # nothing written: its timeout, same version
    threading.Timer(0.05, lambda: j.set_device("d1", DeviceState(), "B")).start()
    assert j.wait_change(seen, NEVER_S) == seen + 1


def test_a_check_held_by_a_step_in_flight_reads_again_when_it_settles(
    inv: Inventory, tmp_path: Path
) -> None:
    flow = next(f for f in inv.flows if SITE in (f.source.site, f.destination.site))
    port = next(h for h in flow_path(inv, flow).hops if isinstance(h, PortHop))
    j = Journal(tmp_path / "journal.db")
    cut = DeviceState().shut(port.interface, "cli")
    step = NewStep(1, "s", "cut", port.device, "cli", ("x",), ("y",), DeviceState(), cut)
    j.start_run("B", "pb", "L1", ["s"], "t", [step])
    j.mark("B", 1, StepStatus.STARTED)
    paths = {flow.name: flow_path(inv, flow)}

    def land() -> None:
        j.settle_step("B", 1, StepStatus.VERIFIED, port.device, cut)

    spy = Spy(j)
    threading.Timer(0.05, land).start()
    expected, held = settled(
        paths,
        [flow],
        j.device_states,
        j.devices_in_flight,
        float("inf"),
        poll=NEVER_S,
        sleep=never,
        changes=spy,
    )
    assert held == {}
    assert expected == {flow.name: False}  # read once the cut was recorded
    assert spy.timeouts == 0

    # a failed flow's wait for its expectation to change: woken by the write that changes it
    threading.Timer(0.05, lambda: j.set_device(port.device, DeviceState(), "C")).start()
    now = wait_for_change(
        paths,
        [flow],
        {flow.name: False},
        j.device_states,
        NEVER_S,
        poll=NEVER_S,
        sleep=never,
        changes=spy,
    )
    assert now == {flow.name: True}
    assert spy.timeouts == 0

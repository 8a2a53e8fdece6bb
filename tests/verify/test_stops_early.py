"""A round of asking does not wait for what cannot change its verdict (#18): once a source has
seen a flow other than expected (a contradiction always wins: the flow is failed, it will be
asked again), a source still waiting on that flow (`StopsEarly`: the twin's probe of a flow
dropped silently runs to its full timeout) stops waiting for it and says UNKNOWN, naming the
source that failed it, never a verdict; the flows no source has failed are still waited for."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Mapping, Sequence

import pytest

from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.verify.check import Board, ask
from agent.verify.evidence import Evidence, Failed, FlowStatus, Seen, combine
from tests.conftest import EXAMPLE

SITE = "nantes-jules-verne"
LONG_S = 20.0  # what the slow source would wait without being told (never reached when told)


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def two(inv: Inventory) -> list[Flow]:
    return [f for f in inv.flows if SITE in (f.source.site, f.destination.site)][:2]


class Device:
    """Answers at once: the first flow closed, the others open."""

    name = "device:x"

    def check(self, _site: str, flows: Sequence[Flow], _exp: Mapping[str, bool]) -> list[Evidence]:
        return [
            Evidence(f.name, self.name, Seen.CLOSED if i == 0 else Seen.OPEN, "drop")
            for i, f in enumerate(flows)
        ]


class SilentDrop:
    """The twin's probe on a silent drop: every flow but the first answers open at once, the
    first only after LONG_S (a timeout: closed), unless `failed` says another source failed it
    first (woken by its file descriptor)."""

    name = "twin"

    def __init__(self) -> None:
        self.waited_whole = False

    def check(self, site: str, flows: Sequence[Flow], exp: Mapping[str, bool]) -> list[Evidence]:
        return self.check_until(site, flows, exp, None)

    def check_until(
        self, _site: str, flows: Sequence[Flow], _exp: Mapping[str, bool], failed: Failed | None
    ) -> list[Evidence]:
        out = [Evidence(f.name, self.name, Seen.OPEN) for f in flows[1:]]
        slow = flows[0].name
        if failed is None:
            threading.Event().wait(LONG_S)
            self.waited_whole = True
            return [Evidence(slow, self.name, Seen.CLOSED, "probe: timeout"), *out]
        fd = failed.watch()
        try:
            while (by := failed.failed_by(slow)) is None:
                if not select.select([fd], [], [], LONG_S)[0]:
                    self.waited_whole = True
                    return [Evidence(slow, self.name, Seen.CLOSED, "probe: timeout"), *out]
                os.read(fd, 4096)
        finally:
            failed.unwatch(fd)
        return [Evidence(slow, self.name, Seen.UNKNOWN, f"not waited for: failed by {by}"), *out]


def test_a_source_stops_waiting_for_a_flow_another_source_failed(inv: Inventory) -> None:
    flows = two(inv)
    expected = {f.name: True for f in flows}
    twin = SilentDrop()
    got = ask([Device(), twin], SITE, flows, expected, {})
    assert not twin.waited_whole
    mine = {e.flow: e for e in got if e.source == "twin"}
    assert mine[flows[0].name].seen is Seen.UNKNOWN
    assert "device:x" in mine[flows[0].name].detail
    assert mine[flows[1].name].seen is Seen.OPEN  # a flow not failed: still asked
    first, second = combine(expected, got)
    assert first.status is FlowStatus.FAILED and first.contradicted_by == ("device:x",)
    assert second.status is FlowStatus.PASSED
    assert second.confirmed_by == ("device:x", "twin")


def test_the_board_fails_only_contradicted_flows_and_wakes_its_watchers(inv: Inventory) -> None:
    a, b = two(inv)
    board = Board()
    fd = board.watch()
    board.post({a.name: True, b.name: False}, [Evidence(a.name, "s", Seen.UNKNOWN, "?")])
    board.post({a.name: True, b.name: False}, [Evidence(b.name, "s", Seen.CLOSED)])
    assert not select.select([fd], [], [], 0)[0]  # nothing failed: no wake-up
    assert board.failed_by(a.name) is None and board.failed_by(b.name) is None
    board.post({a.name: True, b.name: False}, [Evidence(a.name, "device:x", Seen.CLOSED)])
    assert select.select([fd], [], [], 0)[0]
    assert board.failed_by(a.name) == "device:x"
    board.post({a.name: True}, [Evidence(a.name, "twin", Seen.CLOSED)])
    assert board.failed_by(a.name) == "device:x"  # the first source that failed it is kept
    board.unwatch(fd)
    with pytest.raises(OSError):
        os.fstat(fd)

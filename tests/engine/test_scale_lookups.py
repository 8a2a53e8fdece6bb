"""The look-ups that keep a device step's and a plan's work independent of the group's size (#18)
answer as the walks they replaced: the journal's rows of one site's step and one device's state
and backup by key, the inventory's devices and flows by name (a copy with other sites or flows
sees its own), the planning state's record of what a step touched, a device state's sorted
rules. Real SQLite journal, the example inventory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.engine.journal import Journal, NewStep
from agent.engine.plan import _Tracked
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.status import StepStatus
from tests.conftest import EXAMPLE

CUT = DeviceState(rules=frozenset({NftRule("drop", iif="inet0", tag="cut")}))


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def _steps() -> list[NewStep]:
    return [
        NewStep(seq, f"site{seq % 3}", f"step{seq % 2}", f"dev{seq}", "nft", ("a",), ("b",),
                NORMAL, CUT)
        for seq in range(1, 13)
    ]  # fmt: skip


@pytest.mark.sqlite_only("reads the SQLite file's query plan for the steps_by_site index")
def test_a_sites_step_rows_and_a_devices_state_by_key(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    j.start_run("r1", "pb", "L3", ["site0", "site1", "site2"], "t", _steps())
    every = j.steps("r1")
    assert [r.seq for r in j.steps("r1", site="site1")] == [
        r.seq for r in every if r.site == "site1"
    ]
    assert j.steps("r1", site="site1", step="step0") == [
        r for r in every if r.site == "site1" and r.step == "step0"
    ]
    assert j.steps("r1", site="nowhere") == []
    assert j.step_row("r1", 5) == every[4]
    assert j.step_row("r1", 99) is None
    j.mark("r1", 4, StepStatus.STARTED)
    j.settle_step("r1", 4, StepStatus.VERIFIED, "dev4", CUT)
    assert j.device_state("dev4") == CUT == j.device_states()["dev4"]
    assert j.device_state("dev5") is None
    j.add_backup("r1", "dev4", "ab" * 32)
    assert j.backup("r1", "dev4") == "ab" * 32 == j.backups("r1")["dev4"]
    assert j.backup("r1", "dev5") is None
    j.close()
    db = sqlite3.connect(path)
    plan = " ".join(
        str(r)
        for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM steps WHERE run_id=? AND site=? AND step=?",
            ("r1", "site1", "step0"),
        )
    )
    db.close()
    assert "steps_by_site" in plan


def test_the_inventorys_lookups_answer_as_a_walk(inv: Inventory) -> None:
    for site, device in inv.devices():
        found = inv.find_device(device.name)
        assert found is not None
        assert found[0] is site and found[1] is device
    assert inv.find_device("no-such-device") is None
    for site in inv.sites:
        assert inv.site(site.name) is site
    for flow in inv.flows:
        assert inv.flow(flow.name) is flow
    # a copy with other sites and flows sees its own, not the cache of the original
    name = inv.devices()[-1][1].name
    fewer = inv.model_copy(update={"sites": inv.sites[:1], "flows": inv.flows[:1]})
    assert fewer.find_device(name) is None
    assert fewer.flow(inv.flows[-1].name) is None
    # the caches are not fields: equality and dumps are the fields'
    again = load(EXAMPLE)
    assert again == inv
    assert again.model_dump() == inv.model_dump()


def test_the_planning_state_knows_what_a_step_touched() -> None:
    state = _Tracked({"a": CUT, "b": CUT})
    state.take()
    state["a"] = NORMAL
    state["c"] = CUT
    state["a"] = CUT  # touched twice: its state before the step is kept
    state.pop("b")
    assert state.take() == {"a": CUT, "b": CUT, "c": NORMAL}
    assert state.take() == {}
    state.update({"d": CUT})
    state.setdefault("e", CUT)
    assert state.take() == {"d": NORMAL, "e": NORMAL}
    with pytest.raises(TypeError):
        state.clear()
    assert dict(state) == {"a": CUT, "c": CUT, "d": CUT, "e": CUT}


def test_a_states_sorted_rules_are_its_own() -> None:
    rules = [
        NftRule("drop", iif="wan0", tag="x"),
        NftRule("accept", iif="lan0", oif="wan0", saddr="198.18.0.1", tag="y"),
    ]
    state = DeviceState(rules=frozenset(rules))
    first = state.ordered_rules()
    assert first == sorted(rules, key=NftRule.sort_key)
    first.clear()  # a caller's list, not the cache
    assert state.ordered_rules() == sorted(rules, key=NftRule.sort_key)
    assert state == DeviceState(rules=frozenset(rules))
    assert hash(state) == hash(DeviceState(rules=frozenset(rules)))
    shut = DeviceState().shut("gi1", "cli")
    assert shut.down_interfaces == frozenset({"gi1"})
    assert shut.reopen("gi1").down_interfaces == frozenset()

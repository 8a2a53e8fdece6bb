"""Every shipped playbook on the twin of the second test group (tests/data/ght-vallee.yaml), with
real TCP: its devices answer on management interfaces not called mgmt0, its switches answer in
the inventory's IOS-style names (CLI and SNMP), and each playbook's flow matrix after the run is
the planned one, rolled back to the baseline.

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.drivers.pool import Pool
from agent.engine.execute import Executor
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.inventory import load
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.platforms.registry import one_shot
from agent.platforms.snmp.driver import SnmpDriver
from agent.playbook import load as load_playbook
from tests.conftest import ROOT, SECRETS, Twin, _collect_secrets
from tests.engine.test_any_group import RUNS, VALLEE
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]


@pytest.fixture(scope="module")
def vallee(twin_lock: None) -> Iterator[Twin]:
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail("a twin is already up on this machine: `cordon lab down` first")
    inv = load(VALLEE)
    state = build.up(inv)
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, state.lab), state=state, secrets=secrets)
    finally:
        build.down()


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


def test_devices_answer_in_the_inventory_names(vallee: Twin) -> None:
    """Every device answers on its own management interface; a switch's CLI shows `Gi1/0/1` and
    `GigabitEthernet1/0/24`, its SNMP agent finds them by ifName."""
    for _site, device in vallee.inv.devices():
        with one_shot(Target.of(vallee.inv, device.name)) as drv:
            facts = drv.facts()
        names = {i.name for i in facts.interfaces}
        assert device.management.interface in names or device.platform.value == "cisco_ios"
        if device.name == "cs-sw1":
            assert {"GigabitEthernet1/0/24", "GigabitEthernet1/0/6"} <= names
        if device.name == "hn-sw-b":
            assert {"Gi1/0/1", "Te1/1/1.23"} <= names
    snmp = SnmpDriver(Target.of(vallee.inv, "cs-sw1"))
    try:
        assert snmp.interface_index("GigabitEthernet1/0/6") > 0
    finally:
        snmp.close()


@pytest.fixture
def engine(vallee: Twin, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(vallee.inv, keepalive=None) as pool:
        ex = Executor(
            vallee.inv,
            journal,
            pool,
            actor="test",
            verifier=flows.engine_verifier(vallee.inv, vallee.bp, current=journal.device_states),
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run["run_id"])
    journal.close()


@pytest.mark.parametrize("name", ["isolate-site", "preventive-degraded", "segment", "segment-port"])
def test_shipped_playbook_on_the_other_twin(vallee: Twin, engine: Executor, name: str) -> None:
    sites, params = RUNS[name]
    original = matrix(vallee)
    assert all(original.values()), {k for k, v in original.items() if not v}
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", vallee.inv, params)
    predicted = {fi.flow: fi.after for fi in plan(pb, vallee.inv, sites=sites).impact}
    assert not all(predicted.values())
    report = engine.run(pb, sites)
    assert report.status == "done", report
    assert wait_for(lambda: matrix(vallee) == predicted, timeout=10)
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(vallee) == original, timeout=10)

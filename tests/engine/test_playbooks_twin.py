"""Each containment playbook shipped in playbooks/, on the Hospi Grand Ouest twin with real TCP:
the full flow matrix (every declared flow) before and after is exactly the plan's prediction, the
site states are right, must-survive flows never fail a probe (every 200 ms) while it runs,
running it a second time changes nothing, and its rollback restores the original matrix.
(reconnect and restore-normal: test_reconnect_twin.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.lab import flows
from agent.lab.probe import ContinuousProber
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import ROOT, Twin, matrix
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

HIT = "rennes-la-sagesse"
OTHERS = [
    "saint-nazaire-estuaire",
    "nantes-jules-verne",
    "saint-gilles-villa-notre-dame",
    "fontenay-sud-vendee",
    "bretagne-etab-1",
    "bretagne-etab-2",
    "bretagne-etab-3",
    "bretagne-etab-4",
]


@pytest.fixture
def engine(twin: Twin, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(
            twin.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(twin.inv, twin.bp)],
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def _guest_port(twin: Twin, site: str) -> tuple[str, str]:
    found = twin.inv.site(site)
    assert found is not None
    zone = found.zone("guest")
    assert zone is not None
    assert zone.ports
    return zone.ports[0].device, zone.ports[0].interface


CASES = [
    ("isolate-site", [HIT], {}, "isolated"),
    ("preventive-degraded", OTHERS, {}, "isolated"),
    ("segment", ["nantes-jules-verne"], {"zone": "guest"}, "isolated"),
    ("segment-port", ["saint-nazaire-estuaire"], {"port": "guest"}, "isolated"),
    # the same on a Juniper EX (its rollback reopens the port under a `commit confirmed`)
    ("segment-port", ["bretagne-etab-1"], {"port": "guest"}, "isolated"),
]
IDS = ["isolate-site", "preventive-degraded", "segment", "segment-port", "segment-port-junos"]


@pytest.mark.parametrize(("name", "sites", "params", "mode"), CASES, ids=IDS)
def test_playbook_on_the_twin(
    twin: Twin,
    engine: Executor,
    name: str,
    sites: list[str],
    params: dict[str, str],
    mode: str,
) -> None:
    if name == "segment-port":
        device, interface = _guest_port(twin, sites[0])
        params = {"device": device, "interface": interface}
    site_names = set(sites)
    assert site_names <= {s.name for s in twin.inv.sites}
    original = matrix(twin)
    assert all(original.values())
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", twin.inv, params)
    must = [(f, t) for f, t in flows.targets(twin.inv, twin.bp) if f.must_survive]
    with ContinuousProber([t for _, t in must], interval=0.2) as prober:
        report = engine.run(pb, sites)
        stats = prober.stop()
    assert report.status == "done", report
    assert report.flow_problems == []
    sent = sum(s.sent for s in stats.values())
    assert sent >= len(must)  # every must-survive flow probed at least once during the run
    assert sum(s.failed for s in stats.values()) == 0, {k: s for k, s in stats.items() if s.failed}
    assert report.plan is not None
    predicted = {fi.flow: fi.after for fi in report.plan.impact}
    assert not all(predicted.values())  # the playbook cuts something
    assert wait_for(lambda: matrix(twin) == predicted, timeout=10)
    states = engine.journal.sites()
    assert {states[s].mode for s in sites} == {mode}
    assert {states[s].level for s in sites} == {pb.level}
    # a second time: nothing to change, nothing sent
    again = engine.run(pb, sites)
    assert again.status == "done"
    assert again.outcomes == []
    assert matrix(twin) == predicted
    # back to the original matrix
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(twin) == original, timeout=10)
    assert {engine.journal.sites()[s].mode for s in sites} == {"normal"}

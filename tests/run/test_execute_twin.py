"""The engine on the twin: a run changes the devices through the drivers, each step verified by
read-back, and the flow matrix is then exactly the plan's; re-running changes nothing; rollback
restores every flow (twice is harmless); a second run on a busy site is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import LockError
from agent.lab import flows
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.status import RunStatus
from tests.conftest import ROOT, Twin
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


@pytest.fixture
def engine(twin: Twin, tmp_path: Path) -> Iterator[Executor]:
    """An executor on the twin; whatever a test does, every run it made is rolled back after,
    so a failure cannot leave the shared twin isolated for the next test."""
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(twin.inv, journal, pool, actor="test")
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_run_verify_rerun_rollback(twin: Twin, engine: Executor) -> None:
    """preventive-degraded on three sites: flows as planned, idempotent, rolled back exactly."""
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
    sites = ["nantes-jules-verne", "fontenay-sud-vendee", "bretagne-etab-1"]
    report = engine.run(pb, sites)
    try:
        assert report.status == "done", report.outcomes
        assert report.outcomes
        assert {o.status for o in report.outcomes} == {"verified"}
        predicted = {fi.flow: fi.after for fi in report.plan.impact}  # type: ignore[union-attr]
        assert sum(not v for v in predicted.values()) >= 15
        assert wait_for(lambda: matrix(twin) == predicted, timeout=10)
        states = engine.journal.sites()
        assert {states[s].mode for s in sites} == {"isolated"}
        assert engine.plan(pb, sites).empty  # re-planning the isolated sites: nothing to do
        again = engine.run(pb, sites)
        assert again.status == "done"
        assert again.outcomes == []
    finally:
        back = engine.rollback(report.run_id)
    assert back.status == "rolled_back"
    assert wait_for(lambda: all(matrix(twin).values()), timeout=15)
    assert engine.rollback(report.run_id).status == "nothing_to_roll_back"
    assert {engine.journal.sites()[s].mode for s in sites} == {"normal"}


def test_busy_site_refused(twin: Twin, engine: Executor) -> None:
    """A second run on a site held by another run is refused, naming the holder; nothing runs."""
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
    engine.journal.start_run("holder-run", "other", "L1", ["saint-gilles-villa-notre-dame"], "x")
    try:
        with pytest.raises(LockError, match="holder-run"):
            engine.run(pb, ["saint-gilles-villa-notre-dame"])
    finally:
        engine.journal.finish_run("holder-run", RunStatus.DONE)
    assert all(matrix(twin).values())

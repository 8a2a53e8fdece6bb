"""An engine run on the twin produces an audit report whose timeline matches what happened:
every verified device step appears, in order, under the run's id, and the chain is intact."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from agent import audit
from agent.audit import report as audit_report
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import ROOT, Twin

pytestmark = pytest.mark.twin


def test_run_report_matches_the_run(twin: Twin, tmp_path: Path) -> None:
    """The report of a run lists its start, each device change and step, and its end, in order."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
        with Pool(twin.inv, keepalive=None) as pool:
            ex = Executor(twin.inv, journal, pool, actor="auditor-test")
            run = ex.run(pb, ["nantes-jules-verne", "bretagne-etab-3"])
            ex.rollback(run.run_id)
        audit.seal()
        rep = audit_report.build(log_dir, run=run.run_id, integrity=audit.verify(log_dir))
    finally:
        journal.close()
        audit.configure(Path(os.environ["CORDON_LOG_DIR"]))
    assert run.status == "done"
    assert rep.integrity_ok, rep.integrity
    rows = rep.rows
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert {r.run_id for r in rows} == {run.run_id}
    events = Counter(r.event for r in rows)
    assert events["run.started"] == 1
    assert events["run.finished"] == 1
    # every device step the engine verified is in the timeline, and nothing else was changed
    verified = [(o.device, o.step) for o in run.outcomes if o.status == "verified"]
    assert len(verified) == len(run.outcomes) > 0
    succeeded = [(r.device, r.detail) for r in rows if r.event == "step.succeeded"]
    assert len(succeeded) == len(verified)
    assert {d for d, _ in succeeded} == {d for d, _ in verified}
    changed = {r.device for r in rows if r.event == "device.change" and r.outcome == "ok"}
    assert changed == {d for d, _ in verified}
    # the rollback is part of the same run's story, after its end
    finished_at = next(r.seq for r in rows if r.event == "run.finished")
    assert any(r.event == "run.rollback" and r.seq > finished_at for r in rows)
    assert all(r.actor == "auditor-test" for r in rows if r.event.startswith(("run.", "step.")))

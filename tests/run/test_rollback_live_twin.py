"""`cordon rollback RUN` while `cordon run --local` still drives RUN from another process: the run
is stopped before its next step, then rolled back; the reports (rollback exit 0, the run's own
exit 15 "rolled_back") match the devices: every flow open again, no site held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.engine.journal import Journal
from tests.conftest import EXAMPLE, ROOT, Twin
from tests.lab.twinops import wait_for
from tests.run.test_crash_twin import SITES, cordon, matrix, statuses

pytestmark = pytest.mark.twin


def test_rollback_stops_a_live_run_first(twin: Twin, tmp_path: Path) -> None:
    """The run sends nothing after the rollback; every flow is open at the end."""
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(EXAMPLE),
        "CORDON_STEP_PAUSE": "0.7",
    }
    db = tmp_path / "journal.sqlite"
    args = [sys.executable, "-m", "agent", "run", "preventive-degraded", "--yes", "--local"]
    for site in SITES:
        args += ["--sites", site]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert wait_for(lambda: db.exists() and "verified" in statuses(db), timeout=60)
        journal = Journal(db)
        (run,) = journal.runs()
        journal.close()
        back = cordon(env, "rollback", run.run_id, "--local")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert back.returncode == 0, back.stdout + back.stderr
    assert "rolled back" in back.stdout
    assert proc.returncode == 15, out  # the run's own report: rolled_back
    journal = Journal(db)
    assert journal.run(run.run_id).status == "rolled_back"
    # nothing was sent after the rollback: every step is undone or was never sent
    assert {r.status for r in journal.steps(run.run_id)} <= {"undone", "pending"}
    assert journal.locks() == {}
    journal.close()
    assert wait_for(lambda: all(matrix(twin).values()), timeout=15)
    # a second rollback has nothing left to do, and the devices agree
    again = cordon(env, "rollback", run.run_id, "--local")
    assert again.returncode == 0, again.stdout + again.stderr

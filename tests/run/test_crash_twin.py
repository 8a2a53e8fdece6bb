"""A run killed with SIGKILL mid-way leaves a journal that says exactly what was in flight;
`cordon resume` settles every device by reading it and finishes the run, and the flows end as
planned; `cordon rollback` then restores the whole matrix."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.engine.journal import Journal
from agent.lab import flows
from tests.conftest import EXAMPLE, ROOT, Twin
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

SITES = ["nantes-jules-verne", "fontenay-sud-vendee", "bretagne-etab-2", "bretagne-etab-4"]


def cordon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def statuses(db: Path) -> list[str]:
    """The steps' statuses; none while the run's process has made the file but not its schema."""
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT status FROM steps ORDER BY seq")]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


def test_sigkill_then_resume(twin: Twin, tmp_path: Path) -> None:
    """Kill -9 during a run; resume leaves every device verified and the flows as planned."""
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(EXAMPLE),
        "CORDON_STEP_PAUSE": "0.7",
    }
    db = tmp_path / "journal.sqlite"
    args = [sys.executable, "-m", "agent", "run", "preventive-degraded", "--yes", "--json"]
    args.append("--local")  # no daemon: the run is driven by this very process
    for site in SITES:
        args += ["--sites", site]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: db.exists() and "verified" in statuses(db), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = Journal(db)
    (run,) = journal.runs()
    journal.close()
    try:
        settle_and_check(twin, env, db, run.run_id)
    finally:
        back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: all(matrix(twin).values()), timeout=15)


def settle_and_check(twin: Twin, env: dict[str, str], db: Path, run_id: str) -> None:
    assert "pending" in statuses(db)  # the run really was cut short
    journal = Journal(db)
    run = journal.run(run_id)
    assert run.status == "running"
    assert set(journal.locks()) == set(SITES)  # its sites stay locked until it is settled
    journal.close()

    done = cordon(env, "resume", run.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    journal = Journal(db)
    assert journal.run(run.run_id).status == "done"
    assert {r.status for r in journal.steps(run.run_id)} == {"verified"}
    assert journal.locks() == {}
    journal.close()
    plan = json.loads(
        cordon(
            env,
            "plan",
            "preventive-degraded",
            "--json",
            "--local",
            *[x for s in SITES for x in ("--sites", s)],
        ).stdout
    )
    # the plan is made from the journal's recorded state: nothing is left to do
    assert all(not step["changes"] for step in plan["steps"])
    # and the twin shows exactly the recorded state's flow matrix
    expected = {fi["flow"]: fi["change"] != "stays cut" for fi in plan["impact"]}
    assert sum(not ok for ok in expected.values()) >= 20
    assert wait_for(lambda: matrix(twin) == expected, timeout=10)

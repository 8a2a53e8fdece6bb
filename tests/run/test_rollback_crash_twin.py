"""`cordon rollback` of a finished run, SIGKILLed while a step is `undoing`: `cordon resume` must
not answer "already done" and leave it so. It reads each device, journals the state the device
shows (undone: reopened; still cut: verified), releases the sites and sets their mode from what
the devices hold. The firewalls' own revert timer is short (2 s) and the test waits past it
before resuming: the firewall then holds for good what the kill left (reopened or still cut), and
a journal saying "cut" would hide a reopened firewall."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.engine.journal import Journal
from agent.network.state import NORMAL
from agent.platforms.registry import one_shot, rules
from agent.status import SiteMode
from tests.conftest import EXAMPLE, ROOT, Twin
from tests.lab.twinops import wait_for
from tests.run.test_crash_twin import cordon, matrix, statuses

pytestmark = pytest.mark.twin

SITES = ["bretagne-etab-2", "bretagne-etab-3"]  # Linux firewalls (nftables): bz2-fw1, bz3-fw1
DEADMAN_S = 2


def test_resume_settles_a_rollback_killed_mid_undo(twin: Twin, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(EXAMPLE),
        "CORDON_DEADMAN_S": str(DEADMAN_S),
    }
    db = tmp_path / "journal.sqlite"
    sites = [x for s in SITES for x in ("--sites", s)]
    cut = cordon(env, "run", "preventive-degraded", "--yes", "--json", "--local", *sites)
    assert cut.returncode == 0, cut.stdout + cut.stderr
    journal = Journal(db)
    (run,) = journal.runs()
    rows = journal.steps(run.run_id)
    journal.close()
    assert run.status == "done" and {r.status for r in rows} == {"verified"}
    devices = sorted({r.device for r in rows})
    assert devices == ["bz2-fw1", "bz3-fw1"]

    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while "undoing" not in statuses(db):  # a tight watch: the kill must land mid-undo
            assert time.monotonic() < deadline and proc.poll() is None, "never undoing"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: False, timeout=DEADMAN_S + 3)  # past any revert the kill left armed
    journal = Journal(db)
    assert "undoing" in statuses(db), "the rollback finished before it was killed"
    assert journal.run(run.run_id).status == "done"
    assert set(journal.locks()) == set(SITES)  # the bug's state: held, reconnecting
    journal.close()

    done = cordon(env, "resume", run.run_id)
    assert done.returncode == 0, done.stdout + done.stderr  # done or rolled back: both 0
    assert "already" not in done.stdout, done.stdout
    journal = Journal(db)
    try:
        rows = journal.steps(run.run_id)
        final = journal.run(run.run_id).status
        recorded = journal.device_states()
        assert {r.status for r in rows} <= {"verified", "undone"}, [r.status for r in rows]
        assert journal.locks() == {}
        modes = journal.sites()
        # the run's status follows its steps: rolled back only when nothing is left changed
        all_undone = all(r.status == "undone" for r in rows)
        assert final == ("rolled_back" if all_undone else "done")
    finally:
        journal.close()
    nft = rules(rows[0].method)
    assert nft is not None and {r.method for r in rows} == {rows[0].method}
    for device, site in sorted({(r.device, r.site) for r in rows}):
        with one_shot(Target.of(twin.inv, device)) as drv:
            shown = nft.comments_in(drv.facts().ours)
        state = recorded.get(device, NORMAL)
        # the journal records exactly the rules the firewall holds (read back), and the site's
        # mode says whether it holds a cut
        assert shown == nft.comments(state), device
        assert modes[site].mode == (SiteMode.ISOLATED if state != NORMAL else SiteMode.NORMAL)

    back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: all(matrix(twin).values()), timeout=15)

"""The IOS-XE switch's own dead-man under a real run: the WAN is cut by ACLs (preventive-degraded),
then `cordon rollback` reopens it under the switch's revert timer and is SIGKILLed before it
confirms; the switch rolls back to the cut by itself (real flows), and `cordon resume` settles the
run from what the switch shows. A final rollback, left to finish, reopens the WAN for good."""

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
from agent.platforms.cisco_iosxe.parse import rule_comments_in
from agent.platforms.cisco_iosxe.render import acl_comments
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin
from tests.lab.twinops import wait_for
from tests.platforms.cisco_iosxe.conftest import MINUTE_S, PAIR, matrix

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's


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


def armed(log: Path, before: int) -> bool:
    return log.exists() and log.read_text().count("revert timer armed") > before


def test_sigkill_before_confirm_reverts_on_the_switch(pair: Twin, tmp_path: Path) -> None:
    env = {**os.environ, "CORDON_STATE_DIR": str(tmp_path), "CORDON_INVENTORY": str(PAIR)}
    cut = cordon(env, "run", "preventive-degraded", "--yes", "--json", "--local", "-s", "tx-site")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert wait_for(lambda: not matrix(pair)["pc-to-ehr"], timeout=5)
    assert matrix(pair)["central-to-ehr"]  # must survive through the cut WAN
    journal = Journal(tmp_path / "journal.sqlite")
    (run,) = journal.runs()
    journal.close()
    log = pair.state.dir / "site-sw" / "iosxe-device.log"
    before = log.read_text().count("revert timer armed") if log.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not armed(log, before):  # a tight watch: the kill must land before the confirm
            assert time.monotonic() < deadline and proc.poll() is None, "never armed"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)  # between arming and confirming: the apply is running
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the switch's own timer: back to the cut with nobody connected
    assert "rollback disarmed" not in log.read_text().split("revert timer armed")[-1], (
        "the agent confirmed before it was killed: the test's kill came too late"
    )
    assert wait_for(lambda: "rolling back" in log.read_text(), timeout=4 * MINUTE_S), (
        log.read_text()
    )
    assert wait_for(lambda: not matrix(pair)["pc-to-ehr"], timeout=5)
    assert matrix(pair)["central-to-ehr"]
    done = cordon(env, "resume", run.run_id)
    assert done.returncode in (0, 4, 15, 19), done.stdout + done.stderr
    journal = Journal(tmp_path / "journal.sqlite")
    recorded = journal.device_states().get("site-sw")
    journal.close()
    with one_shot(Target.of(pair.inv, "site-sw")) as drv:
        shown = drv.facts()
    assert recorded is not None and recorded.rules  # the journal records the cut the switch shows
    assert rule_comments_in(shown.ours) == acl_comments(recorded)
    back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: all(matrix(pair).values()), timeout=15)

"""AOS-CX's `checkpoint auto` under a real run: `cordon run` shuts port 1/1/3 (the file server),
then `cordon rollback` reopens it under the switch's auto checkpoint and is SIGKILLed before it
confirms; the switch restores the checkpoint by itself (the kernel port down again, the file
server's flow closed), and `cordon resume` records the state the switch shows. A second rollback,
left to finish, confirms in time: past the checkpoint's minute the port is still up.
AOS-CX counts its timer in whole minutes (1 at least): the twin's minute is 3 s (conftest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.engine.journal import Journal
from agent.lab import netns
from agent.platforms.aruba_aoscx import render
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin, matrix
from tests.lab.twinops import wait_for
from tests.platforms.aruba_aoscx.conftest import INVENTORY, MINUTE_S

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's

SW = "sw1"
PORT = "1/1/3"
SHUT_FILES = """
name: shut-files
description: Shut the file server's port on the AOS-CX switch
level: L4
targets:
  kinds: [core]
limits:
  max_sites: 1
on_failure: rollback
steps:
  - name: shut
    action: shut_port
    device: sw1
    interface: 1/1/3
"""


def cordon(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def port_up(twin: Twin) -> bool:
    """The kernel's admin state of the port in the switch's namespace (real link state)."""
    kernel = twin.bp.ifnames[SW][PORT]
    out = netns.run(["ip", "-j", "link", "show", kernel], netns=twin.bp.device_ns[SW]).stdout
    return "UP" in json.loads(out)[0]["flags"]


def restorations(twin: Twin) -> int:
    out = twin.state.dir / SW / "aoscx-api.out"
    return out.read_text(errors="replace").count("Restoration successful") if out.exists() else 0


def test_port_reopened_under_checkpoint_reverts_when_the_agent_dies(
    aoscx: Twin, tmp_path: Path
) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "shut-files.yaml").write_text(SHUT_FILES, encoding="utf-8")
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(INVENTORY),
        "CORDON_ROLES": str(ROOT / "inventory" / "roles.yaml"),
        "PYTHONPATH": str(ROOT),
    }
    try:
        cut = cordon(
            env, tmp_path, "run", "shut-files", "--yes", "--json", "--local", "-s", "aoscx-site"
        )
        assert cut.returncode == 0, cut.stdout + cut.stderr
        assert not port_up(aoscx)
        assert wait_for(lambda: not matrix(aoscx)["icu-files"], timeout=10)
        assert matrix(aoscx)["icu-central"]
        journal = Journal(tmp_path / "journal.sqlite")
        (run,) = journal.runs()
        journal.close()
        before = restorations(aoscx)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_up(aoscx):  # reopened under the armed checkpoint: kill before confirm
                assert time.monotonic() < deadline and proc.poll() is None, "never reopened"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        # the switch's own timer restores the checkpoint with nobody connected (a confirm would
        # have cancelled it: this wait fails then)
        assert wait_for(lambda: restorations(aoscx) > before, timeout=6 * MINUTE_S)
        assert wait_for(lambda: not port_up(aoscx), timeout=5)
        assert wait_for(lambda: not matrix(aoscx)["icu-files"], timeout=10)
        assert matrix(aoscx)["icu-central"]
        done = cordon(env, tmp_path, "resume", run.run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        journal = Journal(tmp_path / "journal.sqlite")
        recorded = journal.device_states().get(SW)
        assert journal.locks() == {}
        journal.close()
        assert recorded is not None and PORT in recorded.down_interfaces  # the switch's truth
        with one_shot(Target.of(aoscx.inv, SW)) as drv:
            assert {i.name: i.admin_up for i in drv.facts().interfaces}[PORT] is False
        back = cordon(env, tmp_path, "rollback", run.run_id, "--local")
        assert back.returncode == 0, back.stdout + back.stderr
        wait_for(lambda: False, timeout=2.5 * MINUTE_S)  # past the checkpoint's minute
        assert restorations(aoscx) == before + 1  # confirmed in time: no second restoration
        assert port_up(aoscx)
        assert wait_for(lambda: all(matrix(aoscx).values()), timeout=15)
    finally:  # the port up again whatever happened, for the next test
        with one_shot(Target.of(aoscx.inv, SW)) as drv:
            drv.apply(ChangeSet(tuple(render.shut_lines([PORT], down=False)), action="test.up"))

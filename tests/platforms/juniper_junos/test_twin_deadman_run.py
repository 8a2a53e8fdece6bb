"""Junos's `commit confirmed` under a real run, for a port (`reverts_config`): `cordon run` disables
irb.130 (the office's gateway), then `cordon rollback` re-enables it as a `commit confirmed` and is
SIGKILLed before it confirms; the device rolls the whole commit back by itself (the unit disabled
again, the office's flows closed), and `cordon resume` records the state the device shows. A
second rollback, left to finish, confirms in time: past the deadline the unit is still up."""

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
from agent.platforms.juniper_junos.render import disable_lines
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin
from tests.lab.twinops import wait_for
from tests.platforms.juniper_junos.conftest import DATA, MINUTE_S, matrix

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's

EX = "rv-ex1"
UNIT = "irb.130"
SHUT_OFFICE = """
name: shut-office
description: Disable the office's gateway unit on the Junos EX
level: L4
targets:
  kinds: [establishment]
limits:
  max_sites: 1
on_failure: rollback
steps:
  - name: shut
    action: shut_port
    device: rv-ex1
    interface: irb.130
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


def device_state(twin: Twin) -> dict[str, object]:
    """The twin device's journal (its committed configuration, history, pending confirm)."""
    path = twin.state.dir / EX / "junos-state.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):  # being replaced right now, or not yet written
        return {}


def rollbacks(twin: Twin) -> int:
    out = twin.state.dir / EX / "junosd.out"
    return out.read_text().count("commit confirmed rolled back") if out.exists() else 0


def unit_up(twin: Twin) -> bool:
    with one_shot(Target.of(twin.inv, EX)) as drv:
        return {i.name: i.admin_up for i in drv.facts().interfaces}[UNIT]


def test_unit_reenabled_under_commit_confirmed_reverts_when_the_agent_dies(
    junos: Twin, tmp_path: Path
) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "shut-office.yaml").write_text(SHUT_OFFICE, encoding="utf-8")
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(DATA),
        "CORDON_ROLES": str(ROOT / "inventory" / "roles.yaml"),
        "PYTHONPATH": str(ROOT),
    }
    try:
        cut = cordon(
            env, tmp_path, "run", "shut-office", "--yes", "--json", "--local", "-s", "rivage"
        )
        assert cut.returncode == 0, cut.stdout + cut.stderr
        assert not unit_up(junos)
        assert wait_for(lambda: not matrix(junos)["rv-bureau-centrale"], timeout=5)
        assert matrix(junos)["rv-monitoring"]
        journal = Journal(tmp_path / "journal.sqlite")
        (run,) = journal.runs()
        journal.close()
        before = rollbacks(junos)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not device_state(junos).get("pending"):  # committed, not yet confirmed
                assert time.monotonic() < deadline and proc.poll() is None, "never armed"
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        newest = (device_state(junos).get("history") or [{}])[0]  # type: ignore[index]
        assert str(newest.get("comment", "")).startswith("commit confirmed, rollback in"), (
            f"the agent confirmed before it was killed: {newest}"
        )
        # the device's own timer: the whole commit rolled back with nobody connected
        assert wait_for(lambda: rollbacks(junos) > before, timeout=4 * MINUTE_S)
        assert not unit_up(junos)
        assert wait_for(lambda: not matrix(junos)["rv-bureau-centrale"], timeout=5)
        done = cordon(env, tmp_path, "resume", run.run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        journal = Journal(tmp_path / "journal.sqlite")
        recorded = journal.device_states().get(EX)
        assert journal.locks() == {}
        journal.close()
        assert recorded is not None and UNIT in recorded.down_interfaces  # the device's truth
        back = cordon(env, tmp_path, "rollback", run.run_id, "--local")
        assert back.returncode == 0, back.stdout + back.stderr
        assert device_state(junos).get("pending") is None  # confirmed in time
        wait_for(lambda: False, timeout=2 * MINUTE_S)  # past the commit's deadline
        assert rollbacks(junos) == before + 1
        assert unit_up(junos)
        assert wait_for(lambda: all(matrix(junos).values()), timeout=15)
    finally:  # the unit enabled again whatever happened, for the next test
        with one_shot(Target.of(junos.inv, EX)) as drv:
            drv.apply(ChangeSet(tuple(disable_lines([UNIT], down=False)), action="test.reopen"))

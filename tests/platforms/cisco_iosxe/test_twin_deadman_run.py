"""The IOS-XE switch's own dead-man under a real run: the WAN is cut by ACLs (preventive-degraded),
then `cordon rollback` reopens it under the switch's revert timer and is SIGKILLed before it
confirms; the switch rolls back to the cut by itself (real flows), and `cordon resume` settles the
run from what the switch shows. A final rollback, left to finish, reopens the WAN for good."""

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
from agent.platforms.cisco_iosxe.parse import rule_comments_in
from agent.platforms.cisco_iosxe.render import acl_comments, shut_lines
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin, matrix
from tests.lab.twinops import wait_for
from tests.platforms.cisco_iosxe.conftest import MINUTE_S, PAIR

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's


def cordon(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
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
    assert done.returncode == 0, done.stdout + done.stderr  # settled back to the cut: done
    assert "already" not in done.stdout, done.stdout  # the step left undoing was settled
    journal = Journal(tmp_path / "journal.sqlite")
    recorded = journal.device_states().get("site-sw")
    assert {r.status for r in journal.steps(run.run_id)} == {"verified"}
    assert journal.run(run.run_id).status == "done" and journal.locks() == {}
    journal.close()
    with one_shot(Target.of(pair.inv, "site-sw")) as drv:
        shown = drv.facts()
    assert recorded is not None and recorded.rules  # the journal records the cut the switch shows
    assert rule_comments_in(shown.ours) == acl_comments(recorded)
    back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: all(matrix(pair).values()), timeout=15)


SHUT_PC = """
name: shut-pc
description: Shut the PC's switch port (segment-port on the IOS-XE pair)
level: L4
targets:
  kinds: [establishment]
limits:
  max_sites: 1
allow_cut: [pc-to-central]
on_failure: rollback
steps:
  - name: shut
    action: shut_port
    device: site-sw
    interface: Gi1/0/5
"""


def link_up(twin: Twin, device: str, interface: str) -> bool:
    """The kernel's admin state of `interface` in the device's namespace (real link state)."""
    kernel = twin.bp.ifnames[device][interface]
    out = netns.run(["ip", "-j", "link", "show", kernel], netns=twin.bp.device_ns[device]).stdout
    return "UP" in json.loads(out)[0]["flags"]


def test_port_reopened_by_cli_is_armed_and_reverts_when_the_agent_dies(
    pair: Twin, tmp_path: Path
) -> None:
    """A port shut by `segment-port` (cli) is reopened by `cordon rollback` under the switch's own
    revert timer: the agent is SIGKILLed before it confirms, the switch shuts the port again by
    itself (kernel link down, the PC's flow closed), and `cordon resume` records the port shut
    as the switch shows it. A second rollback, left to finish, confirms in time: past the timer
    the port is still open."""
    # segment-port with the PC's must-survive flow cut knowingly: a playbook of the test's own,
    # found in ./playbooks of the directory cordon runs in
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "shut-pc.yaml").write_text(SHUT_PC, encoding="utf-8")
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(PAIR),
        "CORDON_ROLES": str(ROOT / "inventory" / "roles.yaml"),
        "PYTHONPATH": str(ROOT),
    }
    cut = cordon(env, "run", "shut-pc", "--yes", "--json", "--local", "-s", "tx-site", cwd=tmp_path)
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert not link_up(pair, "site-sw", "Gi1/0/5")
    assert wait_for(lambda: not matrix(pair)["pc-to-ehr"], timeout=5)
    journal = Journal(tmp_path / "journal.sqlite")
    (run,) = journal.runs()
    journal.close()
    log = pair.state.dir / "site-sw" / "iosxe-device.log"
    before = log.read_text().count("revert timer armed") if log.exists() else 0
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not armed(log, before):  # `no shutdown` must come under the switch's timer
                assert time.monotonic() < deadline and proc.poll() is None, "never armed"
                time.sleep(0.001)
            while not link_up(pair, "site-sw", "Gi1/0/5"):  # reopened: kill before the confirm
                assert time.monotonic() < deadline and proc.poll() is None, "never reopened"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "rollback disarmed" not in log.read_text().split("revert timer armed")[-1], (
            "the agent confirmed before it was killed: the test's kill came too late"
        )
        assert wait_for(
            lambda: "rolling back" in log.read_text().split("revert timer armed")[-1],
            timeout=4 * MINUTE_S,
        )
        assert wait_for(lambda: not link_up(pair, "site-sw", "Gi1/0/5"), timeout=5)
        assert wait_for(lambda: not matrix(pair)["pc-to-ehr"], timeout=5)
        done = cordon(env, "resume", run.run_id, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr  # settled back to the cut: done
        journal = Journal(tmp_path / "journal.sqlite")
        recorded = journal.device_states().get("site-sw")
        journal.close()
        assert recorded is not None and "Gi1/0/5" in recorded.down_interfaces  # the truth
        with one_shot(Target.of(pair.inv, "site-sw")) as drv:
            shown = {i.name: i.admin_up for i in drv.facts().interfaces}
        assert shown["Gi1/0/5"] is False
        armed_before = log.read_text().count("revert timer armed")
        back = cordon(env, "rollback", run.run_id, "--local", cwd=tmp_path)
        assert back.returncode == 0, back.stdout + back.stderr
        assert log.read_text().count("revert timer armed") == armed_before + 1
        assert "rollback disarmed" in log.read_text().split("revert timer armed")[-1]
        wait_for(lambda: False, timeout=2 * MINUTE_S)  # past the switch's deadline
        assert "rolling back" not in log.read_text().split("revert timer armed")[-1]
        assert link_up(pair, "site-sw", "Gi1/0/5")
        assert wait_for(lambda: all(matrix(pair).values()), timeout=15)
    finally:  # the port open again whatever happened, for the next test
        with one_shot(Target.of(pair.inv, "site-sw")) as drv:
            drv.apply(ChangeSet(tuple(shut_lines(["Gi1/0/5"], down=False)), action="test.reopen"))

"""juniper_srx under real runs (`cordon run`, `rollback`, `resume` as processes) on the SRX group
of data/srx-site.yaml: isolate-site and preventive-degraded cut real TCP flows by security
policies while the must-survive ones (across the zone block, across the cut WAN) keep working,
and rollback reopens everything; Junos's `commit confirmed` reverts a security policy change by
itself when the agent is SIGKILLed before it confirms, `cordon resume` records the state the
device shows, and a rollback left to finish confirms in time (past the deadline, still open)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.drivers.base import Target
from agent.engine.journal import Journal
from agent.platforms.juniper_junos import srx_parse, srx_render
from agent.platforms.juniper_junos.srx_driver import SrxDriver
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin
from tests.lab.twinops import wait_for
from tests.platforms.juniper_junos.conftest import MINUTE_S, SRX_DATA, matrix

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

SRX = "srx1"
SITE = "srx-clinique"
ALL_OPEN = dict.fromkeys(("scope-hl7", "scope-ehr", "srv-scope-web", "pc-ehr", "pc-web"), True)


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


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CORDON_STATE_DIR": str(tmp_path), "CORDON_INVENTORY": str(SRX_DATA)}


def device_state(twin: Twin) -> dict[str, object]:
    path = twin.state.dir / SRX / "junos-state.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):  # being replaced right now
        return {}


def rollbacks(twin: Twin) -> int:
    out = twin.state.dir / SRX / "junosd.out"
    return out.read_text().count("commit confirmed rolled back") if out.exists() else 0


def shown_and_recorded(twin: Twin, tmp_path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(Cordon's objects the SRX shows, those the journal's recorded state renders to)."""
    journal = Journal(tmp_path / "journal.sqlite")
    recorded = journal.device_states().get(SRX)
    journal.close()
    with one_shot(Target.of(twin.inv, SRX)) as d:
        shown = srx_parse.names_in(d.facts().ours)
    assert recorded is not None
    return shown, srx_render.comments(recorded)


def test_isolate_site_cuts_by_policies_and_rollback_restores(srx: Twin, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert matrix(srx) == ALL_OPEN
    done = cordon(env, "run", "isolate-site", "--yes", "--json", "--local", "-s", SITE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_for(
        lambda: (
            matrix(srx) == {**ALL_OPEN, "srv-scope-web": False, "pc-ehr": False, "pc-web": False}
        ),
        timeout=15,
    ), matrix(srx)
    shown, recorded = shown_and_recorded(srx, tmp_path)
    assert shown == recorded and shown  # the journal records what the SRX holds
    with one_shot(Target.of(srx.inv, SRX)) as d:
        assert isinstance(d, SrxDriver)
        assert srx_parse.misplaced(d.committed()) == []
    journal = Journal(tmp_path / "journal.sqlite")
    (run,) = journal.runs()
    journal.close()
    back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=15)
    with one_shot(Target.of(srx.inv, SRX)) as d:
        assert d.facts().ours == ""  # every CORDON- object gone


def test_sigkill_before_confirm_reverts_on_the_srx_and_resume_records_it(
    srx: Twin, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    cut = cordon(env, "run", "preventive-degraded", "--yes", "--json", "--local", "-s", SITE)
    assert cut.returncode == 0, cut.stdout + cut.stderr
    degraded = {**ALL_OPEN, "pc-ehr": False, "pc-web": False}  # scope-ehr kept through the WAN
    assert wait_for(lambda: matrix(srx) == degraded, timeout=15), matrix(srx)
    journal = Journal(tmp_path / "journal.sqlite")
    (run,) = journal.runs()
    journal.close()
    before = rollbacks(srx)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "rollback", run.run_id, "--local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not device_state(srx).get("pending"):  # a commit confirmed, not yet confirmed
            assert time.monotonic() < deadline and proc.poll() is None, "never armed"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    newest = (device_state(srx).get("history") or [{}])[0]  # type: ignore[index]
    assert str(newest.get("comment", "")).startswith("commit confirmed, rollback in"), (
        f"the agent confirmed before it was killed: {newest}"
    )
    # the SRX's own timer: the policy change rolled back with nobody connected
    assert wait_for(lambda: rollbacks(srx) > before, timeout=4 * MINUTE_S)
    assert wait_for(lambda: matrix(srx) == degraded, timeout=15), matrix(srx)
    done = cordon(env, "resume", run.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    shown, recorded = shown_and_recorded(srx, tmp_path)
    assert shown == recorded and shown  # the journal records the cut the SRX shows
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.locks() == {}
    journal.close()
    back = cordon(env, "rollback", run.run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert device_state(srx).get("pending") is None  # confirmed in time
    wait_for(lambda: False, timeout=2 * MINUTE_S)  # past the commit's deadline
    assert rollbacks(srx) == before + 1
    assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=15), matrix(srx)

"""On the twin: a run through the real executor saves each changed device's configuration
before (`config.before`) and after (`config.after`) as evidence, and `cordon audit report` shows
the firewall's diff: a Cordon rule line that the after snapshot has and the before one has not,
under the two sha256s the chain's records name."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.audit import evidence
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import ROOT, Twin

pytestmark = pytest.mark.twin

SITE, FIREWALL = "bretagne-etab-3", "bz3-fw1"


def records(log_dir: Path, event: str) -> list[dict[str, Any]]:
    lines = [ln for p in sorted(log_dir.glob("audit-*.jsonl")) for ln in p.read_text().splitlines()]
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def report_text(capsys: pytest.CaptureFixture[str], log_dir: Path, run_id: str) -> str:
    """`cordon audit report --run RUN --log-dir DIR`, as a person types it."""
    from agent.cli import main  # noqa: PLC0415

    argv, sys.argv = sys.argv, ["cordon", "audit", "report", "--log-dir", str(log_dir)]
    sys.argv += ["--run", run_id]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_report_shows_the_firewall_diff_of_a_run(
    twin: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
        with Pool(twin.inv, keepalive=None) as pool:
            ex = Executor(twin.inv, journal, pool, actor="auditor-test")
            run = ex.run(pb, [SITE])
            try:
                assert run.status == "done", run.outcomes
                audit.seal()
                text = report_text(capsys, log_dir, run.run_id)
            finally:
                ex.rollback(run.run_id)
        audit.seal()
    finally:
        journal.close()
        audit.configure(Path(os.environ["CORDON_LOG_DIR"]))
    befores = {r["device"]: r for r in records(log_dir, "config.before")}
    afters = [r for r in records(log_dir, "config.after") if r["device"] == FIREWALL]
    before, after = befores[FIREWALL], afters[0]
    assert (before["run_id"], after["run_id"], after["run_outcome"]) == (run.run_id,) * 2 + (
        "done",
    )
    # the blobs the records name are in the store, intact
    assert evidence.check(log_dir, before["config_sha256"]) is None
    assert evidence.check(log_dir, after["config_sha256"]) is None
    old = evidence.path_for(log_dir, before["config_sha256"]).read_text().splitlines()
    new = evidence.path_for(log_dir, after["config_sha256"]).read_text().splitlines()
    # the report's section for the firewall, with both sha256s of the chain's records
    section = text.split("CONFIGURATION CHANGES")[1].split("TIMELINE")[0]
    fw = section.split(f"{FIREWALL} ({SITE}), run {run.run_id}, after the run ended done")[1]
    fw = fw.split("\n\n")[0]
    assert f"- before: sha256 {before['config_sha256']} [seq {before['seq']}]" in fw
    assert f"- after: sha256 {after['config_sha256']} [seq {after['seq']}]" in fw
    added = [ln[5:] for ln in fw.splitlines() if ln.startswith("    +") and ln[5:6] != "+"]
    assert "table inet cordon {" in added, fw  # Cordon's table, absent before the run
    rules = [ln for ln in added if ln.strip().split(" ")[-1] in ("drop", "reject", "accept")]
    rules += [ln for ln in added if " drop " in ln or " reject " in ln]
    assert rules, fw  # and a rule of it that cuts
    # a rule Cordon added is the after's and not the before's (a closing brace may be both's)
    assert all(line in new and line not in old for line in [*rules, "table inet cordon {"]), fw
    # the rollback saved the devices again, after it
    assert any(r["run_outcome"] == "rolled_back" for r in afters)
    # what the after snapshots cost: from the run's recorded end to the last of them
    end = datetime.fromisoformat(records(log_dir, "run.finished")[0]["ts"])
    last = max(
        datetime.fromisoformat(r["ts"])
        for r in records(log_dir, "config.after")
        if r["run_outcome"] == "done"
    )
    done = [r for r in records(log_dir, "config.after") if r["run_outcome"] == "done"]
    print(f"after snapshots of {len(done)} device(s): {(last - end).total_seconds():.3f} s")
    print(fw)

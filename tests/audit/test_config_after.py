"""The after snapshot never fails a run: a device that cannot be read once the run ended is
audited `config.after` with outcome failed and why; the run stays done. Scripted fake switches
(real port state), a real journal and a real audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.drivers.base import Backup
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import DeviceTimeout
from agent.inventory import load
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import EXAMPLE
from tests.engine.fakes import FakeSwitch, World

SITE = "nantes-jules-verne"
PLAYBOOK = (
    "name: q\nlevel: L4\nsteps:\n"
    "  - {name: backup, action: backup_config}\n"
    "  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
)


def test_a_device_unread_after_the_run_is_audited_and_the_run_stays_done(
    tmp_path: Path, pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = load(EXAMPLE)
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(PLAYBOOK)
    pb = load_playbook(pb_path, inv)
    taken: dict[str, int] = {}
    real = FakeSwitch.backup

    def backup(self: FakeSwitch) -> Backup:
        """The first backup of each device answers; the next (after the run) times out."""
        taken[self.target.name] = taken.get(self.target.name, 0) + 1
        if taken[self.target.name] > 1:
            raise DeviceTimeout(self.target.name, "backup", "no answer (scripted)")
        return real(self)

    monkeypatch.setattr(FakeSwitch, "backup", backup)
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(inv, keepalive=None, factory=World().factory) as pool:
        run = Executor(inv, journal, pool, actor="t").run(pb, [SITE])
    journal.close()
    audit.close()
    assert run.status == "done"
    recs: list[dict[str, Any]] = [
        json.loads(line)
        for p in sorted(pipeline.glob("audit-*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    changed = {r["device"] for r in recs if r["event"] == "step.succeeded"}
    before = {r["device"] for r in recs if r["event"] == "config.before"}
    after = [r for r in recs if r["event"] == "config.after"]
    assert changed and changed <= before  # every site device is backed up by the gate
    assert {r["device"] for r in after} == changed  # only the devices the run changed
    for r in after:
        assert (r["run_id"], r["outcome"], r["run_outcome"]) == (run.run_id, "failed", "done")
        assert "no answer (scripted)" in r["error"]
        assert "config_sha256" not in r
    finished = next(r for r in recs if r["event"] == "run.finished")
    assert finished["outcome"] == "done"
    assert all(r["seq"] > finished["seq"] for r in after)  # taken once the run was recorded over

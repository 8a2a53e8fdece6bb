"""The engine never reports a state that is not the devices': a run that loses its journal or
cannot write its audit trail stops sending and says so (and journals what a device really did),
a recovery rolled back leaves its sites isolated, an open run nobody drives shows as interrupted,
and the playbook's `one_switch_at_a_time` and `must_survive_only` act. Scripted fake switches
(real port state), a real SQLite journal, a real audit trail on a real full file system."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import audit
from agent.cli.commands.resume import resume_cmd
from agent.cli.options import Opts
from agent.cli.render.status import render_status
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import AuditError, PlanError, RunError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from agent.service.service import local
from agent.verify.evidence import Evidence, Seen
from agent.wire.reports import StatusOut
from tests.conftest import EXAMPLE, ROOT
from tests.engine.fakes import World
from tests.pgserver import Where

SITE = "nantes-jules-verne"
LA_SAGESSE = "rennes-la-sagesse"  # two switches: admin on sw2, guest on sw1


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def playbook(tmp_path: Path, inv: Inventory, text: str, name: str = "q") -> Playbook:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_playbook(path, inv)


TWO_STEPS = (
    "name: q\nlevel: L4\nsteps:\n"
    "  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
    "  - {name: guest, action: shut_zone_ports, zones: [guest]}\n"
)


def records(log_dir: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in sorted(log_dir.glob("audit-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line (full disk)
    return out


# -- the journal lost mid-run ----------------------------------------------------------------


@pytest.mark.sqlite_only(
    "deletes the journal's file; PostgreSQL lost mid-run: tests/store/test_pg_outage.py, "
    "tests/ha/test_pg_restart_twin.py"
)
def test_a_run_that_loses_its_journal_stops_sending(inv: Inventory, tmp_path: Path) -> None:
    """The state directory deleted after the first step: the second is never sent, the run
    fails saying the journal was deleted (not "done"), and the audit trail records the stop."""
    world = World()
    state = tmp_path / "state"
    journal = Journal(state / "journal.sqlite")
    pb = playbook(tmp_path, inv, TWO_STEPS)

    def progress(msg: str) -> None:
        if msg.endswith(": verified") and state.exists():
            shutil.rmtree(state)  # someone deletes the state directory mid-run

    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t", progress=progress)
        with pytest.raises(RunError, match="was deleted") as raised:
            ex.run(pb, [SITE])
    journal.close()
    assert "nothing more is sent" in raised.value.message
    stopped = [
        r
        for r in records(audit.current_log_dir())
        if r.get("event") == "run.stopped" and str(state) in str(r.get("reason"))
    ]
    assert [r["device"] for r in stopped] == ["nts-sw1"]  # the trail says where it stopped
    assert len(world.log) == 1  # the admin quarantine only
    assert world.log[0].split(" / ")[0].split()[-1] in {
        p.interface
        for p in inv.site(SITE).zone("admin").ports  # type: ignore[union-attr]
    }


# -- the audit trail's disk full -------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the audit trail (real ENOSPC), the trail sent there for the test."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: mounting a tmpfs needs root")
    mnt = tmp_path / "logs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    before = audit.current_log_dir()
    try:
        audit.configure(mnt, console=False)
        yield mnt
    finally:
        with contextlib.suppress(AuditError):  # sealing on a full disk fails: thrown away
            audit.close()
        audit.configure(before, console=False)
        subprocess.run(["umount", str(mnt)], check=True)


def fill(mnt: Path) -> None:
    """Fill the file system until it refuses another byte."""
    with (mnt / "filler").open("wb", buffering=0) as f:
        for size in (65536, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def test_audit_disk_short_before_a_run_refuses_it_and_holds_nothing(
    inv: Inventory, tmp_path: Path, state_where: Where, full_disk: Path
) -> None:
    """Too little room for the audit trail: exit 7, nothing sent, no run left holding a site."""
    world = World()
    journal = Journal(state_where("journal"))
    fill(full_disk)
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        with pytest.raises(AuditError) as raised:
            ex.run(playbook(tmp_path, inv, TWO_STEPS), [SITE])
    assert raised.value.exit_code == 7
    assert world.log == []
    assert journal.locks() == {}
    assert journal.open_runs() == []
    journal.close()


def test_audit_full_after_a_change_journals_what_the_device_did(
    inv: Inventory, tmp_path: Path, state_where: Where, full_disk: Path
) -> None:
    """The disk fills right after the first change reached the switch (its `device.change`
    cannot be written): the step is journaled as the device shows it (applied, verified), the
    run sends nothing more, and `resume` (room again) finishes it."""
    world = World()
    filled: list[str] = []

    def after_apply(device: str) -> None:
        if not filled:
            filled.append(device)
            fill(full_disk)
            # the trail's file may still have room in its last page: use it up
            for _ in range(64):
                try:
                    audit.get_logger().info("test.filler", outcome="filler")
                except AuditError:
                    break

    world.after_apply = after_apply
    journal = Journal(state_where("journal"))
    pb = playbook(tmp_path, inv, TWO_STEPS)
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        ex.audit_min_free = 0  # the threshold is not what is tested here: the write failure is
        with pytest.raises(AuditError) as raised:
            ex.run(pb, [SITE])
        (run_id,) = journal.open_runs()
        assert len(world.log) == 1  # the second step was not sent
        (port,) = world.down["nts-sw1"]
        assert [r.status for r in journal.steps(run_id)] == ["verified", "pending"]
        assert "shows the change applied" in raised.value.message
        assert journal.device_states()["nts-sw1"].down_interfaces == {port}
        (full_disk / "filler").unlink()
        done = ex.resume(run_id)
    assert done.status == "done"
    assert [r.status for r in journal.steps(run_id)] == ["verified", "verified"]
    assert len(world.down["nts-sw1"]) == 2
    journal.close()


# -- site modes derived from the devices ------------------------------------------------------


def test_rolled_back_recovery_leaves_the_site_isolated(
    inv: Inventory, tmp_path: Path, state_where: Where
) -> None:
    """An L0 run rolled back on a site another run isolated: the site is `isolated`, not
    `reconnected`."""
    world = World()
    journal = Journal(state_where("journal"))
    first = playbook(
        tmp_path,
        inv,
        "name: iso\nlevel: L2\nsteps:\n  - {name: a, action: shut_zone_ports, zones: [admin]}\n",
        "iso",
    )
    recovery = playbook(
        tmp_path,
        inv,
        "name: rec\nlevel: L0\nsteps:\n  - {name: g, action: shut_zone_ports, zones: [guest]}\n",
        "rec",
    )
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        assert ex.run(first, [SITE]).status == "done"
        run = ex.run(recovery, [SITE])
        assert run.status == "done"
        assert journal.sites()[SITE].mode == "reconnected"
        assert ex.rollback(run.run_id).status == "rolled_back"
    assert len(world.down["nts-sw1"]) == 1  # the admin quarantine of the first run stays
    assert journal.sites()[SITE].mode == "isolated"
    journal.close()


# -- an open run nobody drives -----------------------------------------------------------------


def test_status_says_an_orphaned_run_is_interrupted(inv: Inventory, tmp_path: Path) -> None:
    """A run whose driving process died shows as INTERRUPTED with `cordon resume RUN_ID`; one
    driven by a live process does not."""
    world = World()
    state = tmp_path / "state"
    pb = playbook(tmp_path, inv, TWO_STEPS)
    journal = Journal(state / "journal.sqlite")
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        started = Executor(inv, journal, pool, actor="t").start(pb, [SITE])
    journal.claim_driver(started.run_id)  # this (live) process drives it
    with local(EXAMPLE, state) as service:
        (live,) = service.status()["open_runs"]
    assert live["interrupted"] is False
    # a process that drove it and died (SIGKILL leaves no trace but its PID)
    code = (
        "import sys; from pathlib import Path; from agent.engine.journal import at; "
        "at(Path(sys.argv[1])).claim_driver(sys.argv[2])"  # the state dir's journal (or URL's)
    )
    subprocess.run(
        [sys.executable, "-c", code, str(state), started.run_id],
        cwd=ROOT,
        check=True,
    )
    journal.close()
    with local(EXAMPLE, state) as service:
        data = service.status()
    (orphan,) = data["open_runs"]
    assert orphan["interrupted"] is True
    opts = Opts(
        json=False,
        local=True,
        socket=None,
        token=None,
        state_dir=state,
        inventory=None,
        roles=None,
    )
    text = render_status(opts, StatusOut.model_validate(data))
    assert "INTERRUPTED" in text
    assert f"`cordon resume {started.run_id}`" in text


# -- settings that act ---------------------------------------------------------------------------


QUARANTINE_BOTH = (
    "name: q\nlevel: L4\n{limits}steps:\n"
    "  - {{name: q, action: shut_zone_ports, zones: [admin, guest]}}\n"
)


@pytest.mark.parametrize("one_at_a_time", [True, False])
def test_one_switch_at_a_time(
    inv: Inventory, tmp_path: Path, state_where: Where, one_at_a_time: bool
) -> None:
    """La Sagesse's two switches in one step: never both in transition with the limit on (the
    default); both at once with it off."""
    world = World(overlap_wait=3.0)
    limits = "" if one_at_a_time else "limits: {one_switch_at_a_time: false}\n"
    pb = playbook(tmp_path, inv, QUARANTINE_BOTH.format(limits=limits))
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        run = Executor(inv, journal, pool, actor="t").run(pb, [LA_SAGESSE])
    journal.close()
    assert run.status == "done"
    assert set(world.down) == {"rns-sw1", "rns-sw2"}
    assert world.max_active == (1 if one_at_a_time else 2)


@pytest.mark.parametrize("must_survive_only", [True, False])
def test_verify_flows_must_survive_only(
    inv: Inventory, tmp_path: Path, state_where: Where, must_survive_only: bool
) -> None:
    """Ordinary flows found wrong by the probes fail the run unless the step checks
    must-survive flows only (which are all fine here)."""
    world = World()

    class Probes:
        """What the twin's probes would see if every ordinary flow of the site were cut."""

        name = "probes"

        def check(
            self, _site: str, flows: Sequence[Flow], _expected: Mapping[str, bool]
        ) -> list[Evidence]:
            return [
                Evidence(f.name, self.name, Seen.OPEN if f.must_survive else Seen.CLOSED)
                for f in flows
            ]

    flag = "true" if must_survive_only else "false"
    pb = playbook(
        tmp_path,
        inv,
        "name: q\nlevel: L4\nsteps:\n"
        "  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
        f"  - {{name: check, action: verify_flows, must_survive_only: {flag}}}\n",
    )
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        run = Executor(inv, journal, pool, actor="t", sources=[Probes()]).run(pb, [SITE])
    journal.close()
    if must_survive_only:
        assert (run.status, run.flow_problems) == ("done", [])
    else:
        assert run.status == "failed"
        assert run.flow_problems


# -- smaller things --------------------------------------------------------------------------------


# cuts every ICU port: refused by the plan (a must-survive flow cut)
REFUSED = (
    "name: bad\nlevel: L2\nsteps:\n  - {name: wan, action: cut_link, kinds: [wan]}\n"
    "  - {name: all, action: shut_zone_ports, zones: [icu]}\n"
)


def test_a_refused_plan_is_audited(inv: Inventory, tmp_path: Path, state_where: Where) -> None:
    """A run refused by its plan leaves a `run.refused` record naming the refusal."""
    pb = playbook(tmp_path, inv, REFUSED, "bad")
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=World().factory) as pool, pytest.raises(PlanError):
        Executor(inv, journal, pool, actor="alice").run(pb, [LA_SAGESSE])
    journal.close()
    refused = [r for r in records(audit.current_log_dir()) if r.get("event") == "run.refused"]
    assert refused
    assert refused[-1]["playbook"] == "bad"
    assert refused[-1]["actor"] == "alice"


def test_a_refused_plan_handed_to_start_is_refused_and_audited(
    inv: Inventory, tmp_path: Path, state_where: Where
) -> None:
    """`Executor.start(planned=...)` (the service hands it the plan it checked) refuses a plan
    with refusals as a plan it made itself: nothing journaled, `run.refused` audited (review of
    #18)."""
    pb = playbook(tmp_path, inv, REFUSED, "bad")
    journal = Journal(state_where("journal"))
    with Pool(inv, keepalive=None, factory=World().factory) as pool:
        ex = Executor(inv, journal, pool, actor="alice")
        planned = ex.plan(pb, [LA_SAGESSE])
        assert planned.refusals
        with pytest.raises(PlanError):
            ex.start(pb, [LA_SAGESSE], planned=planned)
    assert journal.runs() == []
    journal.close()
    refused = [r for r in records(audit.current_log_dir()) if r.get("event") == "run.refused"]
    assert refused and refused[-1]["playbook"] == "bad"


def test_resume_takes_a_state_dir_and_times_itself(inv: Inventory, tmp_path: Path) -> None:
    """`cordon resume --state-dir DIR` reads that directory's journal."""
    state = tmp_path / "elsewhere"
    journal = Journal(state / "journal.sqlite")
    with Pool(inv, keepalive=None, factory=World().factory) as pool:
        started = Executor(inv, journal, pool, actor="t").start(
            playbook(tmp_path, inv, TWO_STEPS), [SITE]
        )
    journal.close()
    out = CliRunner().invoke(
        resume_cmd, [started.run_id, "--state-dir", str(state), "--rollback", "--json"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["status"] == "rolled_back"
    assert report["duration_s"] > 0

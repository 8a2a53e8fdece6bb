"""The journal survives what the executor does to it: parallel site threads writing at once, and
a second process reading; every row lands, none is lost or interleaved."""

from __future__ import annotations

import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.engine.journal import (
    SCHEMA_VERSION,
    Journal,
    NewStep,
    state_from_json,
    state_to_json,
)
from agent.errors import DaemonError, InternalError, LockError
from agent.network.state import DeviceState, NftRule
from agent.status import GateStatus, RunStatus, SiteMode, StepStatus


def test_parallel_site_threads_share_one_journal(tmp_path: Path) -> None:
    """Eight threads marking steps concurrently on one journal: no error, every mark recorded."""
    j = Journal(tmp_path / "j.sqlite")
    steps = [
        NewStep(
            seq,
            f"s{seq % 8}",
            "step",
            f"d{seq}",
            "nft",
            ("x",),
            ("y",),
            DeviceState(),
            DeviceState(),
        )
        for seq in range(1, 401)
    ]
    j.start_run("r1", "pb", "L2", [f"s{i}" for i in range(8)], "t", steps)

    def site(i: int) -> None:
        for seq in range(1, 401):
            if seq % 8 == i:
                j.mark("r1", seq, StepStatus.STARTED)
                j.set_device(f"d{seq}", DeviceState(), "r1")
                j.mark("r1", seq, StepStatus.VERIFIED)
                j.device_states()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(site, range(8)))
    assert {r.status for r in j.steps("r1")} == {"verified"}
    assert len(j.device_states()) == 400
    j.close()


def test_locks_are_exclusive_across_journal_handles(tmp_path: Path) -> None:
    """Two handles (two processes' worth) on one file: the second run on a held site is refused."""
    a, b = Journal(tmp_path / "j.sqlite"), Journal(tmp_path / "j.sqlite")
    a.start_run("first", "pb", "L1", ["rennes"], "alice")
    with pytest.raises(LockError, match="first"):
        b.start_run("second", "pb", "L1", ["nantes", "rennes"], "bob")
    assert b.locks() == {"rennes": "first"}  # nothing of the refused run was taken
    a.finish_run("first", RunStatus.DONE)
    b.start_run("second", "pb", "L1", ["nantes", "rennes"], "bob")
    a.close()
    b.close()


def test_device_state_round_trips() -> None:
    """A device state survives the journal's JSON form exactly (rules, shut ports, methods)."""
    state = DeviceState(
        down=frozenset({("gi1", "cli"), ("gi2", "snmp")}),
        rules=frozenset(
            {
                NftRule("drop", iif="inet0", tag="cut"),
                NftRule("accept", "a", "b", "1.2.3.4", "5.6.7.8", None, 80, "keep"),
            }
        ),
    )
    back = state_from_json(state_to_json(state))
    assert back == state
    # tags do not take part in rule equality: compare them too
    assert sorted((r.sort_key(), r.tag) for r in back.rules) == sorted(
        (r.sort_key(), r.tag) for r in state.rules
    )


def test_undone_keeps_the_failure_that_caused_it(tmp_path: Path) -> None:
    """Marking a failed step undone keeps its error text: the audit needs why it was undone."""
    j = Journal(tmp_path / "j.sqlite")
    j.start_run(
        "r1",
        "pb",
        "L1",
        ["s"],
        "t",
        [NewStep(1, "s", "step", "d", "cli", ("x",), ("y",), DeviceState(), DeviceState())],
    )
    j.mark("r1", 1, StepStatus.FAILED, "nts-sw1: apply: % Invalid input")
    j.mark("r1", 1, StepStatus.UNDONE)
    (row,) = j.steps("r1")
    assert row.status == "undone"
    assert row.error == "nts-sw1: apply: % Invalid input"
    j.close()


# -- schema version, migration, typed records, transitions ---------------------------------------

TODAY = Path(__file__).parent / "data" / "journal-v0.sqlite"  # written by the release before #12


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_journal_written_by_the_previous_release_opens_migrated(tmp_path: Path) -> None:
    """The kept journal (schema version 0: a done run, a rolled-back recovery, a run awaiting
    approval) opens: its runs, steps, gates and site modes read back typed, and it is stamped
    with the current schema version."""
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(TODAY, path)
    assert _user_version(path) == 0
    j = Journal(path)
    runs = {r.playbook: r for r in j.runs()}
    assert {p: r.status for p, r in runs.items()} == {
        "iso": RunStatus.DONE,
        "rec": RunStatus.ROLLED_BACK,
        "two": RunStatus.AWAITING_APPROVAL,
    }
    assert runs["two"].sites == ("rennes-la-sagesse",)
    assert runs["two"].options["reason"] == "fixture"
    assert j.open_runs() == [runs["two"].run_id]
    assert [r.status for r in j.steps(runs["iso"].run_id)] == [StepStatus.VERIFIED]
    assert [r.status for r in j.steps(runs["rec"].run_id)] == [StepStatus.UNDONE]
    assert [r.status for r in j.steps(runs["two"].run_id)] == [StepStatus.PENDING]
    assert [(g.step, g.status) for g in j.gates(runs["iso"].run_id)] == [("w", GateStatus.PASSED)]
    site = j.sites()["nantes-jules-verne"]
    assert (site.mode, site.level, site.run_id) == (SiteMode.ISOLATED, "L0", runs["rec"].run_id)
    assert [i.incident_id for i in j.incidents(open_only=True)] == ["INC-1"]
    base = j.baseline("nts-sw1")
    assert base is not None and base.run_id == runs["iso"].run_id
    assert j.approval(runs["two"].run_id) is None
    j.close()
    assert _user_version(path) == SCHEMA_VERSION
    # the migrated journal goes on: the waiting run can still be cancelled, as before
    j = Journal(path)
    j.finish_run(runs["two"].run_id, RunStatus.CANCELLED, "cancelled by t")
    assert j.run(runs["two"].run_id).status == "cancelled"
    j.close()


def test_a_journal_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """A journal stamped with a schema version this release does not know is refused, naming the
    file and both versions; the file is left as it was."""
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(TODAY, path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(DaemonError, match=rf"{path}.*newer Cordon.*version {SCHEMA_VERSION + 1}"):
        Journal(path)
    assert path.read_bytes() == before


def test_a_forbidden_status_change_is_refused_and_not_written(tmp_path: Path) -> None:
    """A done run is not set running again, an undone step not started, a passed gate not
    reopened: an internal error names the record and both statuses, and the journal keeps the
    old status."""
    j = Journal(tmp_path / "j.sqlite")
    j.start_run(
        "r1",
        "pb",
        "L1",
        ["s"],
        "t",
        [NewStep(1, "s", "step", "d", "cli", ("x",), ("y",), DeviceState(), DeviceState())],
    )
    j.set_gate("r1", "s", "w", GateStatus.PASSED)
    j.mark("r1", 1, StepStatus.FAILED, "rejected")
    j.mark("r1", 1, StepStatus.UNDONE)
    j.finish_run("r1", RunStatus.DONE)
    with pytest.raises(InternalError, match="run r1 cannot go from done to running"):
        j.set_run_status("r1", RunStatus.RUNNING, "again")
    with pytest.raises(InternalError, match="step 1 of run r1 cannot go from undone to started"):
        j.mark("r1", 1, StepStatus.STARTED)
    with pytest.raises(InternalError, match="gate s w of run r1 cannot go from passed to open"):
        j.set_gate("r1", "s", "w", GateStatus.OPEN)
    with pytest.raises(InternalError, match="unknown RunStatus 'paused'"):
        j.finish_run("r1", "paused")  # type: ignore[arg-type]
    assert j.run("r1").status == RunStatus.DONE
    assert j.run("r1").waiting is None
    assert [r.status for r in j.steps("r1")] == [StepStatus.UNDONE]
    assert [g.status for g in j.gates("r1")] == [GateStatus.PASSED]
    j.close()

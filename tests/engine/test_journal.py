"""The journal survives what the executor does to it: parallel site threads writing at once, and
a second process reading; every row lands, none is lost or interleaved. Every test runs on both
backends (`state_backend`: a SQLite file, a PostgreSQL database of the throwaway test cluster)."""

from __future__ import annotations

import re
from collections.abc import Callable
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
from agent.engine.store import redact
from agent.errors import DaemonError, InternalError, LockError
from agent.network.state import DeviceState, NftRule
from agent.status import GateStatus, RunStatus, SiteMode, StepStatus
from tests.pgserver import kept_store, schema_version, snapshot, stamp

Where = Callable[[str], Path | str]  # the `state_where` fixture: a store's file or URL


def test_parallel_site_threads_share_one_journal(state_where: Where) -> None:
    """Eight threads marking steps concurrently on one journal: no error, every mark recorded."""
    j = Journal(state_where("journal"))
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


def test_locks_are_exclusive_across_journal_handles(state_where: Where) -> None:
    """Two handles (two processes' worth) on one journal: the second run on a held site is
    refused."""
    a, b = Journal(state_where("journal")), Journal(state_where("journal"))
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


def test_undone_keeps_the_failure_that_caused_it(state_where: Where) -> None:
    """Marking a failed step undone keeps its error text: the audit needs why it was undone."""
    j = Journal(state_where("journal"))
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


def test_the_polled_reads_see_every_commit_of_this_process_and_of_another(
    state_where: Where,
) -> None:
    """The reads the verify gates poll (`device_states`, `steps_in_flight`, `steps_coming`,
    `runs_coming`) are read again once anything was committed, by this journal or by another
    connection to the same store (another process's), never served stale; unchanged between
    commits (#18)."""
    where = state_where("journal")
    mine, other = Journal(where), Journal(where)
    step = NewStep(1, "s", "step", "d", "cli", ("x",), ("y",), DeviceState(), DeviceState())
    assert mine.device_states() == {} and mine.steps_in_flight() == []
    assert mine.steps_coming() == [] and mine.runs_coming() == []
    other.start_run("r1", "pb", "L1", ["s"], "t", [step])  # another connection's commit
    assert [r.seq for r in mine.steps_coming()] == [1] and mine.steps_in_flight() == []
    (run,) = mine.runs_coming()
    assert (run.run_id, run.sites, [r.status for r in run.steps]) == ("r1", ("s",), ["pending"])
    assert run.gates == {} and run.stop_requested is None
    other.set_gate("r1", "s", "g", GateStatus.OPEN)
    other.request_stop("r1", "stop")
    (run,) = mine.runs_coming()
    assert run.gates == {("s", "g"): GateStatus.OPEN} and run.stop_requested == "stop"
    with pytest.raises(TypeError):  # cached and shared: no caller can change what others see
        run.gates[("s", "x")] = GateStatus.PASSED  # type: ignore[index]
    assert mine.runs_coming()[0].gates == {("s", "g"): GateStatus.OPEN}
    assert mine.runs_coming(but="r1") == []
    mine.mark("r1", 1, StepStatus.STARTED)  # this journal's own commit
    assert [r.status for r in mine.steps_in_flight()] == ["started"]
    assert mine.steps_coming() == [] and mine.runs_coming() == []
    cut = DeviceState(down=frozenset({("eth1", "cli")}))
    other.settle_step("r1", 1, StepStatus.VERIFIED, "d", cut)
    assert mine.steps_in_flight() == [] and mine.device_states() == {"d": cut}
    got = mine.device_states()
    got["e"] = DeviceState()  # a caller's copy: the next read is the store's
    assert mine.device_states() == {"d": cut}
    mine.close()
    other.close()


# -- schema version, migration, typed records, transitions ---------------------------------------

TODAY = Path(__file__).parent / "data" / "journal-v0.sqlite"  # written by the release before #12


def test_a_journal_written_by_the_previous_release_opens_migrated(state_where: Where) -> None:
    """The kept journal (schema version 0: a done run, a rolled-back recovery, a run awaiting
    approval) opens: its runs, steps, gates and site modes read back typed, and it is stamped
    with the current schema version."""
    where = kept_store(state_where, "journal", TODAY)
    assert schema_version(where, "journal") == 0
    j = Journal(where)
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
    assert schema_version(where, "journal") == SCHEMA_VERSION
    # the migrated journal goes on: the waiting run can still be cancelled, as before, and the
    # columns the migration added are written
    j = Journal(where)
    j.claim_driver(runs["two"].run_id)
    j.finish_run(runs["two"].run_id, RunStatus.CANCELLED, "cancelled by t")
    assert j.run(runs["two"].run_id).status == "cancelled"
    assert j.run(runs["two"].run_id).driver is not None
    j.close()


def test_a_journal_from_a_newer_release_is_refused_untouched(state_where: Where) -> None:
    """A journal stamped with a schema version this release does not know is refused, naming the
    store and both versions; it is left as it was."""
    where = kept_store(state_where, "journal", TODAY)
    stamp(where, "journal", SCHEMA_VERSION + 1)
    shown = str(where) if isinstance(where, Path) else redact(where)
    before = snapshot(where)
    with pytest.raises(
        DaemonError, match=rf"{re.escape(shown)}.*newer Cordon.*version {SCHEMA_VERSION + 1}"
    ):
        Journal(where)
    assert snapshot(where) == before


def test_a_forbidden_status_change_is_refused_and_not_written(state_where: Where) -> None:
    """A done run is not set running again, an undone step not started, a passed gate not
    reopened: an internal error names the record and both statuses, and the journal keeps the
    old status."""
    j = Journal(state_where("journal"))
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


# -- concurrent writers through separate handles (processes, or hosts sharing one database) ------


def _step(seq: int, site: str) -> NewStep:
    return NewStep(
        seq, site, "step", f"d{seq}", "nft", ("x",), ("y",), DeviceState(), DeviceState()
    )


def test_racing_runs_take_each_site_once(state_where: Where) -> None:
    """Twelve handles start runs at once on overlapping sites (run i wants sites i and i+1 of
    six): the locks taken are exactly those of the runs that started, each site held by one
    run, and every refused run left nothing (no run row, no step, no lock)."""
    handles = [Journal(state_where("journal")) for _ in range(12)]
    handles[0].start_run("warm", "pb", "L1", [], "t")  # the schema exists before the race

    def start(i: int) -> str | None:
        sites = [f"s{i % 6}", f"s{(i + 1) % 6}"]
        try:
            handles[i].start_run(f"r{i}", "pb", "L1", sites, "t", [_step(1, sites[0])])
        except LockError:
            return None
        return f"r{i}"

    with ThreadPoolExecutor(max_workers=12) as pool:
        started = {r for r in pool.map(start, range(12)) if r is not None}
    j = handles[0]
    locks = j.locks()
    assert started, "no run started"
    assert set(locks.values()) == started  # every lock belongs to a run that started
    for run_id in started:
        i = int(run_id[1:])
        assert {s for s, r in locks.items() if r == run_id} == {f"s{i % 6}", f"s{(i + 1) % 6}"}
    recorded = {r.run_id for r in j.runs()} - {"warm"}
    assert recorded == started  # a refused run wrote nothing
    for run_id in {f"r{i}" for i in range(12)} - started:
        assert j.steps(run_id) == []
    for h in handles:
        h.close()


def test_racing_status_changes_are_checked_against_the_committed_status(
    state_where: Where,
) -> None:
    """Sixteen handles end one running run at once, half as done and half as cancelled (neither
    may follow the other): the first to commit wins, every other of its kind is a no-change,
    every one of the other kind is refused. A check against a stale status would let both
    through."""
    handles = [Journal(state_where("journal")) for _ in range(16)]
    handles[0].start_run("r", "pb", "L1", ["s"], "t", [_step(1, "s")])

    def end(i: int) -> RunStatus | None:
        status = RunStatus.DONE if i % 2 else RunStatus.CANCELLED
        try:
            handles[i].finish_run("r", status)
        except InternalError:
            return None
        return status

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(end, range(16)))
    final = handles[0].run("r").status
    assert final in (RunStatus.DONE, RunStatus.CANCELLED)
    assert outcomes.count(final) == 8  # every call of the winning kind went through
    assert outcomes.count(None) == 8  # every call of the other kind was refused
    for h in handles:
        h.close()


def test_steps_appended_at_once_get_distinct_numbers(state_where: Where) -> None:
    """Eight handles append steps to one run at once (re-isolations decided during soaks): every
    step lands, with its own number, numbered on from the run's last."""
    handles = [Journal(state_where("journal")) for _ in range(8)]
    handles[0].start_run("r", "pb", "L1", ["s"], "t", [_step(1, "s")])

    def append(i: int) -> list[int]:
        return [handles[i].append_step("r", _step(0, "s")) for _ in range(10)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = [s for got in pool.map(append, range(8)) for s in got]
    assert sorted(seqs) == list(range(2, 82))
    assert [r.seq for r in handles[0].steps("r")] == list(range(1, 82))
    for h in handles:
        h.close()


def test_racing_gate_decisions_on_a_gate_not_yet_journaled(state_where: Where) -> None:
    """Sixteen handles decide one gate that has no row yet, half passed and half failed (a final
    gate never changes): the first to commit wins, the others of its kind are no-changes, the
    others refused. Two writers both seeing "no gate yet" would let both through."""
    handles = [Journal(state_where("journal")) for _ in range(16)]
    handles[0].start_run("r", "pb", "L1", ["s"], "t", [_step(1, "s")])

    def decide(i: int) -> GateStatus | None:
        status = GateStatus.PASSED if i % 2 else GateStatus.FAILED
        try:
            handles[i].set_gate("r", "s", "soak", status)
        except InternalError:
            return None
        return status

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(decide, range(16)))
    gate = handles[0].gate("r", "s", "soak")
    assert gate is not None and gate.status in (GateStatus.PASSED, GateStatus.FAILED)
    assert outcomes.count(gate.status) == 8
    assert outcomes.count(None) == 8
    for h in handles:
        h.close()


def test_the_cached_reads_of_earlier_versions_are_dropped(tmp_path: Path) -> None:
    """`runs_coming` is cached per gate's run: the keys of runs long gone do not pile up in a
    daemon's memory (older versions' entries go past a few dozen keys), and every read after a
    commit is the store's (#18)."""
    j = Journal(tmp_path / "journal.db")
    state = DeviceState(down=frozenset({("eth1", "cli")}))
    for i in range(100):
        j.set_device("d", state, f"r{i}")  # a commit: a new data version
        assert j.runs_coming(but=f"r{i}") == []
    assert len(j._reads) <= 32
    step = NewStep(1, "s", "step", "d", "cli", ("x",), ("y",), DeviceState(), DeviceState())
    j.start_run("r1", "pb", "L1", ["s"], "t", [step])
    assert [r.run_id for r in j.runs_coming(but="r0")] == ["r1"]
    j.close()

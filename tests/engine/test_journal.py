"""The journal survives what the executor does to it: parallel site threads writing at once, and
a second process reading; every row lands, none is lost or interleaved."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.engine.journal import Journal, NewStep, state_from_json, state_to_json
from agent.engine.state import DeviceState, NftRule
from agent.errors import LockError


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
                j.mark("r1", seq, "started")
                j.set_device(f"d{seq}", DeviceState(), "r1")
                j.mark("r1", seq, "verified")
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
    a.finish_run("first", "done")
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
    j.mark("r1", 1, "failed", "nts-sw1: apply: % Invalid input")
    j.mark("r1", 1, "undone")
    (row,) = j.steps("r1")
    assert row.status == "undone"
    assert row.error == "nts-sw1: apply: % Invalid input"
    j.close()

"""Statuses are types: their values are the journal's and the API's strings, a forbidden change is
refused with a clear internal error, and the README's exit-code table is the code's mapping."""

from __future__ import annotations

import json

import pytest

from agent.errors import InternalError
from agent.status import (
    GATE_TRANSITIONS,
    INTERRUPTED,
    OPEN,
    RUN_EXIT,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    GateStatus,
    RunStatus,
    StepStatus,
    check_transition,
    exit_code,
)
from tests.conftest import ROOT


def _readme_exit_table() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("Exit codes. `cordon run`, by the run's final status")
    rows: list[tuple[str, str]] = []
    for line in text[start:].splitlines()[1:]:
        if not line.strip():
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("code", "---"):
            continue
        rows.append((cells[0], cells[1]))
    return rows


def test_readme_exit_code_table_is_the_mapping() -> None:
    """Every row of the README's `cordon run` exit-code table is RUN_EXIT (and 130 interrupted),
    and every final status with its own code has a row."""
    rows = _readme_exit_table()
    documented = {status: int(code) for code, status in rows if status}
    assert documented == {str(s): c for s, c in RUN_EXIT.items()}
    assert [int(code) for code, status in rows if not status] == [INTERRUPTED]


def test_exit_code_derives_from_the_run_status() -> None:
    """Open runs exit 0, each final status its code, a report outcome that is no run status 4."""
    assert {exit_code(s) for s in OPEN} == {0}
    assert exit_code("reisolated") == 17
    assert exit_code(RunStatus.ROLLBACK_FAILED) == 19
    assert exit_code("cancelled") == 4
    assert exit_code("stopped") == 4


def test_values_are_todays_strings() -> None:
    """The stored and wire values are unchanged: an enum member equals (and hashes as) its text."""
    assert str(RunStatus.AWAITING_APPROVAL) == "awaiting_approval"
    assert json.dumps([RunStatus.DONE]) == '["done"]'
    assert "running" in OPEN
    assert {str(s) for s in StepStatus} == {
        "pending",
        "started",
        "applied",
        "verified",
        "failed",
        "undoing",
        "undone",
        "undo_failed",
    }
    assert GateStatus("reisolated") is GateStatus.REISOLATED


def test_a_final_run_never_reopens() -> None:
    """done -> running is refused naming the run and both statuses; done -> rolled_back is fine."""
    check_transition(RUN_TRANSITIONS, "run", "r1", RunStatus.DONE, RunStatus.ROLLED_BACK)
    with pytest.raises(InternalError, match=r"run r1 cannot go from done to running"):
        check_transition(RUN_TRANSITIONS, "run", "r1", RunStatus.DONE, RunStatus.RUNNING)


def test_step_and_gate_tables_refuse_going_back() -> None:
    """An undone step is not started again, a passed gate not reopened; a rewrite is no change."""
    with pytest.raises(InternalError, match="undone to started"):
        check_transition(STEP_TRANSITIONS, "step", "r1#1", StepStatus.UNDONE, StepStatus.STARTED)
    with pytest.raises(InternalError, match="passed to open"):
        check_transition(GATE_TRANSITIONS, "gate", "r1 s w", GateStatus.PASSED, GateStatus.OPEN)
    check_transition(GATE_TRANSITIONS, "gate", "r1 s w", GateStatus.OPEN, GateStatus.OPEN)


def test_every_status_has_a_row() -> None:
    """Each table says where every status may go (an absent row would silently forbid all)."""
    assert set(RUN_TRANSITIONS) == {None, *RunStatus}
    assert set(STEP_TRANSITIONS) == {None, *StepStatus}
    assert set(GATE_TRANSITIONS) == {None, *GateStatus}


def test_every_error_type_has_its_own_exit_code() -> None:
    """A script calling cordon tells failures apart by exit code: no two error types share one
    (subclasses that keep their parent's code are the same failure, said more precisely)."""
    import inspect  # noqa: PLC0415

    from agent import errors  # noqa: PLC0415

    own: dict[int, list[str]] = {}
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, errors.CordonError):
            continue
        code = cls.exit_code
        if any(code == getattr(base, "exit_code", None) for base in cls.__mro__[1:]):
            continue  # inherits its parent's code
        own.setdefault(code, []).append(name)
    shared = {code: names for code, names in own.items() if len(names) > 1}
    assert shared == {}

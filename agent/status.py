"""Statuses as types: a run's, a device step's, a gate's and a site's mode, with the transitions
each may make (one table per kind, checked by the journal when it writes one), the outcomes a
call on a run reports that are not journaled, and the exit code of `cordon run` for each final
run status. Imports only the standard library and agent.errors.

The values are the strings the journal stores and the API returns: a `StrEnum` equals its string,
so a journal written before these types, and every JSON reader, see exactly the same text.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from agent.errors import InternalError


class RunStatus(StrEnum):
    """A run's status in the journal: open while `running` or `awaiting_approval`, else final."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    PARTIAL = "partial"
    REISOLATED = "reisolated"
    EXPIRED = "expired"
    ROLLBACK_FAILED = "rollback_failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """A device step: pending -> started -> applied -> verified | failed; undoing -> undone |
    undo_failed after a rollback."""

    PENDING = "pending"
    STARTED = "started"
    APPLIED = "applied"
    VERIFIED = "verified"
    FAILED = "failed"
    UNDOING = "undoing"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"


class GateStatus(StrEnum):
    """A non-device step (backup, verify, wait, soak, approval, preconditions): open while it
    waits, then final."""

    OPEN = "open"
    PASSED = "passed"
    SKIPPED = "skipped"
    FAILED = "failed"
    REISOLATED = "reisolated"
    EXPIRED = "expired"


class SiteMode(StrEnum):
    """A site's mode: `isolating`/`reconnecting` while a run or a rollback changes it, then what
    its devices' recorded state says (normal, isolated, reconnected)."""

    NORMAL = "normal"
    ISOLATING = "isolating"
    ISOLATED = "isolated"
    RECONNECTING = "reconnecting"
    RECONNECTED = "reconnected"


class Outcome(StrEnum):
    """What a call on a run returns when it is not the run's journaled status (never stored):
    the run waits (a gate, a soak, a wait: proceed again later), its driver was stopped (a
    rollback ordered elsewhere), or a rollback found nothing to undo. A run already final when
    resumed reports `already <its status>`."""

    WAITING = "waiting"
    STOPPED = "stopped"
    NOTHING_TO_ROLL_BACK = "nothing_to_roll_back"


# -- groups the engine reads ------------------------------------------------------------------

OPEN: frozenset[RunStatus] = frozenset({RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL})
FINAL: frozenset[RunStatus] = frozenset(RunStatus) - OPEN
# a step a crash may have left half done: `resume` settles it by reading the device
IN_FLIGHT: frozenset[StepStatus] = frozenset({StepStatus.STARTED, StepStatus.APPLIED})
# a step changing its device now, in a run or its rollback: the device's recorded state may change
STEP_BUSY: frozenset[StepStatus] = IN_FLIGHT | {StepStatus.UNDOING}
GATE_FINAL_OK: frozenset[GateStatus] = frozenset({GateStatus.PASSED, GateStatus.SKIPPED})
GATE_STOPS: frozenset[GateStatus] = frozenset(
    {GateStatus.FAILED, GateStatus.REISOLATED, GateStatus.EXPIRED}
)

# -- allowed transitions (None: the record does not exist yet) ----------------------------------
# Writing a status equal to the current one is always allowed (a refresh: a new detail, a new
# error text, a new wake-up); every other change must be listed here.

RUN_TRANSITIONS: Mapping[RunStatus | None, frozenset[RunStatus]] = {
    None: OPEN,
    # an open run waits, is approved, ends, expires, is cancelled or rolled back
    RunStatus.RUNNING: frozenset(RunStatus) - {RunStatus.AWAITING_APPROVAL},
    RunStatus.AWAITING_APPROVAL: frozenset(RunStatus),
    # a final run only moves by a rollback (retried while it fails)
    **{
        s: frozenset({RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED})
        for s in FINAL - {RunStatus.CANCELLED, RunStatus.EXPIRED}
    },
    # nothing was sent: nothing to roll back, nowhere to go
    RunStatus.CANCELLED: frozenset(),
    RunStatus.EXPIRED: frozenset(),
}

_UNDO = frozenset({StepStatus.UNDOING})
STEP_TRANSITIONS: Mapping[StepStatus | None, frozenset[StepStatus]] = {
    None: frozenset({StepStatus.PENDING}),
    # started, or failed before anything was sent (the backup before it failed)
    StepStatus.PENDING: frozenset({StepStatus.STARTED, StepStatus.FAILED}),
    # back to pending when nothing was sent (the audit trail refused the step.started record)
    StepStatus.STARTED: frozenset(
        {
            StepStatus.PENDING,
            StepStatus.APPLIED,
            StepStatus.VERIFIED,
            StepStatus.FAILED,
            StepStatus.UNDOING,
        }
    ),
    # a resume that finds the device in neither state applies the step again (started)
    StepStatus.APPLIED: frozenset(
        {
            StepStatus.STARTED,
            StepStatus.PENDING,
            StepStatus.VERIFIED,
            StepStatus.FAILED,
            StepStatus.UNDOING,
        }
    ),
    StepStatus.VERIFIED: _UNDO,
    # a failed step whose device shows nothing to undo may be marked undone directly
    StepStatus.FAILED: _UNDO | {StepStatus.UNDONE},
    # a resume that finds an undo's device still in the step's target settles it verified
    StepStatus.UNDOING: frozenset({StepStatus.UNDONE, StepStatus.UNDO_FAILED, StepStatus.VERIFIED}),
    StepStatus.UNDO_FAILED: _UNDO,
    StepStatus.UNDONE: frozenset(),
}

GATE_TRANSITIONS: Mapping[GateStatus | None, frozenset[GateStatus]] = {
    None: frozenset(GateStatus),
    GateStatus.OPEN: frozenset(GateStatus),
    # a final gate is never reopened nor changed: the walk skips it or stops at it
    **{s: frozenset() for s in GateStatus if s is not GateStatus.OPEN},
}

# A site's mode is derived again from its devices' recorded state at the end of every run and
# rollback (a recovery run that failed leaves a reconnected site isolated, a resume that rolls
# back a run never started leaves it as its devices are): every mode may follow every other.
SITE_TRANSITIONS: Mapping[SiteMode | None, frozenset[SiteMode]] = {
    None: frozenset(SiteMode),
    **{s: frozenset(SiteMode) for s in SiteMode},
}


_S = TypeVar("_S", RunStatus, StepStatus, GateStatus, SiteMode)


def check_transition(
    table: Mapping[_S | None, frozenset[_S]], kind: str, what: str, old: _S | None, new: _S
) -> None:
    """Refuse `old` -> `new` unless `table` allows it (or it is no change): `InternalError`
    naming the record (`what`), both statuses and the ones allowed."""
    if old == new or new in table.get(old, frozenset()):
        return
    allowed = ", ".join(sorted(table.get(old, frozenset()))) or "none"
    raise InternalError(
        f"internal error: {kind} {what} cannot go from {old or 'nothing'} to {new} "
        f"(allowed: {allowed}); nothing was written",
        hint="this is a bug in Cordon: report it with `cordon show` of the run",
    )


def parse(enum: type[_S], value: str, where: str) -> _S:
    """A stored or given status string as its type, or an `InternalError` naming it."""
    try:
        return enum(value)
    except ValueError:
        raise InternalError(
            f"internal error: {where}: unknown {enum.__name__} {value!r} "
            f"(known: {', '.join(enum)})",
            hint="a journal written by a newer Cordon? use that release, or report it",
        ) from None


# -- exit codes --------------------------------------------------------------------------------

# The exit code of `cordon run` (and `show`) for a run's final status. Detached, or still open:
# 0. The README's table "Exit codes. `cordon run`, by the run's final status" is checked
# against this mapping (tests/test_status.py).
RUN_EXIT: Mapping[RunStatus, int] = {
    RunStatus.DONE: 0,
    RunStatus.FAILED: 4,  # a step failed and the failure policy kept what was done
    RunStatus.ROLLED_BACK: 15,  # a step failed and the failure policy undid the whole run
    RunStatus.PARTIAL: 16,  # some sites keep their changes, others were undone
    RunStatus.REISOLATED: 17,  # a soak caught an anomaly: the zone was isolated again
    RunStatus.EXPIRED: 18,  # no second operator approved in time: nothing was sent
    RunStatus.ROLLBACK_FAILED: 19,  # an undo failed: devices in an unknown state, sites held
}
RUN_EXIT_OTHER = 4  # any other final status (cancelled), or one this release does not know
INTERRUPTED = 130  # interrupted, or "no" at the confirmation: nothing sent


def exit_code(status: str) -> int:
    """`cordon run`'s exit code for a run's status: 0 while it is open (detached, waiting)."""
    if status in OPEN:
        return 0
    try:
        return RUN_EXIT.get(RunStatus(status), RUN_EXIT_OTHER)
    except ValueError:  # a report's outcome (stopped), not a run status
        return RUN_EXIT_OTHER

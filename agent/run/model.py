"""A run's data: the options a person gave, each device step's outcome, the report a run returns,
and what is injected into it (the flow sources, progress). Imports the plan and the flow-source
contract (`agent.verify.evidence`); nothing of the run."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.engine.plan import Plan
from agent.verify.evidence import FlowSource

# the ways a run sees its flows (device decisions, counters, probe points, the twin's prober),
# chosen by a composition root; none: every flow checked is reported unverified
Sources = Sequence[FlowSource]
Progress = Callable[[str], None]


@dataclass
class StepOutcome:
    seq: int
    site: str
    step: str
    device: str
    method: str
    status: str
    error: str | None = None
    duration_s: float = 0.0


@dataclass
class RunReport:
    run_id: str
    status: str
    outcomes: list[StepOutcome] = field(default_factory=list)
    flow_problems: list[str] = field(default_factory=list)
    # flows no source could check (never problems, never passed: said)
    flows_unverified: list[str] = field(default_factory=list)
    plan: Plan | None = None
    duration_s: float = 0.0
    wake_at: float | None = None  # while waiting: when to proceed again (None: on an event)
    waiting: str | None = None  # while waiting: for what


@dataclass(frozen=True)
class RunOptions:
    """What the person starting a run said beyond the playbook (recorded with the run)."""

    soak_seconds: float | None = None  # drills: every soak this long (production: hours)
    reason: str | None = None
    break_glass: bool = False  # an on-call person ran an emergency playbook alone
    needs_approval: bool = False  # two-person rule: wait for a second operator
    approval_timeout: float = 3600.0
    attest: Mapping[str, str] = field(default_factory=dict)  # zone -> why it is clean

    def as_dict(self) -> dict[str, object]:
        return {
            "soak_seconds": self.soak_seconds,
            "reason": self.reason,
            "break_glass": self.break_glass,
            "needs_approval": self.needs_approval,
            "approval_timeout": self.approval_timeout,
            "attest": dict(self.attest),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> RunOptions:
        soak_s = raw.get("soak_seconds")
        timeout = raw.get("approval_timeout", 3600.0)
        attest = raw.get("attest") or {}
        assert isinstance(attest, dict)
        assert soak_s is None or isinstance(soak_s, int | float)
        assert isinstance(timeout, int | float)
        reason = raw.get("reason")
        return cls(
            soak_seconds=float(soak_s) if soak_s is not None else None,
            reason=str(reason) if reason is not None else None,
            break_glass=bool(raw.get("break_glass")),
            needs_approval=bool(raw.get("needs_approval")),
            approval_timeout=float(timeout),
            attest={str(k): str(v) for k, v in attest.items()},
        )


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def clock(ts: float) -> str:
    """A wall-clock time as people read it in a waiting message."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")

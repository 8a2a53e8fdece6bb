"""The one protocol every gate kind implements: `check` looks at the journal (and the devices,
the flows or the operators' answers) and says passed, waiting until T because ..., or stopped
because .... A gate records its own status in the journal (through the observer); the walk only
reads the verdict. Imports the run's context and model and the playbook models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.playbook.models import Playbook, Step
from agent.run.context import Context
from agent.run.model import RunOptions


@dataclass(frozen=True)
class Passed:
    """Go on to the next step (`problems`: flow problems found on the way, reported)."""

    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Waiting:
    """Come back at `until` (None: when an operator acts) because `why`."""

    why: str
    until: float | None


@dataclass(frozen=True)
class Stopped:
    """The site goes no further in this run because `why` (journaled by the gate)."""

    why: str


Verdict = Passed | Waiting | Stopped


@dataclass(frozen=True)
class GateRun:
    """What a gate is checked for: the run, its playbook and the options it was started with."""

    ctx: Context
    run_id: str
    pb: Playbook
    opts: RunOptions


class Gate(Protocol):
    def check(self, run: GateRun, site: str, step: Step) -> Verdict: ...

"""What a flow-verification source saw, and the one verdict per flow drawn from every source.

A source (`FlowSource`) is asked about some of a site's declared flows together with what the
plan expects of each (open or closed), and answers with `Evidence`: for a flow, what it saw
(open, closed, or that it could not tell, and why). `combine` turns every source's evidence into
one `FlowResult` per flow:

- **failed** when any source saw the flow other than expected (a contradiction always wins: one
  probe that connects through a cut is a cut that does not hold);
- **passed** when at least one source confirmed it and none contradicted it;
- **unverified** when no source could say: never reported as passed.

Imports the inventory's flow model only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from agent.inventory.models import Flow

# How long a source that reads a device waits for its pooled session when another thread holds it
# (a run changing that device: a FortiGate's segmentation can hold it for seconds) before it
# answers UNKNOWN for what that device would have told, saying so: a verify step never queues
# behind another run's change (the flow is asked again, or confirmed by another source).
SESSION_WAIT_S = 0.5


class Seen(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    UNKNOWN = "unknown"  # the source could not tell (detail says why)


@dataclass(frozen=True)
class Evidence:
    flow: str
    source: str  # who saw it: "twin", "device:<name>", "counters:<device>", "probe:<id>"
    seen: Seen
    detail: str = ""


class FlowStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class FlowResult:
    flow: str
    expected_open: bool
    status: FlowStatus
    confirmed_by: tuple[str, ...] = ()
    contradicted_by: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()

    @property
    def expected(self) -> str:
        return "open" if self.expected_open else "closed"

    def problem(self) -> str | None:
        """The line a failed flow puts in a run's flow problems (None unless failed)."""
        if self.status is not FlowStatus.FAILED:
            return None
        seen = "closed" if self.expected_open else "open"
        return (
            f"flow {self.flow}: expected {self.expected}, observed {seen} "
            f"(by {', '.join(self.contradicted_by)})"
        )


class FlowSource(Protocol):
    """One way of seeing flows. `check` must answer only for flows it was asked about, may
    answer UNKNOWN (with the reason in `detail`) and never raises for one flow it cannot see; a
    source that cannot run at all raises a CordonError (the gate records it, naming the source)."""

    @property
    def name(self) -> str: ...

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]: ...


class Failed(Protocol):
    """The flows of one round of asking already failed by a source's answer (it saw them other
    than expected: a contradiction always wins, so their verdict is failed whatever any other
    source sees), for a source still asking (`StopsEarly`), which may stop waiting for them."""

    def failed_by(self, flow: str) -> str | None:
        """The source that saw `flow` other than expected (None: not failed so far)."""
        ...

    def watch(self) -> int:
        """A new file descriptor, readable (bytes to drain with `os.read`) each time a flow is
        failed from now on; given back with `unwatch`."""
        ...

    def unwatch(self, fd: int) -> None: ...


@runtime_checkable
class StopsEarly(Protocol):
    """A source whose answer can wait long for a flow (the twin's probe of a flow expected open
    that is dropped silently: its full timeout) and that can stop waiting for a flow another
    source has already failed: it answers UNKNOWN for it, saying so, never a verdict."""

    def check_until(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool], failed: Failed
    ) -> list[Evidence]: ...


def contradictions(expected: Mapping[str, bool], evidence: Iterable[Evidence]) -> list[Evidence]:
    """The evidence that saw a flow of `expected` other than expected (UNKNOWN never does)."""
    return [
        e
        for e in evidence
        if e.flow in expected
        and e.seen is not Seen.UNKNOWN
        and (e.seen is Seen.OPEN) != expected[e.flow]
    ]


def combine(expected: Mapping[str, bool], evidence: Iterable[Evidence]) -> list[FlowResult]:
    """One result per flow of `expected` (in its order), from every source's evidence. Evidence
    about a flow not in `expected` is ignored."""
    by_flow: dict[str, list[Evidence]] = {name: [] for name in expected}
    for ev in evidence:
        if ev.flow in by_flow:
            by_flow[ev.flow].append(ev)
    results = []
    for name, want_open in expected.items():
        seen = by_flow[name]
        want = Seen.OPEN if want_open else Seen.CLOSED
        confirmed = tuple(dict.fromkeys(e.source for e in seen if e.seen is want))
        seen_other = (e for e in seen if e.seen is not want and e.seen is not Seen.UNKNOWN)
        contra = tuple(dict.fromkeys(e.source for e in seen_other))
        if contra:
            status = FlowStatus.FAILED
        elif confirmed:
            status = FlowStatus.PASSED
        else:
            status = FlowStatus.UNVERIFIED
        results.append(FlowResult(name, want_open, status, confirmed, contra, tuple(seen)))
    return results

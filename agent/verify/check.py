"""Checking a site's flows with every source: each flow's expectation from the recorded device
states (the pure model: `flow_path` + `flow_open`), every source asked, the evidence combined into
one verdict per flow (`evidence.combine`); flows that failed are asked again, their expectation
re-read from the states recorded now, until a settle deadline (runs in parallel change sister
sites' devices on a flow's path while this one checks).

A source that cannot run at all (a CordonError) gives UNKNOWN for every flow it was asked about,
with its error as the reason: its flows stay unverified unless another source confirms them.
With no source at all every flow is unverified, said per flow.

Imports the evidence contract, the inventory models, the network model and the errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.errors import CordonError
from agent.inventory.models import Flow, Inventory
from agent.network.paths import FlowPath, flow_path
from agent.network.state import DeviceState, flow_open
from agent.verify.evidence import Evidence, FlowResult, FlowSource, FlowStatus, Seen, combine

States = Mapping[str, DeviceState]

SETTLE_S = 8.0  # how long failed flows are asked again (as the twin's prober always did)
RETRY_PAUSE_S = 0.3
NO_SOURCE = "(none)"


@dataclass
class Outcome:
    """Every checked flow's verdict, in the order asked, and the sources that could not run."""

    results: list[FlowResult]
    source_errors: dict[str, str] = field(default_factory=dict)
    rounds: int = 1

    def failed(self) -> list[FlowResult]:
        return [r for r in self.results if r.status is FlowStatus.FAILED]

    def unverified(self) -> list[FlowResult]:
        return [r for r in self.results if r.status is FlowStatus.UNVERIFIED]

    def problems(self) -> list[str]:
        return [p for r in self.results if (p := r.problem()) is not None]


def site_flows(inv: Inventory, site: str, only: set[str] | None = None) -> list[Flow]:
    """The declared flows touching `site` (or only those named in `only`)."""
    return [
        f
        for f in inv.flows
        if site in (f.source.site, f.destination.site) and (only is None or f.name in only)
    ]


def expectations(
    paths: Mapping[str, FlowPath], flows: Sequence[Flow], states: States
) -> dict[str, bool]:
    return {f.name: flow_open(states, paths[f.name]) for f in flows}


def ask(
    sources: Sequence[FlowSource],
    site: str,
    flows: Sequence[Flow],
    expected: Mapping[str, bool],
    errors: dict[str, str],
) -> list[Evidence]:
    """Every source's evidence on `flows`; a source that cannot run answers UNKNOWN for each
    (its error kept in `errors` by source name)."""
    out: list[Evidence] = []
    for source in sources:
        try:
            seen = source.check(site, flows, expected)
        except CordonError as exc:
            errors[source.name] = exc.message
            seen = [
                Evidence(f.name, source.name, Seen.UNKNOWN, f"could not run: {exc.message}")
                for f in flows
            ]
        else:
            errors.pop(source.name, None)
        out += seen
    if not sources:
        out += [
            Evidence(f.name, NO_SOURCE, Seen.UNKNOWN, "no flow source configured") for f in flows
        ]
    return out


def check_flows(
    inv: Inventory,
    sources: Sequence[FlowSource],
    site: str,
    flows: Sequence[Flow],
    current: Callable[[], States],
    *,
    settle: float = SETTLE_S,
    pause: float = RETRY_PAUSE_S,
) -> Outcome:
    """The verdict on `flows` from every source. Failed flows are asked again (every source,
    the expectation re-read from `current()`) until `settle` seconds have passed."""
    paths = {f.name: flow_path(inv, f) for f in flows}
    errors: dict[str, str] = {}
    expected = expectations(paths, flows, current())
    results = {r.flow: r for r in combine(expected, ask(sources, site, flows, expected, errors))}
    deadline = time.monotonic() + settle
    rounds = 1
    while sources:
        wrong = [f for f in flows if results[f.name].status is FlowStatus.FAILED]
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(pause)
        rounds += 1
        again = expectations(paths, wrong, current())
        results.update(
            (r.flow, r) for r in combine(again, ask(sources, site, wrong, again, errors))
        )
    return Outcome([results[f.name] for f in flows], errors, rounds)


def result_dict(r: FlowResult, must_survive: bool) -> dict[str, object]:
    """One flow's verdict as journaled and audited (every source, what it saw and why)."""
    return {
        "flow": r.flow,
        "expected": r.expected,
        "status": r.status.value,
        "must_survive": must_survive,
        "confirmed_by": list(r.confirmed_by),
        "contradicted_by": list(r.contradicted_by),
        "evidence": [
            {"source": e.source, "seen": e.seen.value, **({"detail": e.detail} if e.detail else {})}
            for e in r.evidence
        ],
    }


def unverified_line(r: FlowResult) -> str:
    """What a run says of a flow no source could check (never a problem, never passed)."""
    why = sorted({f"{e.source}: {e.detail}" for e in r.evidence if e.detail})
    return f"flow {r.flow}: unverified (expected {r.expected})" + (
        f": {'; '.join(why)}" if why else ""
    )

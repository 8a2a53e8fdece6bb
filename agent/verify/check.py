"""Checking a site's flows with every source: each flow's expectation from the recorded device
states (the pure model: `flow_path` + `flow_open`), every source asked, the evidence combined into
one verdict per flow (`evidence.combine`); flows that failed are asked again, their expectation
re-read from the states recorded now, until a settle deadline (runs in parallel change sister
sites' devices on a flow's path while this one checks).

The sources are asked at the same time (each in its own thread; the evidence kept in the order of
the sources), so a check costs its slowest source, not their sum. Between two rounds the recorded
states are re-read every `POLL_S`: a failed flow whose expectation changed (the other run recorded
its change) is asked again at once; otherwise after `pause` (a device that answers a moment late).

A source that cannot run at all (a CordonError) gives UNKNOWN for every flow it was asked about,
with its error as the reason: its flows stay unverified unless another source confirms them.
With no source at all every flow is unverified, said per flow.

Imports the evidence contract, the inventory models, the network model and the errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.errors import CordonError
from agent.inventory.models import Flow, Inventory
from agent.network.paths import FlowPath, flow_path
from agent.network.state import DeviceState, flow_open
from agent.verify.evidence import Evidence, FlowResult, FlowSource, FlowStatus, Seen, combine

States = Mapping[str, DeviceState]

SETTLE_S = 8.0  # how long failed flows are asked again (as the twin's prober always did)
RETRY_PAUSE_S = 0.3  # before asking a failed flow again when its expectation did not change
POLL_S = 0.02  # how often the recorded states are re-read meanwhile (a local journal read)
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
    """Every source's evidence on `flows`, the sources asked at the same time (the evidence in
    the order of `sources`); a source that cannot run answers UNKNOWN for each (its error kept in
    `errors` by source name)."""

    def one(source: FlowSource) -> list[Evidence] | CordonError:
        try:
            return source.check(site, flows, expected)
        except CordonError as exc:
            return exc

    if len(sources) > 1:
        with ThreadPoolExecutor(len(sources), thread_name_prefix="cordon-src") as pool:
            answers = list(pool.map(one, sources))
    else:
        answers = [one(s) for s in sources]
    out: list[Evidence] = []
    for source, got in zip(sources, answers, strict=True):
        if isinstance(got, CordonError):
            errors[source.name] = got.message
            out += [
                Evidence(f.name, source.name, Seen.UNKNOWN, f"could not run: {got.message}")
                for f in flows
            ]
        else:
            errors.pop(source.name, None)
            out += got
    if not sources:
        out += [
            Evidence(f.name, NO_SOURCE, Seen.UNKNOWN, "no flow source configured") for f in flows
        ]
    return out


def wait_for_change(
    paths: Mapping[str, FlowPath],
    flows: Sequence[Flow],
    asked: Mapping[str, bool],
    current: Callable[[], States],
    pause: float,
    *,
    poll: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, bool]:
    """The expectation of `flows` re-read from `current()` every `poll` seconds, returned as
    soon as it differs from `asked` for one of them (a run recorded a change on its path), else
    after `pause` seconds (the last reading)."""
    end = clock() + pause
    while True:
        now = expectations(paths, flows, current())
        left = end - clock()
        if left <= 0 or any(now[name] != asked[name] for name in now):
            return now
        sleep(min(poll, left))


def check_flows(
    inv: Inventory,
    sources: Sequence[FlowSource],
    site: str,
    flows: Sequence[Flow],
    current: Callable[[], States],
    *,
    settle: float = SETTLE_S,
    pause: float = RETRY_PAUSE_S,
    poll: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """The verdict on `flows` from every source. Failed flows are asked again (every source,
    the expectation re-read from `current()`: at once when it changed, else after `pause`)
    until `settle` seconds have passed."""
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
        asked = {f.name: results[f.name].expected_open for f in wrong}
        again = wait_for_change(paths, wrong, asked, current, pause, poll=poll, sleep=sleep)
        rounds += 1
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

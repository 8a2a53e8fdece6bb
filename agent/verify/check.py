"""Checking a site's flows with every source: each flow's expectation from the recorded device
states (the pure model: `flow_path` + `flow_open`), every source asked, the evidence combined into
one verdict per flow (`evidence.combine`); flows that failed are asked again, their expectation
re-read from the states recorded now, until a settle deadline (runs in parallel change sister
sites' devices on a flow's path while this one checks).

The sources are asked at the same time (each on a kept worker thread: `workers`; the evidence
kept in the order of the sources), so a check costs its slowest source, not their sum; once one
source has failed a flow (seen other than expected: failed whatever the others see), a source
still waiting on it that `StopsEarly` (the twin's prober on a silent drop) stops waiting for it
and says UNKNOWN (the round's `Board`). Between two rounds the recorded states are re-read every
`POLL_S` (with the journal's `Changes`: at each of its writes, and every `CHANGES_POLL_S`): a
failed flow whose expectation changed (the other run recorded its change) is asked again at
once; otherwise after `pause` (a device that answers a moment late).

A flow is asked only once its expectation is known: while a device of its path has a step in
flight (journaled as started, applied or undoing by an open run, `Journal.devices_in_flight`, not
yet settled with its state) the flow could be open or closed, so no source is asked about it; the
steps are re-read every `POLL_S` until they settle (at most the settle deadline: a flow still held
then is unverified, naming the step). Without this, a flow crossing a sister site was asked with
the expectation recorded before that site's run settled its cut, failed the round and was asked
again (#18: a bimodal time-to-contain). When the caller knows where each step in flight lands (a
`Landing`: the device's recorded state once the step settles as intended), a flow whose
expectation is the same whether each of those steps lands or not is known already and is asked
at once in the first round (a sister site's flows crossing the hit site's firewall while its
segmentation, which keeps them, is being written: #18's 1-2 s journal gap); a failed flow is
asked again only once every step on its path has settled, as before. The first round also waits
(at most `COMING_S`) for the next step another running run is about to send (`coming`: at each
site that run walks now, its next device step when no gate stands before it) when it would
change a flow's expectation: asked before, the sources would race it (#18: a sister site's
flow asked between the hit site's cut-internet and cut-wan on its firewall, seen closed by the
device once the cut-wan landed, asked again).

A source that cannot run at all (a CordonError) gives UNKNOWN for every flow it was asked about,
with its error as the reason: its flows stay unverified unless another source confirms them.
With no source at all every flow is unverified, said per flow.

Imports the evidence contract, the inventory models, the network model, the errors and the
verify workers."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import CordonError
from agent.inventory.models import Flow, Inventory
from agent.network.paths import FlowPath, flow_path
from agent.network.state import DeviceState, flow_open
from agent.verify.evidence import (
    Evidence,
    FlowResult,
    FlowSource,
    FlowStatus,
    Seen,
    StopsEarly,
    combine,
    contradictions,
)
from agent.verify.workers import workers

States = Mapping[str, DeviceState]

SETTLE_S = 8.0  # how long failed flows are asked again (as the twin's prober always did)
RETRY_PAUSE_S = 0.3  # before asking a failed flow again when its expectation did not change
POLL_S = 0.02  # how often the recorded states are re-read meanwhile (a local journal read)
# with the journal's wake-up at each of this process's writes (`Changes`): how often they are
# re-read all the same, for another process's writes (a daemon and a `--local` run)
CHANGES_POLL_S = 0.1
# how long a first round waits for other runs' next steps to land (`coming`): a run sends its
# next device step at once; one behind a gate (a verify, a soak, an approval) is not counted
COMING_S = 1.0
# the threads the sources of every check run on (kept: `workers`); 9 sites checking at once with
# a dozen sources each fit without queueing
SOURCE_THREADS = 128
NO_SOURCE = "(none)"
IN_FLIGHT_SOURCE = "(journal)"  # a flow not asked: a step on its path had not settled


@dataclass(frozen=True)
class Landing:
    """A step in flight on a device: what it is (`why`) and the device's whole recorded state
    once it settles as intended (`lands`; None: not known, every flow crossing it waits)."""

    why: str
    lands: DeviceState | None = None


# device -> what is in flight on it (the journal's `devices_in_flight`, or a `Landing`)
InFlight = Mapping[str, str | Landing]
MAX_LANDINGS = 4  # more steps in flight on one path: 2^n states to compare, the flow waits


def nothing_in_flight() -> InFlight:
    """For a caller with no journal (its states are fixed): no step is ever in flight."""
    return {}


@dataclass
class Outcome:
    """Every checked flow's verdict, in the order asked, and the sources that could not run."""

    results: list[FlowResult]
    source_errors: dict[str, str] = field(default_factory=dict)
    rounds: int = 1
    # the waits for steps before asking: "0.412 s for rns-fw1: run R step 3 (cut-wan) in flight"
    waits: list[str] = field(default_factory=list)

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


class Board:
    """The flows of one round already failed, posted by each source as it answers (`Failed`):
    a source still asking that `StopsEarly` stops waiting for them. Each watcher has its own
    pipe, written once per post that fails a flow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}
        self._pipes: dict[int, int] = {}  # read end -> write end

    def post(self, expected: Mapping[str, bool], evidence: Sequence[Evidence]) -> None:
        """A source's answer: the flows it saw other than expected are failed from now on."""
        with self._lock:
            new = [e for e in contradictions(expected, evidence) if e.flow not in self._failed]
            for e in new:
                self._failed[e.flow] = e.source
            if not new:
                return
            for w in self._pipes.values():
                # a full pipe is readable already: it wakes its reader all the same
                with contextlib.suppress(BlockingIOError):
                    os.write(w, b"!")

    def failed_by(self, flow: str) -> str | None:
        with self._lock:
            return self._failed.get(flow)

    def watch(self) -> int:
        r, w = os.pipe()
        os.set_blocking(w, False)
        with self._lock:
            self._pipes[r] = w
        return r

    def unwatch(self, fd: int) -> None:
        with self._lock:
            w = self._pipes.pop(fd, None)
        if w is not None:
            os.close(w)
            os.close(fd)


# each source's last call, seconds (by name, this process): `ask` submits the slowest first
_LAST_S: dict[str, float] = {}


def _timed(
    one: Callable[[FlowSource], list[Evidence] | CordonError], source: FlowSource
) -> list[Evidence] | CordonError:
    t0 = time.monotonic()
    try:
        return one(source)
    finally:
        _LAST_S[source.name] = time.monotonic() - t0


def ask(
    sources: Sequence[FlowSource],
    site: str,
    flows: Sequence[Flow],
    expected: Mapping[str, bool],
    errors: dict[str, str],
) -> list[Evidence]:
    """Every source's evidence on `flows`, the sources asked at the same time (the evidence in
    the order of `sources`); a source that cannot run answers UNKNOWN for each (its error kept in
    `errors` by source name). The sources are started the slowest first (each one's last call
    in this process: the order only, never the evidence's). Each answer is posted on the
    round's `Board` as it comes: a source still asking that `StopsEarly` stops waiting for the
    flows another source already failed (their verdict is failed whatever it would see; it
    says UNKNOWN for them, why)."""
    board = Board()

    def one(source: FlowSource) -> list[Evidence] | CordonError:
        try:
            if isinstance(source, StopsEarly):
                got = source.check_until(site, flows, expected, board)
            else:
                got = source.check(site, flows, expected)
        except CordonError as exc:
            return exc
        board.post(expected, got)
        return got

    if len(sources) > 1:
        pool = workers("cordon-src", SOURCE_THREADS)
        # the slowest first: on a loaded machine each task waits for its thread to be
        # scheduled, and the last submitted started ~0.1 s after the first (#18)
        order = sorted(range(len(sources)), key=lambda i: -_LAST_S.get(sources[i].name, 0.0))
        futures = {i: pool.submit(_timed, one, sources[i]) for i in order}
        answers = [futures[i].result() for i in range(len(sources))]
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


def pending(
    paths: Mapping[str, FlowPath],
    flows: Sequence[Flow],
    busy: InFlight,
    states: States | None = None,
    state: str = "in flight",
) -> dict[str, str]:
    """The flows whose expectation is not known yet (a device of their path has a step in
    flight: its recorded state may change any moment, so the flow may be open or closed), each
    with why, in the order of `flows`. With the recorded `states`, a flow is known when every
    step in flight on its path is a `Landing` with its state and the flow is open (or closed)
    in `states` with any of them landed or not (`same_either_way`)."""
    out: dict[str, str] = {}
    for f in flows:
        path = paths[f.name]
        crossing = [d for d in dict.fromkeys(h.device for h in path.hops) if d in busy]
        if not crossing:
            continue
        if states is not None and same_either_way(path, crossing, busy, states):
            continue
        what = busy[crossing[0]]
        why = what.why if isinstance(what, Landing) else what
        out[f.name] = f"{crossing[0]}: {why} {state}"
    return out


def same_either_way(path: FlowPath, devices: Sequence[str], busy: InFlight, states: States) -> bool:
    """Is the flow open (or closed) in `states` whichever of the steps in flight on `devices`
    have landed (every combination)? False when one's landing is not known."""
    lands: list[tuple[str, DeviceState]] = []
    for d in devices:
        what = busy[d]
        if not isinstance(what, Landing) or what.lands is None:
            return False
        lands.append((d, what.lands))
    if len(lands) > MAX_LANDINGS:
        return False
    now = flow_open(states, path)
    for mask in range(1, 2 ** len(lands)):
        landed = dict(states)
        landed.update(lands[i] for i in range(len(lands)) if mask >> i & 1)
        if flow_open(landed, path) != now:
            return False
    return True


class Changes(Protocol):
    """Where the recorded states and steps in flight are read (the journal), telling when this
    process writes them: `version()` before a reading, `wait_change(seen, timeout)` returns at
    the next write after it (or at the timeout: another process's writes do not wake it)."""

    def version(self) -> int: ...

    def wait_change(self, seen: int, timeout: float) -> int: ...


def _pause(
    changes: Changes | None, seen: int, seconds: float, sleep: Callable[[float], None]
) -> None:
    """Until the next reading: the next write after `seen` (at most `seconds`), or `seconds`."""
    if changes is None:
        sleep(seconds)
    else:
        changes.wait_change(seen, seconds)


def settled(
    paths: Mapping[str, FlowPath],
    flows: Sequence[Flow],
    current: Callable[[], States],
    in_flight: Callable[[], InFlight],
    until: float,
    *,
    poll: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    landings: bool = True,
    changes: Changes | None = None,
    coming: Callable[[], InFlight] | None = None,
    coming_until: float = 0.0,
    waits: list[str] | None = None,
) -> tuple[dict[str, bool], dict[str, str]]:
    """The expectation of `flows` once no device of their paths has a step in flight (the
    steps in flight re-read every `poll` seconds, then the recorded states; with `changes`,
    also at each write to them), or at `until`: the expectations and the flows still pending
    then (with why). The steps are read before the states, so a step settled in between is
    seen as in flight (one more reading), never missed. With `landings`, a flow whose
    expectation the steps in flight cannot change is not held (`pending` with the states).
    With `coming` (the next device step other runs are about to send with no gate before it,
    each a `Landing`), a flow whose expectation one of them would change is held too, until it
    has landed or `coming_until`: then it is asked as recorded (never unverified for a step not
    yet started). A wait is said in `waits` (how long, for which step: the last that held a
    flow)."""
    start, why = clock(), ""
    while True:
        seen = 0 if changes is None else changes.version()
        soon = coming() if coming is not None and clock() < coming_until else {}
        busy = in_flight()
        states = current()
        held = pending(paths, flows, busy, states if landings else None)
        held_soon = pending(paths, flows, soon, states, "coming next") if soon else {}
        left = until - clock()
        if left <= 0 or not (held or held_soon):
            if why and waits is not None:
                waits.append(f"{clock() - start:.3f} s for {why}")
            return expectations(paths, flows, states), held
        why = next(iter((held or held_soon).values()))
        nap = min(poll, left)
        if not held:  # held only by steps not started: at most until `coming_until`
            nap = min(nap, max(coming_until - clock(), 0.0))
        _pause(changes, seen, nap, sleep)


def wait_for_change(
    paths: Mapping[str, FlowPath],
    flows: Sequence[Flow],
    asked: Mapping[str, bool],
    current: Callable[[], States],
    pause: float,
    *,
    in_flight: Callable[[], InFlight] = nothing_in_flight,
    poll: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    changes: Changes | None = None,
) -> dict[str, bool]:
    """The expectation of `flows` re-read from `current()` every `poll` seconds (with
    `changes`, also at each write), returned as soon as it differs from `asked` for one of
    them (a run recorded a change on its path) or a device of their paths has a step in flight
    (a change is coming: the caller waits for it to settle), else after `pause` seconds (the
    last reading)."""
    end = clock() + pause
    while True:
        seen = 0 if changes is None else changes.version()
        busy = bool(pending(paths, flows, in_flight()))
        now = expectations(paths, flows, current())
        left = end - clock()
        if busy or left <= 0 or any(now[name] != asked[name] for name in now):
            return now
        _pause(changes, seen, min(poll, left), sleep)


def held_results(held: Mapping[str, str], expected: Mapping[str, bool]) -> list[FlowResult]:
    """The flows still pending at the deadline: unverified (no source asked: with a device of
    its path being changed, either answer is possible, so none would prove anything)."""
    return combine(
        {name: expected[name] for name in held},
        [
            Evidence(name, IN_FLIGHT_SOURCE, Seen.UNKNOWN, f"expectation unknown: {why}")
            for name, why in held.items()
        ],
    )


def check_flows(
    inv: Inventory,
    sources: Sequence[FlowSource],
    site: str,
    flows: Sequence[Flow],
    current: Callable[[], States],
    *,
    in_flight: Callable[[], InFlight] = nothing_in_flight,
    settle: float = SETTLE_S,
    pause: float = RETRY_PAUSE_S,
    poll: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    changes: Changes | None = None,
    coming: Callable[[], InFlight] | None = None,
    coming_wait: float = COMING_S,
) -> Outcome:
    """The verdict on `flows` from every source. A flow is asked only once its expectation is
    known: while a device of its path has a step in flight (`in_flight()`: by any run, the
    journal's `devices_in_flight`) it waits, the steps re-read every `poll`, at most `settle`
    seconds (still pending then: unverified, said why). Failed flows are asked again (every
    source, the expectation re-read from `current()`: at once when it changed or a step on its
    path started, else after `pause`) until `settle` seconds after the first answers. With
    `changes` (the journal), a wait re-reads at each of its writes too (`poll` is then only for
    another process's writes). With `coming` (the next device step each other run is about to
    send, at each site it walks now and with no gate before it, where it lands), the first
    round also waits, at most `coming_wait` seconds, for those that would change a flow's
    expectation to land: asked before, the flow's sources would race that step (#18: a sister
    site asked while the hit site's next cut was being sent, failed the round and was asked
    again)."""
    paths = {f.name: flow_path(inv, f) for f in flows}
    errors: dict[str, str] = {}
    waits: list[str] = []
    results: dict[str, FlowResult] = {}

    def round_(
        some: Sequence[Flow], until: float, *, landings: bool, coming_until: float = 0.0
    ) -> None:
        expected, held = settled(
            paths,
            some,
            current,
            in_flight,
            until,
            poll=poll,
            sleep=sleep,
            landings=landings,
            changes=changes,
            coming=coming,
            coming_until=coming_until,
            waits=waits,
        )
        results.update((r.flow, r) for r in held_results(held, expected))
        known = [f for f in some if f.name not in held]
        if known:
            want = {f.name: expected[f.name] for f in known}
            results.update(
                (r.flow, r) for r in combine(want, ask(sources, site, known, want, errors))
            )

    start = time.monotonic()
    round_(flows, start + settle, landings=True, coming_until=start + coming_wait)
    deadline = time.monotonic() + settle
    rounds = 1
    while sources:
        wrong = [f for f in flows if results[f.name].status is FlowStatus.FAILED]
        if not wrong or time.monotonic() > deadline:
            break
        asked = {f.name: results[f.name].expected_open for f in wrong}
        wait_for_change(
            paths,
            wrong,
            asked,
            current,
            pause,
            in_flight=in_flight,
            poll=poll,
            sleep=sleep,
            changes=changes,
        )
        rounds += 1
        round_(wrong, deadline, landings=False)  # asked again once their paths settled
    return Outcome([results[f.name] for f in flows], errors, rounds, waits)


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

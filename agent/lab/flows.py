"""The flow matrix: every declared flow probed with a real TCP connect from inside its source
host's namespace, compared with what is expected (open, or cut by the isolation in force).

Imports the inventory, the blueprint, the prober, netns and the settings; touches no device.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import click

from agent import settings
from agent.errors import LabError
from agent.inventory.models import Flow, Inventory
from agent.lab import netns
from agent.lab.probe import (
    GiveUp,
    ProbeResult,
    ProbeTarget,
    Status,
    probe_tcp,
    start_connect,
    validate,
)
from agent.lab.topology import Blueprint, banner
from agent.network.state import DeviceState
from agent.verify.check import check_flows, site_flows
from agent.verify.evidence import Evidence, Failed, Seen

Expectation = Callable[[Flow], bool]  # True: the flow should connect


def all_open(_flow: Flow) -> bool:
    return True


@dataclass(frozen=True)
class FlowObservation:
    flow: Flow
    expected_open: bool
    status: Status
    elapsed_ms: float

    @property
    def observed_open(self) -> bool:
        return self.status is Status.OK

    @property
    def as_expected(self) -> bool:
        return self.expected_open == self.observed_open

    def as_dict(self) -> dict[str, object]:
        return {
            "flow": self.flow.name,
            "from": str(self.flow.source),
            "to": str(self.flow.destination),
            "must_survive": self.flow.must_survive,
            "expected": "open" if self.expected_open else "closed",
            "observed": "open" if self.observed_open else "closed",
            "status": self.status.value,
            "as_expected": self.as_expected,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


def targets(
    inv: Inventory, bp: Blueprint, flows: Sequence[Flow] | None = None
) -> list[tuple[Flow, ProbeTarget]]:
    """One probe per flow: from the source host's namespace to the destination service."""
    out = []
    for flow in inv.flows if flows is None else flows:
        src_key = f"{flow.source.site}/{flow.source.zone}/{flow.source.host}"
        dst = flow.destination
        host = inv.host(dst)
        if src_key not in bp.host_ns or host is None or dst.service is None:
            raise LabError(
                f"flow {flow.name} has no twin endpoint (is the twin built from this inventory?)"
            )
        svc = host.service(dst.service)
        assert svc is not None  # checked at inventory load
        out.append(
            (
                flow,
                ProbeTarget(
                    netns=bp.host_ns[src_key],
                    dst=str(host.address),
                    port=svc.port,
                    banner=banner(dst.site, dst.zone, dst.host, dst.service),
                ),
            )
        )
    return out


def observe(
    inv: Inventory,
    bp: Blueprint,
    expect: Expectation = all_open,
    flows: Sequence[Flow] | None = None,
    timeout: float = 2.0,
    *,
    give_up: GiveUp | None = None,
) -> list[FlowObservation]:
    """Probe every flow once, in parallel; a flow not connected within `timeout` is closed
    (with `give_up`, one given up before is ABANDONED: neither open nor closed)."""
    pairs = targets(inv, bp, flows)
    results = probe_tcp([t for _, t in pairs], timeout=timeout, give_up=give_up)
    return [
        FlowObservation(flow, expect(flow), r.status, r.elapsed_ms)
        for (flow, _), r in zip(pairs, results, strict=True)
    ]


def render(
    observations: Sequence[FlowObservation], *, elapsed_s: float | None = None, color: bool = False
) -> str:
    """A readable matrix: one line per flow, failures first, then a summary line."""
    rows = sorted(observations, key=lambda o: (o.as_expected, o.flow.name))
    width = max((len(o.flow.name) for o in rows), default=4)
    lines = [f"{'flow':<{width}}  {'expected':<8} {'observed':<8} {'':<2} route"]
    for o in rows:
        mark = "ok" if o.as_expected else "!!"
        exp = "open" if o.expected_open else "closed"
        obs = (
            "open"
            if o.observed_open
            else f"closed ({o.status.value})"
            if o.status is not Status.OK
            else "open"
        )
        line = (
            f"{o.flow.name:<{width}}  {exp:<8} {obs:<8} {mark:<2} "
            f"{o.flow.source} -> {o.flow.destination}"
            f"{'  [must survive]' if o.flow.must_survive else ''}"
        )
        if color:
            line = click.style(line, fg="green" if o.as_expected else "red")
        lines.append(line)
    bad = sum(not o.as_expected for o in rows)
    summary = f"{len(rows)} flows: {len(rows) - bad} as expected, {bad} not"
    if elapsed_s is not None:
        summary += f" (probed in {elapsed_s:.2f} s)"
    lines.append(summary)
    return "\n".join(lines)


def timed_observe(
    inv: Inventory, bp: Blueprint, expect: Expectation = all_open
) -> tuple[list[FlowObservation], float]:
    t = time.perf_counter()
    obs = observe(inv, bp, expect)
    return obs, time.perf_counter() - t


# How the verifier probes. The two directions are not symmetric:
# - a flow expected OPEN may only be declared closed after OPEN_TIMEOUT_S without a connection
#   and its service's banner: 2 s covers one lost SYN (Linux's initial retransmission timeout is
#   1 s) on a busy machine, so a false "closed" for a flow that works stays impossible at normal
#   load. A batch returns as soon as every flow in it has connected, so this costs nothing when
#   all is well. A first try of OPEN_FIRST_TRY_S only decides what to do next (never a verdict):
#   a flow that did not connect in it gets a second probe with the full OPEN_TIMEOUT_S (a flow
#   still closed then is asked again by the run, its expectation re-read: `agent.verify.check`).
# - a flow expected CLOSED costs its whole timeout (the twin's cuts drop packets silently). A flow
#   that should be cut and is not completes its TCP handshake in the kernel, across veths,
#   without waiting for any process to be scheduled. So it is probed for a bare handshake
#   (`handshake_probe`: no banner, a connection to anything means the cut failed, and a last
#   look after the wait, so a late thread cannot miss a handshake made in time) for
#   max(CLOSED_TIMEOUT_S, CLOSED_MARGIN x the slowest open flow of the same round), at most
#   OPEN_TIMEOUT_S. Measured on the 2-core machine during containments (`python -m
#   benchmarks.bench_contain --handshakes`): no open flow was missed even with a 1 ms wait
#   (1,638 probes), while the probing thread itself saw some handshakes up to 51 ms late (GIL,
#   scheduling). 0.1 s is two orders of magnitude above what the kernel needs and costs 0.1 s per
#   verify step; if the machine is slow right now, the open flows of the same round show it and
#   the wait grows.
# Override per verifier (keywords) or per process: CORDON_VERIFY_OPEN_TIMEOUT_S,
# CORDON_VERIFY_CLOSED_TIMEOUT_S (seconds).
OPEN_TIMEOUT_S = 2.0
OPEN_FIRST_TRY_S = 0.25
CLOSED_TIMEOUT_S = 0.1
CLOSED_MARGIN = 5.0
RETRY_PAUSE_S = 0.3

States = Mapping[str, DeviceState]


def engine_verifier(
    inv: Inventory,
    bp: Blueprint,
    *,
    settle: float = 8.0,
    open_timeout: float | None = None,
    closed_timeout: float | None = None,
    current: Callable[[], States] | None = None,
) -> Callable[[str, States], list[str]]:
    """The twin's prober alone as a flow check, outside a run (what the run does with its
    sources, with this one source): every flow touching `site` must be open or closed exactly as
    the recorded device states predict, probed by `TwinSource` (see OPEN_TIMEOUT_S above for its
    timeouts) and asked again until it settles (`agent.verify.check`). It takes an optional
    third argument, `only`: the flow names to check (the others are not probed). Returns the
    problems, one line per flow not as expected.

    `current` (the journal's `device_states`) is re-read whenever a flow is not as expected,
    before probing again. Without it the states passed are used throughout: another run changing
    a device on a flow's path after they were read makes the expectation stale, and the check
    fails after `settle` seconds."""
    source = TwinSource(inv, bp, open_timeout=open_timeout, closed_timeout=closed_timeout)

    def verify(site: str, states: States, only: Collection[str] | None = None) -> list[str]:
        mine = site_flows(inv, site, None if only is None else set(only))
        reads = [0]

        def now() -> States:
            reads[0] += 1
            return states if reads[0] == 1 or current is None else current()

        out = check_flows(inv, [source], site, mine, now, settle=settle, pause=RETRY_PAUSE_S)
        return [
            f"flow {r.flow}: expected {r.expected}, "
            f"observed {'closed' if r.expected_open else 'open'}"
            for r in out.failed()
        ]

    return verify


def _timeouts(open_timeout: float | None, closed_timeout: float | None) -> tuple[float, float]:
    """The prober's (open, closed) timeouts: given, else the settings, else the defaults."""
    config = settings.current()
    open_s = (
        open_timeout if open_timeout is not None else config.verify_open_timeout_s or OPEN_TIMEOUT_S
    )
    closed_s = (
        closed_timeout
        if closed_timeout is not None
        else config.verify_closed_timeout_s or CLOSED_TIMEOUT_S
    )
    if open_s <= 0 or closed_s <= 0:
        raise LabError("verifier timeouts must be positive")
    return open_s, closed_s


class TwinSource:
    """The twin's prober as one flow source (`twin`): each flow asked is probed from inside its
    source host's namespace, one round of the verifier's probing (`_probe_round`: the same
    timeouts and first try; see OPEN_TIMEOUT_S above), and reported as seen: OPEN when a TCP
    connection was made, CLOSED otherwise (the probe's status as the detail). The retries until
    the flows settle are the run's (`agent.verify.check`), which re-reads the expectation."""

    name = "twin"

    def __init__(
        self,
        inv: Inventory,
        bp: Blueprint,
        *,
        open_timeout: float | None = None,
        closed_timeout: float | None = None,
    ) -> None:
        self.inv, self.bp = inv, bp
        self.open_s, self.closed_s = _timeouts(open_timeout, closed_timeout)

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        return self.check_until(site, flows, expected, None)

    def check_until(
        self,
        site: str,
        flows: Sequence[Flow],
        expected: Mapping[str, bool],
        failed: Failed | None,
    ) -> list[Evidence]:
        """`check`, no longer waiting for a flow once another source has failed it (`failed`,
        the run's round: `agent.verify.check.ask`): UNKNOWN for it, naming that source (its
        probe says nothing: a flow dropped silently would only have timed out)."""
        del site  # the flows asked are probed wherever they run from
        want = {f.name: expected[f.name] for f in flows}
        obs = _probe_round(
            self.inv, self.bp, flows, want, self.open_s, self.closed_s, failed=failed
        )
        out = []
        for o in obs:
            if o.status is Status.ABANDONED:
                by = None if failed is None else failed.failed_by(o.flow.name)
                why = f"not waited for: already not as expected by {by}"
                out.append(Evidence(o.flow.name, self.name, Seen.UNKNOWN, why))
                continue
            seen, why = (
                (Seen.OPEN, "") if o.observed_open else (Seen.CLOSED, f"probe: {o.status.value}")
            )
            out.append(Evidence(o.flow.name, self.name, seen, why))
        return out


class _GiveUp:
    """A batch's targets (one per flow, in order) given up once their flow is failed (`GiveUp`
    over a round's `Failed`); its file descriptor given back by `close`."""

    def __init__(self, failed: Failed, names: Sequence[str]) -> None:
        self.failed, self.names = failed, list(names)
        self.fd = failed.watch()

    def given_up(self, index: int) -> bool:
        return self.failed.failed_by(self.names[index]) is not None

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        self.failed.unwatch(self.fd)


def _probe_round(
    inv: Inventory,
    bp: Blueprint,
    flows: Sequence[Flow],
    expected: Mapping[str, bool],
    open_timeout: float,
    closed_timeout: float,
    *,
    failed: Failed | None = None,
) -> list[FlowObservation]:
    """One round of the twin's probing, observations in the order of `flows` (`expected`:
    each flow's expected state, which decides how it is probed).

    1. Flows expected open, with their banner, for OPEN_FIRST_TRY_S (the batch ends as soon as
       all have connected). 2. Those that did not connect are probed again for the full
       `open_timeout` (the only probe that can call an expected-open flow closed). 3. Flows
       expected closed: a bare TCP handshake, its SYN sent before step 1 (so its wait runs
       while the open flows are probed, #18: the round cost their sum), looked at once more
       max(closed_timeout, CLOSED_MARGIN x the slowest open flow seen in 1-2), at most
       `open_timeout`, after the last of those SYNs left: every handshake is waited for as
       long as when it was sent after 1-2. (The run re-reads the recorded states before asking
       again about a flow not as expected: `agent.verify.check`.) With `failed`, a flow another
       source has failed is not waited for (ABANDONED) in steps 1-2; step 3's handshakes (flows
       expected closed) are not given up: their wait is bounded as above."""
    seen: dict[str, FlowObservation] = {}

    def batch(some: Sequence[Flow], timeout: float) -> list[FlowObservation]:
        if failed is None:
            return observe(inv, bp, _lookup(expected), flows=some, timeout=timeout)
        give_up = _GiveUp(failed, [f.name for f in some])
        try:
            return observe(inv, bp, _lookup(expected), some, timeout, give_up=give_up)
        finally:
            give_up.close()

    pairs = targets(inv, bp, [f for f in flows if not expected[f.name]])
    with _Handshakes([t for _, t in pairs]) as closed:
        first = [f for f in flows if expected[f.name]]
        tries = batch(first, min(OPEN_FIRST_TRY_S, open_timeout))
        missing = [
            o.flow for o in tries if not o.observed_open and o.status is not Status.ABANDONED
        ]
        seen.update(
            (o.flow.name, o) for o in tries if o.observed_open or o.status is Status.ABANDONED
        )
        if missing:
            seen.update((o.flow.name, o) for o in batch(missing, open_timeout))
        slowest_s = max((o.elapsed_ms for o in seen.values() if o.observed_open), default=0.0) / 1e3
        wait = min(max(closed_timeout, CLOSED_MARGIN * slowest_s), open_timeout)
        for (flow, _), r in zip(pairs, closed.results(wait), strict=True):
            seen[flow.name] = FlowObservation(flow, False, r.status, r.elapsed_ms)
    return [seen[f.name] for f in flows]


def handshake_probe(targets: Sequence[ProbeTarget], wait: float) -> list[ProbeResult]:
    """Can a TCP connection be made? Connect to every target at once (each socket created in
    its target's namespace), give them all `wait` seconds after the last SYN left, then look
    once more whatever the clock says: a handshake the kernel completed at any moment before
    that look is OK, even if this thread was not scheduled meanwhile (probe_tcp stops at its
    deadline without a last look, which on a busy machine can miss a connection made in time).
    No banner is read: any connection counts. Same checks as probe_tcp: SafetyError before any
    socket exists for a target outside 198.18.0.0/15. Results in target order."""
    checked = list(targets)
    validate(checked)
    if wait <= 0:
        raise LabError(f"handshake wait must be positive, got {wait}")
    with _Handshakes(checked) as probe:
        return probe.results(wait)


class _Handshakes:
    """`handshake_probe` in two halves: the SYNs sent when made (after the same checks), the
    wait counted from the last of them in `results` (so the caller may do something else
    meanwhile: its time counts in the wait, the last look is always made). Sockets closed on
    leaving the `with` block."""

    def __init__(self, targets: Sequence[ProbeTarget]) -> None:
        self.checked = list(targets)
        validate(self.checked)
        self.found: list[ProbeResult | None] = [None] * len(self.checked)
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.started: list[float] = []
        try:
            made: dict[int, socket.socket] = {}
            by_ns: dict[str, list[int]] = {}
            for i, t in enumerate(self.checked):
                by_ns.setdefault(t.netns, []).append(i)
            for ns, indices in by_ns.items():  # each namespace entered once, as `probe_tcp`
                with netns.inside(ns):
                    for i in indices:
                        made[i] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        self.socks.append(made[i])  # closed by `close` if one fails
            self.socks = [made[i] for i in range(len(self.checked))]  # in target order
            for i, t in enumerate(self.checked):
                s = made[i]
                s.setblocking(False)
                self.started.append(time.monotonic())
                err = start_connect(s, t)
                if err == errno.EINPROGRESS:
                    self.sel.register(s, selectors.EVENT_WRITE, i)
                else:
                    self._done(i, err)
        except BaseException:
            self.close()
            raise
        self.sent = time.monotonic()  # the last SYN left

    def _done(self, i: int, err: int) -> None:
        status = Status.OK if err == 0 else _status_of(err)
        ms = (time.monotonic() - self.started[i]) * 1000.0
        self.found[i] = ProbeResult(
            self.checked[i], status, round(ms, 3), errno.errorcode.get(err, "")
        )

    def results(self, wait: float) -> list[ProbeResult]:
        """Every target's result once `wait` seconds have passed since the last SYN left (at
        once if they have), after one last look; TIMEOUT for a handshake not made by then."""
        deadline = self.sent + wait
        while self.sel.get_map():
            left = deadline - time.monotonic()
            for key, _ in self.sel.select(max(left, 0.0)):  # past the deadline: the last look
                i = key.data
                self._done(i, self.socks[i].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                self.sel.unregister(self.socks[i])
            if left <= 0:
                break
        return [
            r if r is not None else ProbeResult(t, Status.TIMEOUT, wait * 1000.0, "no connection")
            for t, r in zip(self.checked, self.found, strict=True)
        ]

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.sel.close()

    def __enter__(self) -> _Handshakes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status_of(err: int) -> Status:
    if err == errno.ECONNREFUSED:
        return Status.REFUSED
    if err == errno.ETIMEDOUT:
        return Status.TIMEOUT
    return Status.UNREACHABLE


def _lookup(expected: Mapping[str, bool]) -> Expectation:
    return lambda flow: expected[flow.name]

"""The flow matrix: every declared flow probed with a real TCP connect from inside its source
host's namespace, compared with what is expected (open, or cut by the isolation in force).

Imports the inventory, the blueprint and the prober; touches no device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import click

from agent.engine.paths import flow_path
from agent.engine.state import DeviceState, flow_open
from agent.errors import LabError
from agent.inventory.models import Flow, Inventory
from agent.lab.probe import ProbeTarget, Status, probe_tcp
from agent.lab.topology import Blueprint, banner

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
) -> list[FlowObservation]:
    """Probe every flow once, in parallel; a flow not connected within `timeout` is closed."""
    pairs = targets(inv, bp, flows)
    results = probe_tcp([t for _, t in pairs], timeout=timeout)
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


def engine_verifier(
    inv: Inventory, bp: Blueprint, *, settle: float = 8.0
) -> Callable[[str, Mapping[str, DeviceState]], list[str]]:
    """A flow check for the engine's verify_flows steps on the twin: every flow touching `site`
    must be open or closed exactly as the recorded device states predict (polled until it
    settles, since other sites may be changing in parallel)."""
    paths = {f.name: flow_path(inv, f) for f in inv.flows}

    def verify(site: str, states: Mapping[str, DeviceState]) -> list[str]:
        mine = [f for f in inv.flows if site in (f.source.site, f.destination.site)]
        deadline = time.monotonic() + settle
        while True:
            expected = {f.name: flow_open(states, paths[f.name]) for f in mine}
            obs = observe(inv, bp, _lookup(expected), flows=mine, timeout=0.5)
            wrong = [
                f"flow {o.flow.name}: expected {'open' if o.expected_open else 'closed'}, "
                f"observed {'open' if o.observed_open else 'closed'}"
                for o in obs
                if not o.as_expected
            ]
            if not wrong or time.monotonic() > deadline:
                return wrong
            time.sleep(0.3)

    return verify


def _lookup(expected: Mapping[str, bool]) -> Expectation:
    return lambda flow: expected[flow.name]

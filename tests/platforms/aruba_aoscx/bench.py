"""Apply + confirm + read-back time of the aruba_aoscx driver on its twin: `measure(inv, runs)`
(the integrator's benchmarks/bench_platforms.py may call it on a running twin), or
`python -m tests.platforms.aruba_aoscx.bench [RUNS]` (root: builds the one-switch twin under
the lab lock, measures, takes it down)."""

from __future__ import annotations

import statistics
import sys
import time

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network.state import DeviceState, NftRule
from agent.platforms.aruba_aoscx import render
from agent.platforms.registry import one_shot

CUT = DeviceState(
    rules=frozenset(
        {NftRule("drop", iif="vlan120", tag="q"), NftRule("drop", oif="vlan120", tag="q")}
    )
)


def measure(inv: Inventory, runs: int = 5, device: str = "sw1") -> dict[str, float]:
    """Median seconds of: a cold session (pinned TLS + login), arm (`checkpoint auto 1` over
    SSH), apply (REST writes), read-back (verify), confirm (CLI + `show checkpoint`); and the
    whole, per run. Leaves the switch without Cordon's ACLs."""
    parts: dict[str, list[float]] = {
        k: [] for k in ("connect", "arm", "apply", "verify", "confirm", "total")
    }
    target = Target.of(inv, device)
    for n in range(runs):
        state = CUT if n % 2 == 0 else DeviceState()
        before = DeviceState() if n % 2 == 0 else CUT
        t0 = time.perf_counter()
        with one_shot(target) as drv:
            t1 = time.perf_counter()
            token = drv.arm_revert(ChangeSet(tuple(render.script(before).splitlines())), 60)  # type: ignore[attr-defined]
            t2 = time.perf_counter()
            drv.apply(ChangeSet(tuple(render.script(state).splitlines())))
            t3 = time.perf_counter()
            drv.verify(
                Expectation(table_present=bool(state.rules), rule_comments=render.comments(state))
            )
            t4 = time.perf_counter()
            assert drv.confirm(token)  # type: ignore[attr-defined]
            t5 = time.perf_counter()
        for key, dt in zip(
            parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True
        ):
            parts[key].append(dt)
    if runs % 2:
        with one_shot(target) as drv:
            drv.apply(ChangeSet(tuple(render.script(DeviceState()).splitlines())))
    return {k: statistics.median(v) for k, v in parts.items()}


def main() -> None:
    from agent.lab import build  # noqa: PLC0415
    from tests.platforms.aruba_aoscx.conftest import INVENTORY  # noqa: PLC0415

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    inv = load(INVENTORY)
    with build.exclusive(print):
        build.up(inv)
        try:
            figures = measure(inv, runs)
        finally:
            build.down()
    print(f"aruba_aoscx on its twin, median of {runs} runs (s):")
    for key, value in figures.items():
        print(f"  {key:8} {value:.3f}")


if __name__ == "__main__":
    main()

"""Apply + read-back time of one change on a Stormshield twin appliance: `measure` (callable by
`benchmarks.bench_platforms`) times, on a running twin, the whole Cordon rule set of a zone cut
converged and activated then verified, and its removal, over a warm session and over a new
session each time. `python -m benchmarks.bench_stormshield [--runs N]` brings up the small
two-appliance twin (tests/platforms/stormshield/data/ght-armor.yaml) under the machine's twin
lock, measures, and takes it down."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.network.state import DeviceState, NftRule
from agent.platforms.stormshield import render
from agent.platforms.stormshield.driver import StormshieldDriver

ARMOR = Path(__file__).resolve().parents[1] / "tests/platforms/stormshield/data/ght-armor.yaml"


def _change(drv: StormshieldDriver, state: DeviceState) -> None:
    drv.apply(ChangeSet(tuple(render.script(state).splitlines())))
    drv.verify(Expectation(table_present=bool(state.rules), rule_comments=render.comments(state)))


def measure(
    inv: Inventory, device: str = "cb-sns", a: str = "lan1.110", b: str = "lan1.120", runs: int = 5
) -> dict[str, float]:
    """Median seconds of apply + read-back of a zone cut (2 rules) and of its removal: `warm`
    on one session, `cold` with a new pinned session (TLS + login) each time."""
    cut = DeviceState(
        rules=frozenset([NftRule("drop", a, b, tag="bench"), NftRule("drop", b, a, tag="bench")])
    )
    warm: list[float] = []
    cold: list[float] = []
    drv = StormshieldDriver(Target.of(inv, device))
    try:
        for _ in range(runs):
            for state in (cut, DeviceState()):
                t0 = time.perf_counter()
                _change(drv, state)
                warm.append(time.perf_counter() - t0)
    finally:
        drv.close()
    for _ in range(runs):
        for state in (cut, DeviceState()):
            t0 = time.perf_counter()
            one = StormshieldDriver(Target.of(inv, device))
            try:
                _change(one, state)
            finally:
                one.close()
            cold.append(time.perf_counter() - t0)
    return {"warm_s": statistics.median(warm), "cold_s": statistics.median(cold)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    inv = load(ARMOR)
    with build.exclusive(print):
        build.up(inv)
        try:
            out = measure(inv, runs=args.runs)
        finally:
            build.down()
    print(
        f"stormshield apply + read-back per change (median of {2 * args.runs}): "
        f"warm {out['warm_s'] * 1000:.0f} ms, "
        f"cold (new pinned session) {out['cold_s'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()

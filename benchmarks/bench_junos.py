"""Benchmark of the juniper_junos driver on its twin (tests/platforms/juniper_junos/data): the
time of one guarded change as the executor makes it, apply + confirm + read-back, cold (a new
NETCONF session: SSH, pinned host key, subsystem, hello) and warm (the same session):
`arm_revert` (reads the committed configuration), `apply` (lock, load set, commit check,
commit confirmed 1, unlock), `verify` (committed configuration read back, exact names),
`confirm` (commit history, commit, commit history and configuration read back). Each run is
undone (untimed) before the next. `measure(inv, device, runs)` is what a cross-platform benchmark
calls with a twin up.

Run as root, with no twin up: `.venv/bin/python -m benchmarks.bench_junos [--runs N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from agent.drivers.base import ChangeSet, Driver, Expectation, Target
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.network.state import DeviceState, NftRule
from agent.platforms.capabilities import DeadMan, require
from agent.platforms.juniper_junos import render
from agent.platforms.registry import driver_for

DATA = Path(__file__).resolve().parents[1] / "tests/platforms/juniper_junos/data/junos-site.yaml"
STATE = DeviceState(
    rules=frozenset(
        [
            NftRule("accept", "irb.110", "irb.120", "198.18.91.10", "198.18.92.10", None, 2575),
            NftRule("accept", "irb.120", "irb.110", "198.18.92.10", "198.18.91.10", 2575, None),
            NftRule("drop", "irb.130", "irb.120"),
            NftRule("drop", "irb.120", "irb.130"),
        ]
    )
)


def _cs(state: DeviceState) -> ChangeSet:
    return ChangeSet(tuple(render.filters_script(state).splitlines()), action="bench")


def guarded_change(d: Driver) -> None:
    """What the executor does for a guarded step: arm, apply, read back, confirm."""
    dm = require(d, DeadMan)
    token = dm.arm_revert(_cs(DeviceState()), 60.0)
    d.apply(_cs(STATE))
    d.verify(Expectation(table_present=True, rule_comments=render.filter_names(STATE)))
    if not dm.confirm(token):
        raise RuntimeError("the confirm did not take")


def measure(inv: Inventory, device: str, runs: int) -> dict[str, float]:
    """Median seconds of a guarded change, cold and warm, on `device` of a running twin."""
    cold: list[float] = []
    warm: list[float] = []
    target = Target.of(inv, device)
    keep = driver_for(target)
    for _ in range(runs):
        d = driver_for(target)
        t = time.perf_counter()
        d.connect()
        guarded_change(d)
        cold.append(time.perf_counter() - t)
        d.apply(_cs(DeviceState()))
        d.close()
        keep.connect()
        t = time.perf_counter()
        guarded_change(keep)
        warm.append(time.perf_counter() - t)
        keep.apply(_cs(DeviceState()))
    keep.close()
    return {
        "cold_s": round(statistics.median(cold), 3),
        "warm_s": round(statistics.median(warm), 3),
        "cold_min_s": round(min(cold), 3),
        "warm_min_s": round(min(warm), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    inv = load(DATA)
    with build.exclusive(print):
        build.up(inv)
        try:
            print(json.dumps({"juniper_junos rv-ex1": measure(inv, "rv-ex1", args.runs)}))
        finally:
            build.down()


if __name__ == "__main__":
    main()

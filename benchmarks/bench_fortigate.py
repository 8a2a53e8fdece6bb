"""FortiGate apply + read-back time per change on its twin (tests/platforms/fortigate/data):
`apply_readback(inv, device, n)` alternates a WAN cut and its undo through the fortigate driver
and returns the seconds of each apply+verify; `python -m benchmarks.bench_fortigate [N]` builds
the small twin under the machine-wide lock, measures, prints the median, takes the twin down."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.network.state import DeviceState, NftRule
from agent.platforms.fortigate import render
from agent.platforms.fortigate.driver import FortiGateDriver

INV = (
    Path(__file__).parents[1]
    / "tests"
    / "platforms"
    / "fortigate"
    / "data"
    / "fortigate-small.yaml"
)


def apply_readback(inv: Inventory, device: str, n: int, wan: str = "wan1") -> list[float]:
    """Seconds of each of `n` changes (apply then verify by read-back), on a warm connection."""
    cut = DeviceState(rules=frozenset({NftRule("drop", iif=wan), NftRule("drop", oif=wan)}))
    d = FortiGateDriver(Target.of(inv, device))
    out = []
    try:
        for i in range(n):
            state = cut if i % 2 == 0 else DeviceState()
            t = time.perf_counter()
            d.apply(ChangeSet(tuple(render.script(state).splitlines())))
            d.verify(
                Expectation(table_present=bool(state.rules), rule_comments=render.comments(state))
            )
            out.append(time.perf_counter() - t)
    finally:
        d.close()
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    inv = load(INV)
    with build.exclusive(print):
        build.up(inv)
        try:
            times = apply_readback(inv, "fg-fw", n)
        finally:
            build.down()
    print(
        f"fortigate apply + read-back: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {n} changes (a 2-policy WAN cut, then its undo)"
    )


if __name__ == "__main__":
    main()

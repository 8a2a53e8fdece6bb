"""apply + confirm + read-back time of the cisco_iosxe driver on its twin, beside today's
cisco_ios driver (FRR's vtysh in the twin): `python -m benchmarks.bench_iosxe [--runs N]` (root;
builds each twin in turn under the lab lock). `measure` is what benchmarks/bench_platforms.py
calls: one device, one interface, N runs of shut + read-back + reopen + read-back, and, where
the driver has a native dead-man, N runs of arm + ACL apply + read-back + confirm."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.network.state import DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import DeadMan, having

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    (ROOT / "tests/platforms/cisco_iosxe/data/iosxe-pair.yaml", "site-sw", "Gi1/0/5", "Vlan110"),
    (ROOT / "tests/data/ght-vallee.yaml", "hn-sw-a", "Gi1/0/8", None),
]


def measure(
    inv: Inventory, device: str, iface: str, svi: str | None, runs: int
) -> dict[str, float]:
    """Median seconds of each operation on a connected driver (connection excluded)."""
    spec = registry.platform(inv.find_device(device)[1].platform)  # type: ignore[index]
    assert spec.shut_lines is not None
    out: dict[str, list[float]] = {"shut+verify": [], "reopen+verify": []}
    with registry.one_shot(Target.of(inv, device)) as drv:
        for _ in range(runs):
            for key, down in (("shut+verify", True), ("reopen+verify", False)):
                t = time.perf_counter()
                drv.apply(ChangeSet(tuple(spec.shut_lines([iface], down=down)), action="bench"))
                drv.verify(Expectation(admin_up={iface: not down}))
                out[key].append(time.perf_counter() - t)
        dm = having(drv, DeadMan)
        if dm is not None and spec.rules is not None and svi is not None:
            state = DeviceState(rules=frozenset({NftRule("drop", iif=svi, tag="bench")}))
            block = ChangeSet(tuple(spec.rules.script(state).splitlines()), action="bench")
            clear = ChangeSet(tuple(spec.rules.script(DeviceState()).splitlines()), action="b")
            out["arm+acl apply+verify+confirm"] = []
            for _ in range(runs):
                t = time.perf_counter()
                token = dm.arm_revert(clear, 60)
                drv.apply(block)
                drv.verify(
                    Expectation(table_present=True, rule_comments=spec.rules.comments(state))
                )
                assert dm.confirm(token)
                out["arm+acl apply+verify+confirm"].append(time.perf_counter() - t)
                drv.apply(clear)
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("CORDON_TWIN_IOSXE_MINUTE_S", "60")
    for path, device, iface, svi in CASES:
        inv = load(path)
        with build.exclusive(print):
            build.up(inv, lab="bnch")
            try:
                got = measure(inv, device, iface, svi, args.runs)
            finally:
                build.down("bnch")
        platform = inv.find_device(device)[1].platform  # type: ignore[index]
        print(f"{platform} ({device}, median of {args.runs}): {got}")


if __name__ == "__main__":
    main()

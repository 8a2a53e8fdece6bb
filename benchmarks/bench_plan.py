"""Benchmark of planning: a synthetic group of 100 sites x 10 devices (aim: plan under 1 s),
next to the naive alternative of recomputing every flow's path at every step.

Run: `.venv/bin/python -m benchmarks.bench_plan`. Pure: touches no device, needs no root.
"""

from __future__ import annotations

import statistics
import time

from agent.engine.plan import plan
from agent.inventory.models import Inventory
from agent.network.paths import flow_path
from agent.network.state import flow_open
from agent.playbook.models import Playbook
from benchmarks.machine import describe
from scripts.synth import synthetic

PLAYBOOK = {
    "name": "isolate-all",
    "level": "L3",
    "steps": [
        {
            "name": "cut-l1",
            "action": "cut_link",
            "kinds": ["internet", "remote_access", "vendor_maintenance"],
        },
        {"name": "cut-wan", "action": "cut_link", "kinds": ["wan"]},
        {
            "name": "segment",
            "action": "block_zones",
            "between": {"zones": ["admin", "servers", "guest", "building"]},
            "and": {"criticality": ["life_critical", "clinical"]},
        },
    ],
}


def timed(fn: object, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    print(describe())
    t = time.perf_counter()
    inv = Inventory.model_validate(synthetic(100, devices_per_site=10))
    load_s = time.perf_counter() - t
    pb = Playbook.model_validate(PLAYBOOK)
    n_dev = sum(len(s.devices) for s in inv.sites)
    p = plan(pb, inv)
    print(
        f"group: {len(inv.sites)} sites, {n_dev} devices, {len(inv.flows)} flows; "
        f"plan: {len(p.changes)} device changes, "
        f"{sum(fi.change == 'cut' for fi in p.impact)} flows cut, refusals {len(p.refusals)}"
    )
    plan_s = timed(lambda: plan(pb, inv))
    replan_s = timed(lambda: plan(pb, inv, current=p.final_state))

    def naive() -> None:
        # recompute every path and every flow's state after each step of each site
        for _site in range(len(inv.sites) // 10):  # a tenth of the sites, scaled below
            for _step in PLAYBOOK["steps"]:
                for f in inv.flows:
                    flow_open(p.final_state, flow_path(inv, f))

    naive_s = timed(naive, runs=1) * 10
    print(f"{'measure':<42}{'seconds':>10}")
    print(f"{'inventory validation (100 x 10)':<42}{load_s:>10.3f}")
    print(f"{'plan (median of 5)':<42}{plan_s:>10.3f}   aim < 1 s")
    print(f"{'re-plan on the planned state (idempotent)':<42}{replan_s:>10.3f}")
    print(f"{'naive: re-evaluate all flows at each step':<42}{naive_s:>10.3f}   (scaled from 10%)")


if __name__ == "__main__":
    main()

"""Benchmark of planning: a synthetic group of 100 sites x 20 devices, 2,000 devices (aim: plan
under 1 s, #16 and #18), next to the naive alternative of recomputing every flow's path at every
step. Wall time and the process's CPU time (the machine is shared: CPU time is what the plan
costs, wall time what a person waits).

Run: `.venv/bin/python -m benchmarks.bench_plan [--sites 100] [--per-site 20]`. Pure: touches
no device, needs no root. (The synthetic group's address plan holds at most about 170 sites:
2,000 devices are 100 sites of 20.)
"""

from __future__ import annotations

import argparse
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


def timed(fn: object, runs: int = 5) -> tuple[float, float]:
    """(median wall s, median CPU s) of `runs` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--per-site", type=int, default=20)
    args = parser.parse_args()
    print(describe())
    t = time.perf_counter()
    inv = Inventory.model_validate(synthetic(args.sites, devices_per_site=args.per_site))
    load_s = time.perf_counter() - t
    pb = Playbook.model_validate(PLAYBOOK)
    n_dev = sum(len(s.devices) for s in inv.sites)
    p = plan(pb, inv)
    print(
        f"group: {len(inv.sites)} sites, {n_dev} devices, {len(inv.flows)} flows; "
        f"plan: {len(p.changes)} device changes, "
        f"{sum(fi.change == 'cut' for fi in p.impact)} flows cut, refusals {len(p.refusals)}"
    )
    plan_s, plan_cpu = timed(lambda: plan(pb, inv))
    replan_s, replan_cpu = timed(lambda: plan(pb, inv, current=p.final_state))

    def naive() -> None:
        # recompute every path and every flow's state after each step of each site
        for _site in range(len(inv.sites) // 10):  # a tenth of the sites, scaled below
            for _step in PLAYBOOK["steps"]:
                for f in inv.flows:
                    flow_open(p.final_state, flow_path(inv, f))

    naive_s = timed(naive, runs=1)[0] * 10
    size = f"{args.sites} x {args.per_site}"
    print(f"{'measure (median of 5)':<42}{'wall s':>8}{'CPU s':>8}")
    print(f"{f'inventory validation ({size})':<42}{load_s:>8.3f}")
    print(f"{'plan':<42}{plan_s:>8.3f}{plan_cpu:>8.3f}   aim < 1 s")
    print(f"{'re-plan on the planned state (idempotent)':<42}{replan_s:>8.3f}{replan_cpu:>8.3f}")
    print(f"{'naive: re-evaluate all flows at each step':<42}{naive_s:>8.3f}   (scaled from 10%)")


if __name__ == "__main__":
    main()

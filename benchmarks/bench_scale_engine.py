"""The engine's own CPU per device step, from 50 to 1,000 devices (#18: it grew with the number of
devices, 7.6 ms at 50 to 15.8 ms at 500, as every step re-read every device's state and every
step of the run from the journal).

A synthetic group (`scripts.synth.synthetic`, 10 devices per site) runs a containment through the
real engine: plan, a real SQLite journal (WAL, synchronous=FULL), the real audit trail, backups
into the evidence store, the site threads, the transaction (intent journaled, apply, read-back,
outcome journaled). The device side is a NULL device, in memory, that answers at once and accepts
every change (its read-back shows what was asked): it stands in for nothing the engine decides,
it only removes the network so the process's CPU is the engine's. The figure is the process's
CPU time (`time.process_time`, all threads) over the run, divided by the run's device steps.

Run: `.venv/bin/python -m benchmarks.bench_scale_engine [--sizes 50 100 250 500 1000]`. Pure:
touches no device, needs no root. Writes its journal, audit log and evidence in a temporary
directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from agent.drivers.base import ApplyResult, ChangeSet, Expectation, Facts, InterfaceState
from agent.drivers.pool import Pool
from agent.engine import store
from agent.engine.journal import Journal
from agent.inventory.models import Inventory
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from benchmarks.machine import describe
from scripts.synth import synthetic
from tests.engine.fakes import FakeSwitch, World

# every firewall's four links cut (3 steps), then the non-critical zones' ports shut on every
# switch that carries them: a device step on most devices of every site
PLAYBOOK = {
    "name": "contain-all",
    "level": "L3",
    "steps": [
        {
            "name": "cut-l1",
            "action": "cut_link",
            "kinds": ["internet", "remote_access", "vendor_maintenance"],
        },
        {"name": "cut-wan", "action": "cut_link", "kinds": ["wan"]},
        {"name": "ports", "action": "shut_zone_ports", "zones": ["guest", "admin", "building"]},
    ],
}


class NullDevice(FakeSwitch):
    """The engine tests' fake switch (no session; facts and backup in memory) that takes every
    change at once and reads back what was asked: no network, no parsing, no port state."""

    def apply(self, changes: ChangeSet) -> ApplyResult:
        return ApplyResult(self.target.name, changes.action, changes.commands, "", 0.0)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        shown = tuple(InterfaceState(n, up) for n, up in expect.admin_up.items())
        return Facts(self.target.name, self.target.device.platform, self.via, shown)


GROUPED = store.GROUP_MAX


def measure(n_devices: int, tmp: Path, label: str) -> tuple[int, int, float, float, float]:
    """(devices, device steps, CPU s, wall s, plan s) of one containment of `n_devices`."""
    inv = Inventory.model_validate(synthetic(max(1, n_devices // 10), devices_per_site=10))
    pb = Playbook.model_validate(PLAYBOOK)
    journal = Journal(tmp / f"journal-{n_devices}-{label.replace(' ', '-')}.sqlite")
    world = World()
    with Pool(inv, keepalive=None, factory=lambda t, _o, via: NullDevice(t, world, via)) as pool:
        ex = Executor(inv, journal, pool, actor="bench")
        ex.deadman = 0.0  # a null device has no revert timer; nothing to arm
        t = time.perf_counter()
        p = ex.plan(pb)
        plan_s = time.perf_counter() - t
        if p.refusals:
            raise SystemExit(f"the plan was refused: {p.refusals[:3]}")
        cpu, wall = time.process_time(), time.perf_counter()
        report = ex.run(pb)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    journal.close()
    if report.status != "done":
        raise SystemExit(f"run {report.run_id}: {report.status}")
    return len(inv.devices()), len(p.changes), cpu, wall, plan_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 250, 500, 1000])
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="cordon-bench-scale-") as tmp:
        os.environ.setdefault("CORDON_LOG_DIR", str(Path(tmp) / "log"))
        os.environ.setdefault("CORDON_STATE_DIR", str(Path(tmp) / "state"))
        print(
            f"{'devices':>8}{'steps':>8}{'journal commits':>17}{'CPU s':>9}{'wall s':>9}"
            f"{'CPU ms/step':>13}{'plan s':>9}"
        )
        for n in args.sizes:
            # side by side: the journal's group commit (the daemon's), and one COMMIT (one
            # fsync) per write transaction, as before it
            for label, group in (("grouped", store.GROUP_MAX), ("one each", 1)):
                store.GROUP_MAX = group
                try:
                    devices, steps, cpu, wall, plan_s = measure(n, Path(tmp), label)
                finally:
                    store.GROUP_MAX = GROUPED
                print(
                    f"{devices:>8}{steps:>8}{label:>17}{cpu:>9.2f}{wall:>9.2f}"
                    f"{cpu * 1000 / steps:>13.2f}{plan_s:>9.2f}"
                )


if __name__ == "__main__":
    main()

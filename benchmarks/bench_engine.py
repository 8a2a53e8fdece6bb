"""Benchmark of the engine's overhead on the twin: preventive-degraded on all 9 sites through the
engine (journal, locks, backups, read-back) against the same plan applied with the drivers alone
(apply + read-back, same parallelism), warm pool, in one run; then rollback through the engine.

Run as root: `.venv/bin/python -m benchmarks.bench_engine [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from agent.drivers.base import ChangeSet, Driver, Expectation, Via
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import Plan
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.state import LabState
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from agent.run.transaction import expectation
from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parents[1]


def _apply(change: ChangeSet, d: Driver) -> object:
    return d.apply(change)


def _verify(exp: Expectation, d: Driver) -> object:
    return d.verify(exp)


def raw(pool: Pool, p: Plan, undo: bool = False) -> float:
    """The plan's changes with the drivers only: per site in parallel, in order within a site."""

    def site(name: str) -> None:
        changes = [c for s in p.steps if s.site == name for c in s.changes]
        for c in reversed(changes) if undo else changes:
            via: Via = "snmp" if c.method == "snmp" else "ssh"
            lines = c.undo if undo else c.commands
            exp = (
                expectation(c.method, c.after, c.before)
                if undo
                else expectation(c.method, c.before, c.after)
            )
            change = ChangeSet(lines)
            pool.run(c.device, partial(_apply, change), via=via)
            pool.run(c.device, partial(_verify, exp), via=via)

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as ex:
        list(ex.map(site, p.sites))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    inv = load(ROOT / "inventory" / "hospi-grand-ouest.yaml")
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv)
    with build.exclusive(print):
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        build.up(inv)
        try:
            results = measure(inv, pb, args.runs)
        finally:
            build.down()
    engine_s, raw_s, back_s, steps, devices = results
    med_e, med_r = statistics.median(engine_s), statistics.median(raw_s)
    print(
        f"preventive-degraded on 9 sites: {steps} device steps on {devices} devices, warm "
        f"pool, median of {args.runs}"
    )
    print(f"{'measure':<40}{'seconds':>9}")
    print(f"{'engine run (journal, locks, read-back)':<40}{med_e:>9.3f}")
    print(f"{'drivers only (apply + read-back)':<40}{med_r:>9.3f}")
    print(f"{'engine rollback (dead-man armed)':<40}{statistics.median(back_s):>9.3f}")
    print(
        f"engine overhead: {(med_e - med_r) * 1000 / steps:.1f} ms per device step "
        f"({med_e / med_r:.2f}x the drivers alone)"
    )


def measure(
    inv: object, pb: object, runs: int
) -> tuple[list[float], list[float], list[float], int, int]:

    assert isinstance(inv, Inventory)
    assert isinstance(pb, Playbook)
    engine_s, raw_s, back_s = [], [], []
    steps = devices = 0
    with tempfile.TemporaryDirectory() as tmp, Pool(inv, keepalive=None) as pool:
        pool.warm([d.name for _, d in inv.devices()])
        for i in range(runs):
            journal = Journal(Path(tmp) / f"j{i}.sqlite")
            ex = Executor(inv, journal, pool, actor="bench")
            p = ex.plan(pb)
            steps, devices = len(p.changes), len({c.device for c in p.changes})
            t = time.perf_counter()
            report = ex.run(pb)
            engine_s.append(time.perf_counter() - t)
            assert report.status == "done", report.outcomes
            t = time.perf_counter()
            ex.rollback(report.run_id)
            back_s.append(time.perf_counter() - t)
            journal.close()
            raw_s.append(raw(pool, p))
            raw(pool, p, undo=True)
    return engine_s, raw_s, back_s, steps, devices


if __name__ == "__main__":
    main()

"""Benchmark of the journal's write throughput on both backends, side by side in one run: steps
journaled per second with the executor's access pattern per device step (read its step's rows
and its device's backup, check that the journal is still there and that nobody asked to stop,
journal the intent `started`, then `applied`, read the device's recorded state, then `verified`
with its new state: three write transactions and four reads; beside it the same with the
reads of before #18, whole: every step of the run, every backup, every device's state), by one
site thread and by several site threads sharing one journal (as the executor's workers do), and
by several daemons' worth of handles (one connection each).

SQLite: a file in a temporary directory (WAL, synchronous=FULL, as the daemon). PostgreSQL: a
throwaway cluster of Debian's server (tests/pgserver.py) on this machine's disk, fsync on and
synchronous_commit on (the journal's durability), over its Unix socket.

Run: .venv/bin/python benchmarks/bench_journal.py [--steps N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from agent.engine.journal import Journal, NewStep
from agent.network.state import DeviceState, NftRule
from agent.status import RunStatus, StepStatus
from benchmarks.machine import describe
from tests.pgserver import PgServer

AFTER = DeviceState(
    down=frozenset({("gi3", "cli"), ("gi4", "cli")}),
    rules=frozenset({NftRule("drop", iif="inet0", tag="cordon-cut")}),
)


def steps(n: int, sites: int) -> list[NewStep]:
    return [
        NewStep(
            seq,
            f"site{seq % sites}",
            "isolate",
            f"dev{seq}",
            "cli",
            ("interface gi3", "shutdown"),
            ("interface gi3", "no shutdown"),
            DeviceState(),
            AFTER,
        )
        for seq in range(1, n + 1)
    ]


def one_step(j: Journal, run_id: str, seq: int, site: str) -> None:
    """What the executor journals around one device step (agent/run/walk.py, transaction.py):
    its step's rows at its site, its device's backup and recorded state, each by key."""
    j.steps(run_id, site=site, step="isolate")
    j.backup(run_id, f"dev{seq}")
    j.lost()
    j.stop_requested(run_id)
    j.mark(run_id, seq, StepStatus.STARTED)
    j.mark(run_id, seq, StepStatus.APPLIED)
    j.device_state(f"dev{seq}")
    j.settle_step(run_id, seq, StepStatus.VERIFIED, f"dev{seq}", AFTER)


def one_step_whole(j: Journal, run_id: str, seq: int, site: str) -> None:
    """The same before #18: every step of the run, every backup and every device's state read
    whole at every step (what grew with the group)."""
    [r for r in j.steps(run_id) if r.site == site and r.step == "isolate"]
    j.backups(run_id)
    j.lost()
    j.stop_requested(run_id)
    j.mark(run_id, seq, StepStatus.STARTED)
    j.mark(run_id, seq, StepStatus.APPLIED)
    j.device_states()
    j.settle_step(run_id, seq, StepStatus.VERIFIED, f"dev{seq}", AFTER)


PATTERNS = {"by key": one_step, "whole (before #18)": one_step_whole}


def bench(
    open_journal: Callable[[], Journal],
    n: int,
    threads: int,
    handles: int,
    step: Callable[[Journal, str, int, str], None] = one_step,
) -> float:
    """Steps per second: `n` steps over `threads` site threads, sharing `handles` journals."""
    journals = [open_journal() for _ in range(handles)]
    run_id = f"bench-{threads}-{handles}-{time.monotonic_ns()}"
    journals[0].start_run(
        run_id, "pb", "L2", [f"site{i}" for i in range(threads)], "bench", steps(n, threads)
    )

    def site(i: int) -> None:
        j = journals[i % handles]
        for seq in range(1, n + 1):
            if seq % threads == i:
                step(j, run_id, seq, f"site{i}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(site, range(threads)))
    elapsed = time.perf_counter() - start
    assert {r.status for r in journals[0].steps(run_id)} == {StepStatus.VERIFIED}
    journals[0].finish_run(run_id, RunStatus.DONE)  # the sites' locks released
    for j in journals:
        j.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    print(describe())
    cases = [
        ("1 site thread", 1, 1),
        (f"{args.threads} site threads, one journal", args.threads, 1),
        (f"{args.threads} site threads, {args.threads} handles", args.threads, args.threads),
    ]
    with tempfile.TemporaryDirectory() as tmp, PgServer.start(fsync=True) as pg:
        url = pg.database()
        with psycopg.connect(url) as db:
            server = db.execute("SHOW server_version").fetchone()
        print(
            f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL) in {tmp}; PostgreSQL "
            f"{server[0] if server else '?'} (fsync on, synchronous_commit on, Unix socket), "
            f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__} libpq {psycopg.pq.version()})"
        )
        print(
            f"{args.steps} device steps per case; 3 write transactions + 4 reads per step, the "
            "reads by key (now) or whole (before #18), side by side"
        )
        print(f"{'case':<58} {'sqlite steps/s':>15} {'postgresql steps/s':>19}")
        for label, threads, handles in cases:
            for name, step in PATTERNS.items():
                lite = bench(
                    lambda: Journal(Path(tmp) / "journal.sqlite"),
                    args.steps,
                    threads,
                    handles,
                    step,
                )
                post = bench(lambda: Journal(url), args.steps, threads, handles, step)
                load = os.getloadavg()[0]
                print(
                    f"{f'{label}, {name}':<58} {lite:>15.0f} {post:>19.0f}   "
                    f"(load average {load:.1f})"
                )


if __name__ == "__main__":
    main()

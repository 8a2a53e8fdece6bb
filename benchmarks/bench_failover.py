"""Benchmark of active/standby failover on PostgreSQL: the time from the active node going silent
to a standby holding the lease (epoch + 1), for a frozen active (SIGSTOP: the classic fencing
case; resumed afterwards, the time it takes to say it stepped down is measured too) and a killed
one (SIGKILL), with the default bound (10 s) or another (--bound). And the fence's cost: a
journal write transaction with and without the lease condition.

Each node is a real process running the daemon's lease loop (`agent.engine.lease.LeaseLoop`) on
a throwaway cluster of Debian's server (tests/pgserver.py), over its Unix socket; a node prints
each role change with the time. What a daemon adds on becoming active (its scheduler, the open
runs) comes after the lease and is not part of this figure.

Run: .venv/bin/python benchmarks/bench_failover.py [--bound S] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.engine.journal import Journal, NewStep
from agent.engine.lease import Lease, LeaseLoop, Timing
from agent.network.state import NORMAL
from agent.status import StepStatus
from benchmarks.machine import describe
from tests.pgserver import PgServer


def node_main(url: str, node: str, bound: float) -> None:
    """A node: the lease loop, each role change printed as `<role> <epoch> <time>`."""

    def say(role: str, epoch: int) -> None:
        sys.stdout.write(f"{role} {epoch} {time.time():.4f}\n")
        sys.stdout.flush()

    loop = LeaseLoop(
        Lease(url, node, Timing(bound)),
        on_active=lambda e: say("active", e),
        on_lost=lambda e, _why: say("down", e),
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop.start()
    threading.Event().wait()


class Proc:
    def __init__(self, url: str, node: str, bound: float) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--node", node, "--url", url, "--bound", str(bound)],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, word: str, timeout: float = 120) -> tuple[int, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                parts = line.split()
                if parts and parts[0] == word:
                    return int(parts[1]), float(parts[2])
            time.sleep(0.005)
        raise SystemExit(f"no '{word}' within {timeout} s: {self.lines}")

    def end(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


Result = tuple[float, float, float]  # seconds to a new holder, to saying "down", the epoch


def failovers(url: str, bound: float, rounds: int, how: signal.Signals) -> list[Result]:
    out = []
    active = Proc(url, "n0", bound)
    active.wait_for("active")
    for i in range(rounds):
        standby = Proc(url, f"n{i + 1}", bound)
        while "ready" not in standby.lines:
            time.sleep(0.01)
        time.sleep(Timing(bound).renew_s)  # the standby has tried at least once: standby
        silent = time.time()
        os.kill(active.proc.pid, how)
        epoch, at = standby.wait_for("active")
        down = float("nan")
        if how == signal.SIGSTOP:
            os.kill(active.proc.pid, signal.SIGCONT)
            resumed = time.time()
            _e, said = active.wait_for("down")
            down = said - resumed
        out.append((at - silent, down, float(epoch)))
        active.end()
        active = standby
    active.end()
    return out


def fence_cost(url: str, n: int) -> tuple[float, float]:
    """Seconds per step-mark write transaction: unfenced, fenced."""
    lease = Lease(url, "bench", Timing(60.0))
    epoch = lease.acquire() or 0
    j = Journal(url)
    rows = [
        NewStep(k, "s", "isolate", f"d{k}", "cli", ("x",), ("y",), NORMAL, NORMAL)
        for k in range(1, 2 * n + 1)
    ]
    j.start_run("bench", "pb", "L1", ["s"], "bench", rows)
    timings = []
    for fenced, seqs in ((False, range(1, n + 1)), (True, range(n + 1, 2 * n + 1))):
        j.fence = lease.fence(epoch) if fenced else None
        t = time.perf_counter()
        for seq in seqs:
            j.mark("bench", seq, StepStatus.STARTED)
        timings.append((time.perf_counter() - t) / n)
    j.close()
    lease.close()
    return timings[0], timings[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bound", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--node")
    ap.add_argument("--url")
    args = ap.parse_args()
    if args.node:
        node_main(args.url, args.node, args.bound)
        return
    print(describe())
    with PgServer.start() as server:
        t = Timing(args.bound)
        print(
            f"bound {args.bound:g} s: lease {t.ttl_s:.2f} s, renewed (and tried by a standby) "
            f"every {t.renew_s:.2f} s, fenced writes need {t.margin_s:.2f} s of lease left"
        )
        for how in (signal.SIGSTOP, signal.SIGKILL):
            res = failovers(server.database(), args.bound, args.rounds, how)
            took = [r[0] for r in res]
            print(
                f"{how.name}: standby active after {statistics.median(took):.2f} s median, "
                f"{max(took):.2f} s max over {len(took)} (bound {args.bound:g} s); epochs "
                + ", ".join(str(int(r[2])) for r in res)
            )
            if how == signal.SIGSTOP:
                print(
                    "  the frozen node, resumed, said it stepped down after "
                    + ", ".join(f"{r[1] * 1000:.0f} ms" for r in res)
                )
        plain, fenced = fence_cost(server.database(), 500)
        print(
            f"a step write transaction: {plain * 1000:.2f} ms unfenced, {fenced * 1000:.2f} ms "
            f"fenced (+{(fenced - plain) * 1000:.2f} ms: the lease row read FOR SHARE)"
        )


if __name__ == "__main__":
    main()

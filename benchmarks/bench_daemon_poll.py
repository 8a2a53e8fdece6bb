"""Benchmark of the daemon's health polling: memory (RSS, PSS) and CPU (% of one core) of the
poller (`agent.service.poll.Poller`, the code the daemon runs) reading a synthetic fleet of ~500
devices every period, measured from outside in a subprocess over several periods, with an
alternative side by side in the same run.

The fleet (`benchmarks.fleet`): 50 sites x 10 devices + the core (502 devices: 51 nftables
firewalls read over SSH and SNMP, 451 switches over SNMP) on one namespace of the twin's
management network, every device recorded as isolated (the heaviest poll: all are read).

Variants (`--variants`, default daemon,warm,fresh): `daemon`: the pool as
`agent.service.service` makes it (every session kept, keepalive pings every 30 s), the Poller's
defaults (16 workers); `warm`: the same pool without keepalive (the polls keep it warm);
`fresh`: a new pool every period (a connection per device per poll); `sequential`: `warm` read
by one worker. Every variant uses the real drivers: the SNMP ones share pysnmp engines
(`agent.drivers.snmp`: one engine for the whole fleet, whose devices share one user and keys).

Run as root: `.venv/bin/python -m benchmarks.bench_daemon_poll [--period 30 --polls 4]`
(`--period 5 --polls 3` for a quick run). Brings the twin up if it is down (and down after),
takes the fleet down in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.machine import describe, memory_kib

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "daemon": "daemon's pool (keepalive 30 s), 16 workers",
    "warm": "warm pool, no keepalive, 16 workers",
    "fresh": "new sessions every poll, 16 workers",
    "sequential": "warm pool, no keepalive, 1 worker",
}
DEFAULT_VARIANTS = ("daemon", "warm", "fresh")
TICK = os.sysconf("SC_CLK_TCK")


# -- the measured process ----------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Poll the fleet `--polls` times, one poll per `--period`, after one warm-up poll; report
    each poll on stdout (JSON lines) and wait for the parent before exiting."""
    from agent.drivers import snmp  # noqa: PLC0415
    from agent.drivers.pool import Pool  # noqa: PLC0415
    from agent.inventory import load  # noqa: PLC0415
    from agent.service.health import HealthStore  # noqa: PLC0415 - the child's own imports
    from agent.service.poll import Poller  # noqa: PLC0415
    from benchmarks.fleet import fleet_states  # noqa: PLC0415

    def snmp_engines() -> int:
        """pysnmp engines the SNMP drivers hold (read off the loop thread: a glance only)."""
        return len(snmp._engines.slots)

    def say(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    inv = load(args.inventory)
    states = fleet_states(inv)
    n = len(states)
    store = HealthStore(Path(os.environ["CORDON_STATE_DIR"]) / "health.sqlite")
    workers = 1 if args.child == "sequential" else args.workers

    # as agent.service.service.Service makes it (keepalive only in the `daemon` variant)
    keepalive = 30.0 if args.child == "daemon" else None

    def new_pool() -> Pool:
        return Pool(inv, keepalive=keepalive, max_size=max(64, 2 * n))

    pool = new_pool()
    poller = Poller(inv, pool, lambda: states, store, workers=workers, device_timeout=30.0)

    def poll(n_poll: int, phase: str) -> None:
        nonlocal pool
        if args.child == "fresh" and n_poll > 0:
            pool.close()
            pool = poller.pool = new_pool()
        t, c = time.perf_counter(), time.process_time()
        report = poller.poll_once()
        say(
            event="poll",
            phase=phase,
            wall_s=round(time.perf_counter() - t, 4),
            cpu_s=round(time.process_time() - c, 4),
            counts=report.counts(),
            opened=len(report.opened),
            sessions=len(pool.status()),
            snmp_engines=snmp_engines(),
        )

    poll(0, "warm-up")
    say(event="window_start")
    for i in range(1, args.polls + 1):
        t0 = time.monotonic()
        poll(i, "measured")
        time.sleep(max(0.0, args.period - (time.monotonic() - t0)))
    say(event="window_end")
    sys.stdin.readline()  # the parent has read our counters
    poller.close()
    pool.close()
    store.close()


# -- the measuring process ---------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    warmup_s: float = 0.0
    polls_s: list[float] = field(default_factory=list)
    polls_cpu_s: list[float] = field(default_factory=list)
    cpu_pct: float = 0.0
    idle_pct: float | None = None
    rss_mib: float = 0.0
    pss_mib: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    sessions: int = 0


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, every thread


def measure(variant: str, inventory: str, args: argparse.Namespace) -> Result:
    """Run one variant in a child process; its CPU over the measured window (whole periods),
    its peak RSS and PSS sampled every 0.25 s."""
    res = Result(variant)
    with tempfile.TemporaryDirectory(prefix="cordon-bench-poll-") as tmp:
        env = {
            **os.environ,
            "CORDON_LOG_DIR": str(Path(tmp) / "logs"),
            "CORDON_STATE_DIR": str(Path(tmp) / "state"),
            "PYTHONPATH": str(ROOT),
        }
        argv = [
            sys.executable, "-m", "benchmarks.bench_daemon_poll", "--child", variant,
            "--inventory", inventory, "--period", str(args.period), "--polls", str(args.polls),
            "--workers", str(args.workers),
        ]  # fmt: skip
        err_path = Path(tmp) / "child.err"
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env=env, cwd=ROOT,
            )  # fmt: skip
            assert proc.stdout is not None and proc.stdin is not None
            lines: queue.Queue[str] = queue.Queue()
            out = proc.stdout

            def pump() -> None:
                for text in out:
                    lines.put(text)

            threading.Thread(target=pump, daemon=True).start()
            cpu0 = t0 = 0.0
            in_window = False
            while True:
                try:
                    line = lines.get(timeout=0.25)
                except queue.Empty:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{variant}: the poller exited {proc.returncode}:\n"
                            + err_path.read_text()[-3000:]
                        ) from None
                    line = ""
                if in_window or not res.polls_s:
                    rss, pss = memory_kib(proc.pid)
                    res.rss_mib = max(res.rss_mib, rss / 1024)
                    res.pss_mib = max(res.pss_mib, pss / 1024)
                if not line:
                    continue
                event = json.loads(line)
                if event["event"] == "poll":
                    if event["phase"] == "warm-up":
                        res.warmup_s = event["wall_s"]
                    else:
                        res.polls_s.append(event["wall_s"])
                        res.polls_cpu_s.append(event["cpu_s"])
                    res.counts, res.sessions = event["counts"], event["sessions"]
                    shown = (
                        f"{event['wall_s']:.2f} s {event['counts']}, "
                        f"{event['snmp_engines']} SNMP engine(s)"
                    )
                    print(f"  {variant}: {event['phase']} poll {shown}")
                elif event["event"] == "window_start":
                    cpu0, t0, in_window = _cpu_ticks(proc.pid) / TICK, time.monotonic(), True
                elif event["event"] == "window_end":
                    cpu = _cpu_ticks(proc.pid) / TICK - cpu0
                    wall = time.monotonic() - t0
                    res.cpu_pct = 100 * cpu / wall
                    idle_wall = wall - sum(res.polls_s)
                    if idle_wall > 0.1 * wall:  # else polls ran back to back: no idle to speak of
                        res.idle_pct = 100 * max(0.0, cpu - sum(res.polls_cpu_s)) / idle_wall
                    proc.stdin.write("done\n")
                    proc.stdin.flush()
                    break
            proc.wait(timeout=60)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--period", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--polls", type=int, default=4, help="measured polls per variant")
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--per-site", type=int, default=10)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--inventory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from benchmarks import fleet  # noqa: PLC0415

    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    print(describe())
    results: list[Result] = []
    with fleet.on_twin(args.sites, args.per_site) as fleet_inv:
        n = len(fleet_inv.devices())
        for v in variants:
            results.append(measure(v, fleet_inv.path, args))
    report(results, n, args)


def report(results: list[Result], n: int, args: argparse.Namespace) -> None:
    print(
        f"\n{n} devices, every one recorded isolated and read each poll; period {args.period:g} s,"
        f" {args.polls} measured polls per variant (CPU over whole periods, peak memory)"
    )
    cols = (
        ("warm-up s", 10),
        ("poll s", 8),
        ("max s", 7),
        ("poll CPU s", 11),
        ("CPU %", 7),
        ("idle %", 8),
        ("RSS MiB", 9),
        ("PSS MiB", 9),
    )
    print(f"{'variant':<44}" + "".join(f"{c:>{w}}" for c, w in cols))
    for r in results:
        print(
            f"{VARIANTS[r.variant]:<44}{r.warmup_s:>10.2f}{statistics.median(r.polls_s):>8.2f}"
            f"{max(r.polls_s):>7.2f}{statistics.median(r.polls_cpu_s):>11.2f}"
            f"{r.cpu_pct:>7.1f}{'-' if r.idle_pct is None else f'{r.idle_pct:.1f}':>8}"
            f"{r.rss_mib:>9.0f}{r.pss_mib:>9.0f}"
        )
    for r in results:
        print(f"  {r.variant}: last poll {r.counts}, {r.sessions} pooled sessions")
    print(
        "CPU %: the poller process over whole periods (polls and the time between them), of "
        "one core; idle %: between polls only.\ntargets: < 150 MB, < 5 % of one core"
    )


if __name__ == "__main__":
    main()

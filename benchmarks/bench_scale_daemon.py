"""The memory of a real daemon at 500 devices (#16: aim under 150 MB): `cordon daemon` started
as its own process on the synthetic fleet's inventory (`benchmarks.fleet`: 50 sites x 10
devices + the core, one namespace of the twin answering for every address), which loads the
inventory and opens a session to every device at start (`Service._warm`); its RSS and PSS read
from /proc once it says it is warm (`daemon.warm` in its audit log), then again after
`--settle` seconds (drift polling off: the memory of a daemon holding its sessions, not of a
poll; `benchmarks.bench_daemon_poll` measures polling).

Run as root: `.venv/bin/python -m benchmarks.bench_scale_daemon [--sites 50] [--per-site 10]`.
Holds the twin lock; brings the twin up if none is (and takes it down after); the fleet and
the daemon are always stopped (the daemon by its PID, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.inventory import load
from agent.lab import build
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from benchmarks import fleet
from benchmarks.bench_daemon_poll import EXAMPLE
from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parents[1]


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` in MiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def warm_record(log_dir: Path) -> dict[str, object] | None:
    for path in sorted(log_dir.glob("audit-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "daemon.warm":
                return dict(rec)
    return None


def run_daemon(inventory: str, devices: int, settle: float) -> None:
    with tempfile.TemporaryDirectory(prefix="cordon-bench-daemon-") as tmp:
        state, logs = Path(tmp) / "state", Path(tmp) / "log"
        env = dict(os.environ, CORDON_LOG_DIR=str(logs), CORDON_STATE_DIR=str(state))
        argv = [
            str(Path(sys.executable).parent / "cordon"), "daemon", "-i", inventory,
            "--state-dir", str(state), "--poll-interval", "0",
        ]  # fmt: skip
        err = open(Path(tmp) / "daemon.err", "w")  # noqa: SIM115 - closed below
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            rec = None
            deadline = time.monotonic() + 600
            while rec is None and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                rec = warm_record(logs)
            if rec is None:
                err.flush()
                tail = (Path(tmp) / "daemon.err").read_text(errors="replace")[-2000:]
                raise SystemExit(f"the daemon never said it was warm (exit {proc.poll()}):\n{tail}")
            warm_s = time.perf_counter() - t
            rss, pss = memory_mib(proc.pid)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            print(
                f"daemon PID {proc.pid}: {devices} devices, warm in {warm_s:.1f} s "
                f"(unreachable: {rec.get('unreachable')}); {fds:,} descriptors open"
            )
            print(f"{'when':<34}{'RSS MiB':>9}{'PSS MiB':>9}")
            print(f"{'just warm':<34}{rss:>9.1f}{pss:>9.1f}")
            time.sleep(settle)
            rss, pss = memory_mib(proc.pid)
            later = f"{settle:g} s later (sessions held)"
            print(f"{later:<34}{rss:>9.1f}{pss:>9.1f}   aim < 150 MB")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()  # our own child, by its PID
                    proc.wait()
            err.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--per-site", type=int, default=10)
    parser.add_argument("--settle", type=float, default=30.0)
    args = parser.parse_args()
    print(describe())
    with build.exclusive(print):
        state = LabState.load(build.DEFAULT_LAB)
        brought = state is None
        if state is None:
            print("bringing the twin up (it will be taken down after)")
            state = build.up(load(EXAMPLE))
        try:
            inv = load(state.inventory)
            bp = blueprint(inv, state.lab)
            fleet_inv = fleet.up(inv, bp, state, args.sites, args.per_site)
            try:
                run_daemon(fleet_inv.path, len(fleet_inv.devices()), args.settle)
            finally:
                print("fleet down: " + "; ".join(fleet.down()))
        finally:
            if brought:
                build.down()
                print("twin down")


if __name__ == "__main__":
    main()

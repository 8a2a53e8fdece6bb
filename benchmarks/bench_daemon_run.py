"""Latency from `cordon run` (the API request) to the first command on a device, through the real
daemon pieces: the Unix-socket API, authorization, the plan digest check, the journal, the
APScheduler job that proceeds the run, the drivers. preventive-degraded on one site of the twin.

Side by side in one run: the daemon with warm sessions (its normal state), the daemon with cold
sessions (just started, nothing opened), and the engine called in-process with a warm pool (what
`--local` costs without the API and the scheduler). "First command" is the engine's
`step.started` audit event, written right before the step's first line goes to the device (the
site's configuration backups, read before any change, come before it and are included).

Also how long after a run's recorded end its follower learns of it, through the daemon: the
long-poll `cordon run` uses (#18) and, on every other run, the 1 s poll it used before.

Run as root: `.venv/bin/python -m benchmarks.bench_daemon_run [--runs N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from agent import audit
from agent.api.auth import Policy
from agent.api.client import Client
from agent.api.http import make_app, serve
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.inventory import load
from agent.lab import build
from agent.lab.state import LabState
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.service.changes import version
from agent.service.service import Service
from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "inventory" / "hospi-grand-ouest.yaml"
SITE = "nantes-jules-verne"
PLAYBOOK = "preventive-degraded"


def first_step(log_dir: Path, run_id: str) -> float:
    """When the run's first device step started (from the audit log)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in sorted(log_dir.glob("audit-*.jsonl")):
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("run_id") == run_id and rec.get("event") == "step.started":
                    return datetime.fromisoformat(rec["ts"]).timestamp()
        time.sleep(0.05)
    raise SystemExit(f"run {run_id}: no step started within 30 s")


def wait_done(client: Client, run_id: str, *, poll: float | None) -> tuple[str, float]:
    """Follow the run to its end as `cordon run` does through the daemon: a long-poll (`poll`
    None) or a poll every `poll` seconds (before #18: 1 s). The status, and how long after the
    run's recorded end the follower learned of it."""
    deadline = time.monotonic() + 60
    since: str | None = None
    while time.monotonic() < deadline:
        if poll is None:
            run = client.show(run_id, wait=10, since=since)
            since = version(run)
        else:
            run = client.show(run_id)
        if str(run["status"]) not in ("running", "awaiting_approval"):
            return str(run["status"]), time.time() - float(run["finished_at"])
        if poll is not None:
            time.sleep(poll)
    raise SystemExit(f"run {run_id} did not finish")


class Daemon:
    """The daemon's parts in this process: Service (scheduler on) and the API on a socket."""

    def __init__(self, tmp: Path, *, warm: bool) -> None:
        self.sock = tmp / "cordon.sock"
        self.service = Service(INVENTORY, tmp / "state", scheduler=True, poll_interval=3600)
        self.service.start()
        if warm:
            self.service._warm()  # what the daemon does in the background at start
        roles = tmp / "roles.yaml"
        roles.write_text("oncall: []\noperator: []\nauditor: []\nroot_is: operator\n")
        roles.chmod(0o600)
        app = make_app(self.service, Policy.load(roles))
        self.stop = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(serve(app, self.sock, stop=self.stop),),
            daemon=True,
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.service.stop()


def via_daemon(
    tmp: Path, log_dir: Path, runs: int, *, warm: bool, late: dict[str, list[float]]
) -> list[float]:
    out = []
    for i in range(runs):
        d = Daemon(tmp / f"{'warm' if warm else 'cold'}-{i}", warm=warm)
        try:
            with Client(d.sock) as client:
                digest = str(client.plan(PLAYBOOK, sites=[SITE])["digest"])
                t0 = time.time()
                run_id = str(client.run(PLAYBOOK, sites=[SITE], digest=digest)["run_id"])
                started = first_step(log_dir, run_id)
                out.append(started - t0)
                poll = None if i % 2 == 0 else 1.0  # every other run: the poll of before #18
                status, after = wait_done(client, run_id, poll=poll)
                assert status == "done", status
                late["long-poll" if poll is None else "poll 1 s"].append(after)
                back = client.rollback(run_id)
                assert back["status"] == "rolled_back", back
        finally:
            d.close()
    return out


def in_process(tmp: Path, log_dir: Path, runs: int) -> list[float]:
    inv = load(INVENTORY)
    pb = load_playbook(ROOT / "playbooks" / f"{PLAYBOOK}.yaml", inv)
    journal = Journal(tmp / "inproc.sqlite")
    out = []
    with Pool(inv, keepalive=None) as pool:
        pool.warm([d.name for _s, d in inv.devices()])
        ex = Executor(inv, journal, pool, actor="bench")
        for _ in range(runs):
            t0 = time.time()
            report = ex.run(pb, [SITE])
            out.append(first_step(log_dir, report.run_id) - t0)
            assert ex.rollback(report.run_id).status == "rolled_back"
    journal.close()
    return out


def row(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return (
        f"  {name:<44} median {statistics.median(ms):7.1f} ms   "
        f"min {min(ms):7.1f}   max {max(ms):7.1f}   (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(describe())
    with build.exclusive(print):
        brought_up = LabState.load(build.DEFAULT_LAB) is None
        if brought_up:
            build.up(load(INVENTORY))
        try:
            with tempfile.TemporaryDirectory(prefix="cordon-bench-run-") as t:
                tmp = Path(t)
                log_dir = tmp / "logs"
                audit.configure(log_dir, console=False)
                late: dict[str, list[float]] = {"long-poll": [], "poll 1 s": []}
                warm = via_daemon(tmp, log_dir, args.runs, warm=True, late=late)
                cold = via_daemon(tmp, log_dir, args.runs, warm=False, late=late)
                local = in_process(tmp, log_dir, args.runs)
                audit.close()
        finally:
            if brought_up:
                build.down()
    print(
        f"\n`cordon run {PLAYBOOK} --site {SITE}` -> first command on a device (aim < 100 ms warm)"
    )
    print(row("daemon, warm sessions (API + scheduler)", warm))
    print(row("daemon, cold sessions (just started)", cold))
    print(row("engine in-process, warm pool (no API)", local))
    print("\nthe run's recorded end -> the follower (`cordon run` through the daemon) knows it")
    for name, xs in (
        ("long-poll GET /v1/runs/<id>?wait=&since=", late["long-poll"]),
        ("poll every 1 s (before #18)", late["poll 1 s"]),
    ):
        print(row(name, xs) if xs else f"  {name:<44} (none: --runs 2 or more)")


if __name__ == "__main__":
    main()

"""The memory of a real daemon at 500 devices (#16: aim under 150 MB): `cordon daemon` started
as its own process on the synthetic fleet's inventory (`benchmarks.fleet`: 50 sites x 10
devices + the core, one namespace of the twin answering for every address), which loads the
inventory and opens a session to every device at start (`Service._warm`); its RSS and PSS read
from /proc once it says it is warm (`daemon.warm` in its audit log), then again after
`--settle` seconds (drift polling off: the memory of a daemon holding its sessions, not of a
poll; `benchmarks.bench_daemon_poll` measures polling).

Then where it goes: a second process (`--stages`) builds what the daemon builds, one part at a
time, and reads its RSS and PSS after each: the interpreter; the daemon's modules (those
`cordon daemon` imports before it serves and the job store's, with the libraries `cordon`
blocks blocked); the inventory, with its platforms' device libraries; the service (journal,
health store, pool, poller, scheduler: `agent.service.service.Service`, on that inventory); the
sessions (`Pool.warm`, as `Service._warm`), first to the devices the fleet serves as they expect
(a shell), then to the rest. The fleet's one sshd gives a shell, not an IOS CLI: the switches of
every site but the core and the first are driven as Linux hosts (`sessions_inventory`), so the
daemon holds a real session to all but those few IOS switches (their attempts fail, in the
daemon too: it says how many were unreachable), and still loads the switches' device libraries.
From the open sessions: the memory of one, and what the daemon would hold with every device's
open.

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

import yaml

from benchmarks.machine import describe, memory_kib

ROOT = Path(__file__).resolve().parents[1]
# what `cordon daemon` imports before it serves (agent.daemon.main.run and _serve's lazy imports)
DAEMON_MODULES = (
    "agent.cli.app",
    "agent.cli.commands.daemon",
    "agent.daemon.main",
    "agent.api.tcp",
    "agent.api.http",
    "agent.lab.verifier",
    "agent.service.jobs",
    "apscheduler.jobstores.sqlalchemy",
    "apscheduler.schedulers.background",
    "apscheduler.executors.pool",
)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` in MiB."""
    rss, pss = memory_kib(pid)
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


def run_daemon(
    inventory: str, devices: int, settle: float, extra: dict[str, str] | None = None
) -> tuple[float, float]:
    """The daemon's (RSS, PSS) once warm, in MiB (printed, and again after `settle` s);
    `extra`: more environment for it."""
    with tempfile.TemporaryDirectory(prefix="cordon-bench-daemon-") as tmp:
        state, logs = Path(tmp) / "state", Path(tmp) / "log"
        env = dict(os.environ, CORDON_LOG_DIR=str(logs), CORDON_STATE_DIR=str(state))
        env.update(extra or {})
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
            rss, pss = real = memory_mib(proc.pid)
            threads = len(os.listdir(f"/proc/{proc.pid}/task"))
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            print(
                f"daemon PID {proc.pid}: {devices} devices, warm in {warm_s:.1f} s "
                f"(unreachable: {rec.get('unreachable')}); {fds:,} descriptors open, "
                f"{threads} threads"
            )
            print(f"{'when':<34}{'RSS MiB':>9}{'PSS MiB':>9}")
            print(f"{'just warm':<34}{rss:>9.1f}{pss:>9.1f}")
            time.sleep(settle)
            rss, pss = memory_mib(proc.pid)
            later = f"{settle:g} s later (sessions held)"
            print(f"{later:<34}{rss:>9.1f}{pss:>9.1f}   aim < 150 MB")
            return real
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()  # our own child, by its PID
                    proc.wait()
            err.close()


def stages(inventory: str) -> None:
    """In this fresh process, build what the daemon builds, part by part; print a JSON line
    per part: its RSS and PSS after it (MiB)."""
    import gc  # noqa: PLC0415 - this process measures its own imports: all of them below
    import importlib  # noqa: PLC0415
    import threading  # noqa: PLC0415

    def say(part: str, **extra: object) -> None:
        rss, pss = memory_mib(os.getpid())
        print(json.dumps({"part": part, "rss": rss, "pss": pss, **extra}), flush=True)

    say("interpreter")
    from agent.cli import _NEVER_USED  # noqa: PLC0415 - blocked by `cordon` as the daemon runs

    for name in _NEVER_USED:
        sys.modules[name] = None  # type: ignore[assignment]
    for name in DAEMON_MODULES:
        importlib.import_module(name)
    from agent.drivers.base import Target  # noqa: PLC0415
    from agent.inventory import load  # noqa: PLC0415
    from agent.platforms import registry  # noqa: PLC0415
    from agent.service import service as service_module  # noqa: PLC0415

    gc.collect()
    say("modules", count=len(sys.modules))
    inv = load(inventory)
    first: dict[str, str] = {}
    for _site, d in inv.devices():
        first.setdefault(str(d.platform), d.name)
    for name in first.values():  # a driver of each platform: its device library imported now
        registry.driver_for(Target.of(inv, name))
    gc.collect()
    say("inventory", count=len(sys.modules))
    # the service loads the inventory (once, in the daemon): here, the one just loaded
    service_module.load_inventory = lambda _path: inv  # type: ignore[attr-defined,assignment]
    with tempfile.TemporaryDirectory(prefix="cordon-bench-stages-") as tmp:
        service = service_module.Service(Path(inventory), Path(tmp), poll_interval=0)
        say("service", devices=len(inv.devices()))
        # first the devices the fleet serves as they expect (its firewalls: a shell), then the
        # rest (its switches: the fleet's shell is no IOS CLI, so those attempts fail)
        names = [d.name for _s, d in inv.devices()]
        shell = [d.name for _s, d in inv.devices() if d.platform == "linux_nftables"]
        for part, group in (("sessions", shell), ("attempts", sorted(set(names) - set(shell)))):
            threads, t = threading.active_count(), time.perf_counter()
            warm = service.pool.warm(group)
            say(
                part,
                asked=len(group),
                opened=sum(o.ok for o in warm),
                threads=threading.active_count() - threads,
                fds=len(os.listdir("/proc/self/fd")),
                warm_s=time.perf_counter() - t,
                failed=[str(o.error) for o in warm if not o.ok][:2],
            )
        service.stop()


def breakdown(inventory: str, real: tuple[float, float]) -> None:
    """Run `stages` in a fresh process; print where the memory goes, part by part."""
    argv = [sys.executable, "-m", "benchmarks.bench_scale_daemon", "--stages", inventory]
    with tempfile.TemporaryDirectory(prefix="cordon-bench-stages-") as tmp:
        env = dict(os.environ, CORDON_LOG_DIR=str(Path(tmp) / "log"), PYTHONPATH=str(ROOT))
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the staged process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    parts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by = {p["part"]: p for p in parts}
    n, ses, att = by["service"]["devices"], by["sessions"], by["attempts"]
    print(f"\nwhere it goes (a second process building the same, part by part; {n} devices):")
    print(f"{'part':<60}{'RSS MiB':>9}{'PSS MiB':>9}")
    labels = {
        "interpreter": "interpreter",
        "modules": f"the daemon's modules ({by['modules']['count']:,} in sys.modules)",
        "inventory": "the inventory, and its platforms' device libraries "
        f"(+{by['inventory']['count'] - by['modules']['count']} modules)",
        "service": "journal, stores, pool, poller, scheduler",
        "sessions": f"sessions: {ses['opened']} of {ses['asked']} shell devices",
        "attempts": f"attempts: {att['opened']} of {att['asked']} IOS switches opened",
    }
    prev = {"rss": 0.0, "pss": 0.0}
    for p in parts:
        name = labels[p["part"]]
        print(f"{'+ ' + name:<60}{p['rss'] - prev['rss']:>9.1f}{p['pss'] - prev['pss']:>9.1f}")
        prev = p
    print(f"{'= total':<60}{prev['rss']:>9.1f}{prev['pss']:>9.1f}")
    print(f"{'the daemon itself (above, just warm)':<60}{real[0]:>9.1f}{real[1]:>9.1f}")
    per = (ses["rss"] - by["service"]["rss"]) * 1024 / max(1, ses["opened"])
    held = by["service"]["rss"] + n * per / 1024
    print(
        f"per open session {per:.0f} KiB RSS ({ses['threads']} threads for {ses['opened']}); "
        f"every one of the {n} devices with an open session: ~{held:.0f} MiB RSS"
    )
    for p in (ses, att):
        for error in p["failed"]:
            print(f"  not opened ({p['part']}), e.g.: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--per-site", type=int, default=10)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--stages", metavar="INVENTORY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages:
        stages(args.stages)
        return
    from benchmarks import fleet  # noqa: PLC0415 - not in the --stages process

    print(describe())
    with fleet.on_twin(args.sites, args.per_site) as fleet_inv:
        path = sessions_inventory(Path(fleet_inv.path))
        real = run_daemon(str(path), len(fleet_inv.devices()), args.settle)
        # side by side: glibc's malloc limited to 2 arenas (by default up to 8 per core, the
        # session threads spreading their allocations over them)
        print("\nthe same daemon, MALLOC_ARENA_MAX=2:")
        run_daemon(str(path), len(fleet_inv.devices()), args.settle, {"MALLOC_ARENA_MAX": "2"})
        breakdown(str(path), real)


def sessions_inventory(path: Path) -> Path:
    """The fleet's inventory with every device the fleet can serve as it expects: the fleet's
    one sshd gives a shell, not an IOS CLI, so the switches of every site but the core and the
    first are driven as Linux hosts (`linux_nftables`, a shell session each, as the firewalls);
    the core's and the first site's keep their IOS platform, so the daemon still loads the
    switches' device libraries (netmiko), and only those few sessions fail."""
    doc = yaml.safe_load(path.read_text())
    for site in doc["sites"][2:]:  # [0] the core, [1] the first site: as they are
        for device in site.get("devices", []):
            device["platform"] = "linux_nftables"
    out = path.with_name("fleet-sessions.yaml")  # beside it: its relative references hold
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


if __name__ == "__main__":
    main()

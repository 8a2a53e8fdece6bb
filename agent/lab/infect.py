"""An infected host in the twin: a scanner (`agent.lab.scanner`) run in a host's namespace that
tries TCP connects toward every host of the group's clean core, declared services and a few
undeclared ports, as a worm would once its zone is reconnected to the core.

Imports the lab's own modules and the inventory; never a driver. Root only.

The scanner is started like the twin's daemons (`ip netns exec NS unshare --uts`, its own
session, PID and start time recorded) and journaled in the twin's state with them, so `cure`
and `lab down` stop exactly that process, PID and start time checked.
"""

from __future__ import annotations

import fcntl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import LabError
from agent.inventory import load
from agent.inventory.models import Inventory, SiteKind
from agent.lab import daemons, netns, scanner
from agent.lab.build import DEFAULT_LAB, require_root
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint

EXTRA_PORTS = (445, 3389, 22, 135)  # undeclared ports a worm tries: SMB, RDP, SSH, RPC
KIND = "scanner"
_EXTRA_KEY = "infected"  # state.extra[_EXTRA_KEY][host_ref] = {"proc": name, "rate": ..., ...}
_lock = threading.Lock()


@dataclass(frozen=True)
class Infection:
    """One infected host as the twin's state records it."""

    host: str  # "site/zone/host"
    netns: str
    pid: int
    rate: float
    targets: int
    since: str
    running: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "netns": self.netns,
            "pid": self.pid,
            "rate": self.rate,
            "targets": self.targets,
            "since": self.since,
            "running": self.running,
        }


def core_targets(inv: Inventory, bp: Blueprint) -> list[scanner.Target]:
    """Every host of the core site(s), on its declared service ports (from the blueprint) and
    on EXTRA_PORTS, in a fixed order. All are checked to lie in the twin range."""
    out: list[scanner.Target] = []
    for site in inv.sites:
        if site.kind is not SiteKind.CORE:
            continue
        for zone in site.zones:
            for host in zone.hosts:
                ns = bp.host_ns[f"{site.name}/{zone.name}/{host.name}"]
                addrs = [str(a.cidr.ip) for a in bp.addresses if a.ns == ns]
                declared = [s.port for s in bp.services if s.ns == ns]
                ports = list(dict.fromkeys([*declared, *EXTRA_PORTS]))
                for addr in addrs:
                    netns.check_twin_address(addr, f"core host {host.name}")
                    out.extend(scanner.Target(addr, p) for p in ports)
    if not out:
        raise LabError(f"{inv.path}: no core site with hosts to scan toward")
    return out


def infect(host_ref: str, rate: float = scanner.DEFAULT_RATE, *, lab: str = DEFAULT_LAB) -> int:
    """Start a scanner in the namespace of twin host `host_ref` ("site/zone/host"); its PID.

    Idempotent: a host already infected keeps its one scanner (restarted only if `rate`
    differs, or if it died). The caller holds the twin (`build.exclusive`) when others may."""
    require_root()
    if not 0 < rate <= scanner.MAX_RATE:
        raise LabError(f"scan rate must be in (0, {scanner.MAX_RATE:g}] attempts/s, got {rate}")
    with _state(lab) as state:
        inv = load(state.inventory)
        bp = blueprint(inv, state.lab)
        ns = _host_ns(inv, bp, host_ref)
        current = _record(state, host_ref)
        if current is not None:
            proc, meta = current
            if daemons.is_running(proc) and float(meta["rate"]) == rate:
                return proc.pid
            _forget(state, host_ref, proc)
        targets = core_targets(inv, bp)
        proc = _start(state, ns, host_ref, targets, rate)
        return proc.pid


def cure(host_ref: str, *, lab: str = DEFAULT_LAB) -> bool:
    """Stop the scanner of `host_ref` (by its recorded PID and start time) and forget it.
    True if a running scanner was stopped; False if the host was not infected."""
    require_root()
    with _state(lab) as state:
        current = _record(state, host_ref)
        if current is None:
            return False
        proc, _meta = current
        return _forget(state, host_ref, proc)


def infected(lab: str = DEFAULT_LAB) -> list[Infection]:
    """The infected hosts of the twin (empty when the twin is down), whether each scanner still
    runs."""
    state = LabState.load(lab)
    if state is None:
        return []
    out = []
    for host_ref, meta in sorted(state.extra.get(_EXTRA_KEY, {}).items()):
        proc = _proc_named(state, str(meta["proc"]))
        out.append(
            Infection(
                host=host_ref,
                netns=str(meta["netns"]),
                pid=proc.pid if proc else 0,
                rate=float(meta["rate"]),
                targets=int(meta["targets"]),
                since=str(meta["since"]),
                running=proc is not None and daemons.is_running(proc),
            )
        )
    return out


# ------------------------------------------------------------------------------------- plumbing


@contextmanager
def _state(lab: str) -> Iterator[LabState]:
    """The twin's state, up, for one read-modify-write (serialised across threads and
    processes by a lock file in the state directory, which `lab down` removes)."""
    with _lock:
        state = LabState.load(lab)
        if state is None or state.phase != "up":
            raise LabError("the twin is not up", hint="`cordon lab up` first")
        with (state.dir / "infect.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fresh = LabState.load(lab)  # re-read under the lock
            if fresh is None or fresh.phase != "up":
                raise LabError("the twin went down", hint="`cordon lab up` first")
            yield fresh


def _host_ns(inv: Inventory, bp: Blueprint, host_ref: str) -> str:
    ns = bp.host_ns.get(host_ref)
    if ns is None:
        raise LabError(
            f"no twin host {host_ref!r}",
            hint="name a host as SITE/ZONE/HOST, e.g. rennes-la-sagesse/admin/pc-admin-1 "
            "(`cordon inventory show` lists them)",
        )
    site = inv.site(host_ref.split("/", 1)[0])
    if site is not None and site.kind is SiteKind.CORE:
        raise LabError(f"{host_ref} is a host of the core: the scanner scans toward the core")
    if not netns.exists(ns):
        raise LabError(f"the namespace {ns} of {host_ref} is missing", hint="`cordon lab status`")
    return ns


def _proc_named(state: LabState, name: str) -> daemons.DaemonProc | None:
    for raw in state.procs:
        if raw.get("name") == name:
            return daemons.DaemonProc.from_dict(raw)
    return None


def _record(state: LabState, host_ref: str) -> tuple[daemons.DaemonProc, dict[str, Any]] | None:
    meta = state.extra.get(_EXTRA_KEY, {}).get(host_ref)
    if meta is None:
        return None
    proc = _proc_named(state, str(meta["proc"]))
    if proc is None:  # a record without its process: drop the record
        del state.extra[_EXTRA_KEY][host_ref]
        state.save()
        return None
    return proc, meta


def _forget(state: LabState, host_ref: str, proc: daemons.DaemonProc) -> bool:
    """Stop `proc`, then drop it and its infection record from the state."""
    stopped = daemons.stop(proc)
    state.procs = [p for p in state.procs if p.get("name") != proc.name]
    state.extra.get(_EXTRA_KEY, {}).pop(host_ref, None)
    state.save()
    return stopped


def _start(
    state: LabState, ns: str, host_ref: str, targets: list[scanner.Target], rate: float
) -> daemons.DaemonProc:
    host = host_ref.rsplit("/", 1)[1]
    run_dir = state.dir / "scanners"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    ready = run_dir / f"{ns}.ready"
    out = run_dir / f"{ns}.out"
    ready.unlink(missing_ok=True)
    project = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "PYTHONPATH": str(project),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [
        sys.executable, "-m", "agent.lab.scanner", "--netns", ns, "--rate", f"{rate:g}",
        "--ready-file", str(ready), *(str(t) for t in targets),
    ]  # fmt: skip
    # the daemons' launcher: own session and UTS namespace, PID + start time, ready wait
    proc = daemons._launch(
        KIND,
        ns,
        host,
        argv,
        env=env,
        out_path=out,
        pidfile=ready,
        logfile=out,
        ready=lambda pid: daemons._pidfile_is(ready, pid),
        cleanup=[ready],
    )
    state.procs.append(proc.as_dict())
    state.extra.setdefault(_EXTRA_KEY, {})[host_ref] = {
        "proc": proc.name,
        "netns": ns,
        "rate": rate,
        "targets": len(targets),
        "since": datetime.now(UTC).isoformat(),
    }
    state.save()
    return proc

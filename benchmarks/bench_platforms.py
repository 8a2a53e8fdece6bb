"""Per-platform change time on one twin, side by side: for each platform of the example group
(FortiGate, Stormshield SNS, Junos SRX and Linux firewalls; IOS-XE, AOS-CX, Junos EX and
IOS-style switches),
one of its devices, a connected driver (connection time excluded, measured apart), and N
repetitions of:

  change + read-back      a firewall: drop everything in and out of one link interface (its
                          packet rules, rendered by the platform's renderer); a switch: shut one
                          access port (by the platform's own CLI or API)
  undo + read-back        back to normal
  armed change            where the driver has a native dead-man (FortiOS revert mode, IOS-XE
                          revert timer, AOS-CX checkpoint auto, Junos commit confirmed): arm, the
                          change, read-back, confirm (the confirm read back by the driver)

Each change goes through the same calls the executor makes (`agent.engine.render.render`,
`Driver.apply`, `Driver.verify` with `agent.run.transaction.expectation`), so a figure is what a
step costs on that platform. The twin devices of the vendor platforms are emulations of their
documented APIs/CLIs running in network namespaces (README: "Platforms"), so these figures
compare Cordon's drivers and the protocols' round trips, not the appliances' own speed.

Besides the time, each operation's WIRE COST: what a real appliance behind a WAN management
path pays in latency, counted on the client side (`Wire`): `requests` (HTTP requests, NETCONF
RPCs, CLI lines written: each waits for its answer, one round trip) and `sessions` (new TCP +
TLS or TCP + SSH handshakes: several round trips each), per operation, the median of the runs.
Two more operations are the reads a flow verification makes: `read (device source)` (its
interfaces, and where it routes, its decision on the packets of the example's flows through
it: `agent.verify.decisions`) and `read (counters source)` (its accept rules' traffic:
`agent.verify.counters`).

`--base DIR` measures another checkout's `agent/` (e.g. `git archive 0b38902 agent | tar -x -C
DIR`) on the same devices in the same twin sitting, in a child process, and prints both side by
side (the twin's emulators are this checkout's for both).

Run as root: `.venv/bin/python -m benchmarks.bench_platforms [--runs N] [--base DIR]`. Holds the
twin lock, refuses if a twin is up, brings the example twin up and always takes it down.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import paramiko

from agent.drivers.base import ChangeSet, Driver, Target
from agent.engine.render import render
from agent.inventory import load
from agent.inventory.models import Device, Inventory, Site
from agent.lab import build
from agent.lab.state import LabState
from agent.network.paths import flow_path
from agent.network.state import NORMAL, DeviceState, Method, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import DeadMan, DecidesFlows, ReadsInterfaces, RuleTraffic, having
from agent.run.transaction import expectation
from agent.verify.counters import flow_rules
from agent.verify.decisions import queries_of
from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventory" / "hospi-grand-ouest.yaml"
# The example group has every platform but the Junos SRX (its switches run IOS-style, IOS-XE,
# AOS-CX and Junos EX: scripts/synth.py); the platforms' own small groups (the ones their twin
# tests use) are brought up in turn after it, for a platform the example did not measure only
# (a group with none left is not even brought up).
SWITCH_GROUPS = [
    ROOT / "tests/platforms/cisco_iosxe/data/iosxe-pair.yaml",
    ROOT / "tests/platforms/aruba_aoscx/data/aoscx-lab.yaml",
    ROOT / "tests/platforms/juniper_junos/data/junos-site.yaml",
    ROOT / "tests/platforms/juniper_junos/data/srx-site.yaml",
]


def change_of(inv: Inventory, site: Site, device: Device) -> DeviceState | None:
    """The representative change of `device`: drops on a link interface for a device holding
    packet rules, else one host's access port shut by the platform's own method."""
    spec = registry.platform(device.platform)
    if spec.rules is not None:
        iface = next((lk.interface for lk in site.links if lk.device == device.name), None)
        if iface is not None:
            rules = {
                NftRule("drop", iif=iface, tag="bench cut"),
                NftRule("drop", oif=iface, tag="bench cut"),
            }
            return DeviceState(rules=frozenset(rules))
    if spec.shuts_by is not None:
        mine = sorted(
            h.port.interface
            for z in site.zones
            for h in z.hosts
            if h.port is not None and h.port.device == device.name
        )
        if mine:
            return DeviceState(down=frozenset({(mine[0], cast(Method, spec.shuts_by))}))
    return None


def one_per_platform(inv: Inventory) -> list[tuple[Site, Device, DeviceState]]:
    """The first device of each platform (in inventory order) with a representative change."""
    seen: set[str] = set()
    out = []
    for site in inv.sites:
        for device in site.devices:
            if device.platform in seen:
                continue
            change = change_of(inv, site, device)
            if change is not None:
                seen.add(device.platform)
                out.append((site, device, change))
    return out


class Wire:
    """Client-side counts of what costs round trips: `requests` (an HTTP request, a NETCONF RPC,
    a CLI line: each written then waited for) and `sessions` (a TCP + TLS or TCP + SSH
    handshake). Counted by wrapping http.client's request and HTTPS connect, paramiko's client
    handshake and its channel writes (NETCONF and the CLIs write through `Channel.sendall`)."""

    requests = 0
    sessions = 0

    @classmethod
    def install(cls) -> None:
        request = http.client.HTTPConnection.request
        connect = http.client.HTTPSConnection.connect
        start = paramiko.Transport.start_client
        sendall = paramiko.Channel.sendall

        def counted_request(self: Any, *a: Any, **k: Any) -> Any:
            cls.requests += 1
            return request(self, *a, **k)

        def counted_connect(self: Any, *a: Any, **k: Any) -> Any:
            cls.sessions += 1
            return connect(self, *a, **k)

        def counted_start(self: Any, *a: Any, **k: Any) -> Any:
            cls.sessions += 1
            return start(self, *a, **k)

        def counted_sendall(self: Any, *a: Any, **k: Any) -> Any:
            cls.requests += 1
            return sendall(self, *a, **k)

        http.client.HTTPConnection.request = counted_request  # type: ignore[method-assign]
        http.client.HTTPSConnection.connect = counted_connect  # type: ignore[method-assign]
        paramiko.Transport.start_client = counted_start  # type: ignore[method-assign]
        paramiko.Channel.sendall = counted_sendall  # type: ignore[method-assign]


def _timed(fn: Callable[[], object]) -> tuple[float, int, int]:
    """Seconds, requests and sessions of one call of `fn`."""
    r, n = Wire.requests, Wire.sessions
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, Wire.requests - r, Wire.sessions - n


def _step(drv: Driver, platform: str, before: DeviceState, after: DeviceState) -> None:
    for method, commands, _undo in render(platform, before, after):
        drv.apply(ChangeSet(tuple(commands), action="bench"))
        drv.verify(expectation(method, before, after))


def _source_reads(inv: Inventory, device: Device) -> dict[str, Callable[[Driver], object]]:
    """The reads a flow verification makes of `device` (the example's flows through it): the
    device source's (interfaces, and its decisions where it routes) and the counters source's."""
    flows = [(f, flow_path(inv, f)) for f in inv.flows]
    queries = [q for _f, p in flows for q in queries_of(p, device.name)]
    rules = [r for f, _p in flows for r in flow_rules(inv, f, device.name)]

    def device_read(d: Driver) -> object:  # as agent.verify.decisions reads it
        reader = having(d, ReadsInterfaces)
        found = reader.interfaces("decide") if reader is not None else d.facts().interfaces
        decider = having(d, DecidesFlows)
        return (found, decider.decide_flows(queries) if decider and queries else None)

    out: dict[str, Callable[[Driver], object]] = {"read (device source)": device_read}
    counter = having(registry.driver_for(Target.of(inv, device.name)), RuleTraffic)
    if counter is not None and rules:
        out["read (counters source)"] = lambda d: cast(RuleTraffic, d).rule_traffic(rules)
    return out


Figures = dict[str, tuple[float, float, float]]  # operation -> (seconds, requests, sessions)


def measure(inv: Inventory, device: Device, change: DeviceState, runs: int) -> Figures:
    """Median seconds, requests and sessions of each operation (connection apart) on `device`."""
    platform = device.platform
    [(method, _c, undo)] = render(platform, NORMAL, change)
    out: dict[str, list[tuple[float, int, int]]] = {
        "connect": [],
        "change+read-back": [],
        "undo+read-back": [],
    }
    target = Target.of(inv, device.name)
    for _ in range(runs):
        drv = registry.driver_for(target, via=registry.via(method))
        out["connect"].append(_timed(drv.connect))
        drv.close()
    with registry.one_shot(target, via=registry.via(method)) as drv:
        drv.connect()
        for _ in range(runs):
            out["change+read-back"].append(_timed(lambda: _step(drv, platform, NORMAL, change)))
            out["undo+read-back"].append(_timed(lambda: _step(drv, platform, change, NORMAL)))
        for name, read in _source_reads(inv, device).items():
            out[name] = [_timed(lambda r=read: r(drv)) for _ in range(runs)]  # type: ignore[misc]
        dm = having(drv, DeadMan)
        if dm is not None:
            out["armed change+read-back+confirm"] = []
            for _ in range(runs):

                def armed() -> None:
                    token = dm.arm_revert(ChangeSet(tuple(undo), action="bench.undo"), 60)
                    _step(drv, platform, NORMAL, change)
                    if not dm.confirm(token):
                        raise SystemExit(f"{device.name}: the confirm was not read back")

                out["armed change+read-back+confirm"].append(_timed(armed))
                _step(drv, platform, change, NORMAL)
    return {
        k: (
            statistics.median(x[0] for x in v),
            statistics.median(x[1] for x in v),
            statistics.median(x[2] for x in v),
        )
        for k, v in out.items()
    }


def _child(inventory: Path, names: list[str], runs: int) -> None:
    """The --base side: measure `names` of `inventory` (the twin is up), print JSON."""
    inv = load(inventory)
    got = {}
    for _site, device, change in one_per_platform(inv):
        if device.name in names:
            got[device.name] = measure(inv, device, change, runs)
    print(json.dumps(got))


def _base(base: Path, inventory: Path, names: list[str], runs: int) -> dict[str, Figures]:
    """The same measurements by the `base` checkout's agent, in a child process."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
        "from benchmarks import bench_platforms as b; b.Wire.install(); "
        "b._child(__import__('pathlib').Path(sys.argv[3]), sys.argv[5:], int(sys.argv[4]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(base),
            str(ROOT),
            str(inventory.resolve()),
            str(runs),
            *names,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"--base run failed:\n{done.stderr[-3000:]}")
    got: dict[str, dict[str, list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return {n: {k: (v[0], v[1], v[2]) for k, v in f.items()} for n, f in got.items()}


COLS = [
    "connect",
    "change+read-back",
    "undo+read-back",
    "armed change+read-back+confirm",
    "read (device source)",
    "read (counters source)",
]


def _table(results: list[tuple[str, str, Figures, Figures | None]], runs: int) -> None:
    print(f"\nmedian of {runs}, one device per platform, on the twin: milliseconds, then")
    print("requests (HTTP requests / NETCONF RPCs / CLI lines: one round trip each) and sessions")
    print("(new TCP+TLS or TCP+SSH handshakes); 'base -> now' where --base was given")
    for platform, name, got, base in results:
        print(f"\n{platform} ({name})")
        print(f"  {'operation':<32}{'ms':>22}{'requests':>16}{'sessions':>14}")
        for c in COLS:
            if c not in got:
                continue
            ms, rq, ss = got[c]
            if base is not None and c in base:
                bms, brq, bss = base[c]
                cells = f"{bms * 1000:>9.1f} -> {ms * 1000:>7.1f}{brq:>7g} -> {rq:<5g}"
                cells += f"{bss:>6g} -> {ss:<4g}"
            else:
                cells = f"{ms * 1000:>22.1f}{rq:>16g}{ss:>14g}"
            print(f"  {c:<32}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="repetitions per operation")
    ap.add_argument(
        "--inventory", type=Path, nargs="*", default=[EXAMPLE, *SWITCH_GROUPS], help="groups"
    )
    ap.add_argument("--base", type=Path, help="another checkout's agent/ measured side by side")
    ap.add_argument("--only", nargs="*", default=None, help="platforms to measure (default all)")
    args = ap.parse_args()
    if args.base is not None and not (args.base / "agent" / "__init__.py").is_file():
        sys.exit(f"--base {args.base}: no agent/ package there")
    Wire.install()
    print(describe())
    print(f"load average: {os.getloadavg()[0]:.2f} (before)")
    results: list[tuple[str, str, Figures, Figures | None]] = []
    done: set[str] = set()
    with build.exclusive(print):
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        for path in args.inventory:
            inv = load(path)
            picks = [
                p
                for p in one_per_platform(inv)
                if p[1].platform not in done and (args.only is None or p[1].platform in args.only)
            ]
            if not picks:
                continue
            build.up(inv)
            try:
                based = (
                    _base(args.base, path, [d.name for _s, d, _c in picks], args.runs)
                    if args.base is not None
                    else {}
                )
                for _site, device, change in picks:
                    got = measure(inv, device, change, args.runs)
                    results.append((device.platform, device.name, got, based.get(device.name)))
                    done.add(device.platform)
                    print(f"  {device.platform:<16} {device.name:<10} done", flush=True)
            finally:
                build.down()
    _table(results, args.runs)
    print(f"\nload average: {os.getloadavg()[0]:.2f} (after)")


if __name__ == "__main__":
    main()

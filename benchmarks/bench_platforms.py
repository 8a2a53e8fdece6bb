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

Run as root: `.venv/bin/python -m benchmarks.bench_platforms [--runs N]`. Holds the twin lock,
refuses if a twin is up, brings the example twin up and always takes it down.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from agent.drivers.base import ChangeSet, Driver, Target
from agent.engine.render import render
from agent.inventory import load
from agent.inventory.models import Device, Inventory, Site
from agent.lab import build
from agent.lab.state import LabState
from agent.network.state import NORMAL, DeviceState, Method, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import DeadMan, having
from agent.run.transaction import expectation
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


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _step(drv: Driver, platform: str, before: DeviceState, after: DeviceState) -> None:
    for method, commands, _undo in render(platform, before, after):
        drv.apply(ChangeSet(tuple(commands), action="bench"))
        drv.verify(expectation(method, before, after))


def measure(inv: Inventory, device: Device, change: DeviceState, runs: int) -> dict[str, float]:
    """Median seconds of each operation (connection apart) on `device`."""
    platform = device.platform
    [(method, _c, undo)] = render(platform, NORMAL, change)
    out: dict[str, list[float]] = {"connect": [], "change+read-back": [], "undo+read-back": []}
    target = Target.of(inv, device.name)
    for _ in range(runs):
        drv = registry.driver_for(target, via=registry.via(method))
        out["connect"].append(_timed(drv.connect))
        drv.close()
    with registry.one_shot(target, via=registry.via(method)) as drv:
        for _ in range(runs):
            out["change+read-back"].append(_timed(lambda: _step(drv, platform, NORMAL, change)))
            out["undo+read-back"].append(_timed(lambda: _step(drv, platform, change, NORMAL)))
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
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="repetitions per operation")
    ap.add_argument(
        "--inventory", type=Path, nargs="*", default=[EXAMPLE, *SWITCH_GROUPS], help="groups"
    )
    args = ap.parse_args()
    print(describe())
    results: list[tuple[str, str, dict[str, float]]] = []
    done: set[str] = set()
    with build.exclusive(print):
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        for path in args.inventory:
            inv = load(path)
            picks = [p for p in one_per_platform(inv) if p[1].platform not in done]
            if not picks:
                continue
            build.up(inv)
            try:
                for _site, device, change in picks:
                    got = measure(inv, device, change, args.runs)
                    results.append((device.platform, device.name, got))
                    done.add(device.platform)
                    print(f"  {device.platform:<16} {device.name:<10} done", flush=True)
            finally:
                build.down()
    cols = ["connect", "change+read-back", "undo+read-back", "armed change+read-back+confirm"]
    print(f"\nmedian milliseconds of {args.runs}, one device per platform, on the twin")
    print(f"{'platform':<16}{'device':<10}" + "".join(f"{c:>32}" for c in cols))
    for platform, name, got in results:
        cells = "".join(
            f"{got[c] * 1000:>32.1f}" if c in got else f"{'(no native dead-man)':>32}" for c in cols
        )
        print(f"{platform:<16}{name:<10}{cells}")


if __name__ == "__main__":
    main()

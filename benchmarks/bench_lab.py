"""Benchmark of the digital twin: `lab up` of the 9-site Hospi Grand Ouest twin, `lab flows`,
and the twin's memory, each next to the naive alternative measured in the same run.

Run as root: `.venv/bin/python -m benchmarks.bench_lab [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build, daemons, flows, netns
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint
from benchmarks.machine import describe

EXAMPLE = Path(__file__).resolve().parents[1] / "inventory" / "hospi-grand-ouest.yaml"


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (libc, python) counted once across processes."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def naive_network(lab: str) -> float:
    """The alternative to batching: one `ip` process per namespace, veth, address and route."""
    inv = load(EXAMPLE)
    bp = blueprint(inv, lab)
    cmds: list[list[str]] = [["ip", "netns", "add", ns] for ns in bp.nodes]
    for v in bp.veths:
        if v.b_ns:
            cmds.append(
                [
                    "ip",
                    "link",
                    "add",
                    v.a_if,
                    "netns",
                    v.a_ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    v.b_if,
                    "netns",
                    v.b_ns,
                ]
            )
    for a in bp.addresses:
        cmds.append(["ip", "-n", a.ns, "addr", "add", str(a.cidr), "dev", a.ifname])
    for r in bp.routes:
        cmds.append(["ip", "-n", r.ns, "route", "replace", str(r.dst), "via", str(r.via)])
    t = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=False, capture_output=True)
    elapsed = time.perf_counter() - t
    for ns in bp.nodes:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    print(f"  (naive network build ran {len(cmds)} ip processes; bridges and daemons not included)")
    return elapsed


def naive_probe(inv: Inventory, bp: Blueprint, count: int) -> float:
    """The alternative to in-process setns probes: one `ip netns exec ... python` per flow."""
    every = flows.targets(inv, bp)
    pairs = every[:count]
    code = (
        "import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),2);s.recv(100)"
    )
    t = time.perf_counter()
    for _, target in pairs:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                target.netns,
                sys.executable,
                "-c",
                code,
                target.dst,
                str(target.port),
            ],
            check=False,
            capture_output=True,
        )
    return (time.perf_counter() - t) * len(every) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    with build.exclusive(print):
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        inv = load(EXAMPLE)
        had_blackhole = (
            "198.18.0.0/15" in netns.run(["ip", "route", "show", "type", "blackhole"]).stdout
        )
        netns.ensure_blackhole()  # before anything, including the naive build below
        ups, downs, probes = [], [], []
        memory = ""
        for run in range(args.runs):
            before = mem_available_kb()
            t = time.perf_counter()
            state = build.up(inv)
            ups.append(time.perf_counter() - t)
            bp = blueprint(inv, state.lab)
            for _ in range(5):
                obs, elapsed = flows.timed_observe(inv, bp)
                assert all(o.as_expected for o in obs), "a flow is not as expected"
                probes.append(elapsed)
            if run == 0:
                pss = sum(
                    pss_kb(int(p["pid"]))
                    for p in state.procs
                    if daemons.is_running(daemons.DaemonProc.from_dict(p))
                )
                used = before - mem_available_kb()
                memory = (
                    f"daemons PSS {pss / 1024:.0f} MiB over {len(state.procs)} processes; "
                    f"MemAvailable drop {used / 1024:.0f} MiB (kernel + namespaces, noisy)"
                )
                naive_probe_s = naive_probe(inv, bp, 20)
            t = time.perf_counter()
            build.down()
            downs.append(time.perf_counter() - t)
        naive_net_s = naive_network("cdnb")
        if not had_blackhole:
            netns.run(["ip", "route", "del", "blackhole", "198.18.0.0/15"], check=False)
    n_flows = len(inv.flows)
    print(
        f"twin: {len(state.namespaces)} namespaces, {len(state.procs)} processes, "
        f"{n_flows} flows; {args.runs} runs"
    )
    print(f"{'measure':<34}{'cordon':>12}{'alternative':>14}  alternative is")
    print(f"{'lab up (median, s)':<34}{statistics.median(ups):>12.2f}{'':>14}")
    print(
        f"{'  network part (s)':<34}{state.timings['network_s']:>12.2f}{naive_net_s:>14.2f}"
        "  one ip process per object"
    )
    print(
        f"{'lab flows, all flows (median, s)':<34}{statistics.median(probes):>12.3f}"
        f"{naive_probe_s:>14.2f}  a process per probe (20 run, scaled)"
    )
    print(f"{'lab down (median, s)':<34}{statistics.median(downs):>12.2f}")
    print(f"memory: {memory}")
    print("aims: lab up < 20 s, lab flows < 5 s")


if __name__ == "__main__":
    main()

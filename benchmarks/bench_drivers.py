"""Benchmark of the device drivers on the 9-site twin: connect + apply + verify, cold (new
connections) and warm (pooled), per driver and on all 21 devices in parallel, next to a raw
paramiko baseline doing the same change in the same run (the physical limit on this machine).

The change: `shutdown` on 2 access ports of every IOS-style switch (`cisco_ios`, read back from
`show interface brief`); on every Linux firewall (`linux_nftables`), a one-rule ruleset loaded
into `table inet cordon` (read back from `nft -j list table`); over SNMP, ifAdminStatus down on
the same 2 ports (read back by polling). Each run is undone (untimed) before the next. The devices
are picked by platform from the example inventory (its mix decides which and how many); the one
device alone is the first of each platform there. The other platforms' drivers (IOS-XE, AOS-CX,
Junos, FortiGate, Stormshield) are measured by `benchmarks.bench_platforms`.

Run as root, with no twin up: `.venv/bin/python -m benchmarks.bench_drivers [--runs N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

from agent.drivers import ChangeSet, Driver, Expectation, Pool, Target, Via
from agent.inventory import load
from agent.inventory.models import Inventory, Platform
from agent.platforms.linux_nftables.driver import nft_remove, nft_replace
from agent.platforms.registry import one_shot

EXAMPLE = Path(__file__).resolve().parents[1] / "inventory" / "hospi-grand-ouest.yaml"
RULE_COMMENT = "bench:block-rdp"
RULES = [
    "chain input {",
    "  type filter hook input priority 0; policy accept;",
    f'  iifname "inet0" tcp dport 3389 drop comment "{RULE_COMMENT}"',
    "}",
]


def ports(inv: Inventory, device: str) -> list[str]:
    found = inv.find_device(device)
    assert found is not None
    return [i.name for i in found[1].interfaces if i.vlan is not None][:2]


def names(inv: Inventory, platform: Platform) -> list[str]:
    return [d.name for _, d in inv.devices() if d.platform == platform]


def first(inv: Inventory, platform: Platform) -> str:
    """The inventory's first device of `platform` (the one-device-alone figures run on it); the
    example's platform mix decides which device that is."""
    found = names(inv, platform)
    if not found:
        sys.exit(f"{inv.path}: no {platform} device to benchmark")
    return found[0]


# ----------------------------------------------------------------------------- raw paramiko


class Raw:
    """The baseline: bare paramiko Transport, pinned key compared, no framework, batch sends."""

    def __init__(self, inv: Inventory) -> None:
        base = Path(inv.path).parent
        assert inv.group.known_hosts is not None
        self.inv = inv
        self.host_keys = paramiko.HostKeys(str(base / inv.group.known_hosts))
        self.pkey = paramiko.Ed25519Key.from_private_key_file(
            str(base / ".secrets" / "ssh" / "cordon_ed25519")
        )

    def _transport(self, device: str) -> paramiko.Transport:
        found = self.inv.find_device(device)
        assert found is not None
        addr = str(found[1].management.address)
        sock = socket.create_connection((addr, 22), timeout=10)
        t = paramiko.Transport(sock)
        t.start_client(timeout=10)
        pinned = self.host_keys.lookup(addr)
        if pinned is None or t.get_remote_server_key() not in pinned.values():
            raise RuntimeError(f"{device}: host key mismatch")
        t.auth_publickey("root", self.pkey)
        return t

    def ios(self, device: str) -> None:
        t = self._transport(device)
        try:
            chan = t.open_session()
            chan.get_pty(term="vt100", width=511, height=1000)
            chan.invoke_shell()
            buf = _read_until(chan, b"", re.compile(rb"#\s*$"))
            lines = ["configure terminal"]
            for p in ports(self.inv, device):
                lines += [f"interface {p}", "shutdown"]
            lines += ["end", "show interface brief"]
            chan.sendall(("\n".join(lines) + "\n").encode())
            buf = _read_until(chan, b"", re.compile(rb"show interface brief.*?\n.*#\s*$", re.S))
            text = buf.decode()
            for p in ports(self.inv, device):
                if not re.search(rf"^{re.escape(p)}\s+down\b", text, re.M):
                    raise RuntimeError(f"{device}: {p} not down after raw change")
        finally:
            t.close()

    def nft(self, device: str) -> None:
        t = self._transport(device)
        try:
            chan = t.open_session()
            chan.exec_command("nft -f - && nft -j list table inet cordon")
            script = "table inet cordon\ndelete table inet cordon\ntable inet cordon {\n"
            chan.sendall((script + "\n".join(RULES) + "\n}\n").encode())
            chan.shutdown_write()
            out = chan.makefile("rb").read()
            if chan.recv_exit_status() != 0 or RULE_COMMENT.encode() not in out:
                raise RuntimeError(f"{device}: raw nft load failed")
        finally:
            t.close()


def _read_until(chan: paramiko.Channel, buf: bytes, rx: re.Pattern[bytes]) -> bytes:
    chan.settimeout(10)
    while not rx.search(buf):
        data = chan.recv(65536)
        if not data:
            raise RuntimeError("channel closed")
        buf += data
    return buf


# ----------------------------------------------------------------------------- cordon drivers


def cordon_job(inv: Inventory, via: Via = "ssh") -> Callable[[Driver], None]:
    def job(drv: Driver) -> None:
        name = drv.target.name
        wanted = ports(inv, name)
        if via == "snmp":
            drv.apply(ChangeSet(tuple(f"ifAdminStatus {p} down" for p in wanted)))
            drv.verify(Expectation(admin_up=dict.fromkeys(wanted, False)))
        elif drv.target.device.platform == "cisco_ios":
            lines = [x for p in wanted for x in (f"interface {p}", "shutdown")]
            drv.apply(ChangeSet(tuple(lines), action="bench.contain"))
            drv.verify(Expectation(admin_up=dict.fromkeys(wanted, False)))
        else:
            drv.apply(nft_replace(RULES, action="bench.contain"))
            drv.verify(Expectation(rule_comments=frozenset({RULE_COMMENT})))

    return job


def undo_job(inv: Inventory) -> Callable[[Driver], None]:
    def job(drv: Driver) -> None:
        name = drv.target.name
        if drv.target.device.platform == "cisco_ios":
            wanted = ports(inv, name)
            lines = [x for p in wanted for x in (f"interface {p}", "no shutdown")]
            drv.apply(ChangeSet(tuple(lines), action="bench.undo"))
            drv.verify(Expectation(admin_up=dict.fromkeys(wanted, True)))
        else:
            drv.apply(nft_remove(action="bench.undo"))
            drv.verify(Expectation(table_present=False))

    return job


def parallel(fn: Callable[[str], object], devices: Sequence[str]) -> tuple[float, list[float]]:
    """Wall time of `fn` on every device in parallel threads, and each device's own time."""

    def timed(d: str) -> float:
        t = time.perf_counter()
        fn(d)
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(devices)) as ex:
        each = list(ex.map(timed, devices))
    return time.perf_counter() - t0, each


def cold(inv: Inventory, via: Via = "ssh") -> Callable[[str], object]:
    job = cordon_job(inv, via)

    def run(device: str) -> None:
        with one_shot(Target.of(inv, device), via=via) as drv:
            job(drv)

    return run


# ----------------------------------------------------------------------------- one-shot processes


def child(mode: str) -> None:
    """Run one cold job on every IOS-style switch in this fresh process (imports included)."""
    inv = load(EXAMPLE)
    switches = names(inv, "cisco_ios")
    fn: Callable[[str], object] = Raw(inv).ios if mode == "raw" else cold(inv)
    parallel(fn, switches)


def in_process(mode: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_drivers", "--child", mode],
        check=True,
        cwd=EXAMPLE.parents[1],
    )
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- report


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def fmt(xs: Sequence[float]) -> str:
    return f"{med(xs):6.3f} s" if xs else "      -"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=["raw", "cordon"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    os.environ.setdefault("CORDON_LOG_DIR", tempfile.mkdtemp(prefix="cordon-bench-logs-"))
    from agent.lab import build  # noqa: PLC0415 - the twin is needed by the parent only
    from agent.lab.state import LabState  # noqa: PLC0415
    from benchmarks.machine import describe  # noqa: PLC0415

    print(describe())
    print(f"audit log of the drivers: {os.environ['CORDON_LOG_DIR']}")
    with build.exclusive(print):
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        inv = load(EXAMPLE)
        build.up(inv)
        try:
            figures = measure(inv, args.runs)
        finally:
            build.down()
    report(figures, args.runs, inv)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def measure(inv: Inventory, runs: int) -> dict[str, list[float]]:
    raw = Raw(inv)
    switches = names(inv, "cisco_ios")
    firewalls = names(inv, "linux_nftables")
    everything = switches + firewalls
    alone_sw, alone_fw = first(inv, "cisco_ios"), first(inv, "linux_nftables")
    f: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        f.setdefault(key, []).append(value)

    with Pool(inv, keepalive=None) as undo_pool, Pool(inv, keepalive=None) as warm_pool:
        pool_undo = undo_job(inv)

        def undo() -> None:
            for o in undo_pool.run_many(everything, pool_undo):
                if not o.ok:
                    raise RuntimeError(f"undo failed: {o.error}")

        for o in warm_pool.warm(everything) + warm_pool.warm(switches, via="snmp"):
            if not o.ok:
                raise RuntimeError(f"warm-up failed: {o.error}")
        undo()
        job = cordon_job(inv)
        snmp_job = cordon_job(inv, "snmp")
        for run in range(runs):
            print(f"run {run + 1}/{runs}", flush=True)
            for key, fn, devs in (
                ("raw ios", raw.ios, switches),
                ("raw nft", raw.nft, firewalls),
                ("raw all", lambda d: (raw.ios if d in switches else raw.nft)(d), everything),
                ("cold ios", cold(inv), switches),
                ("cold nft", cold(inv), firewalls),
                ("cold all", cold(inv), everything),
                ("warm ios", lambda d: warm_pool.run(d, job), switches),
                ("warm nft", lambda d: warm_pool.run(d, job), firewalls),
                ("warm all", lambda d: warm_pool.run(d, job), everything),
                ("cold snmp", cold(inv, "snmp"), switches),
                ("warm snmp", lambda d: warm_pool.run(d, snmp_job, via="snmp"), switches),
            ):
                wall, each = parallel(fn, devs)
                add(key, wall)
                add(f"{key} per-device", med(each))
                undo()
            # one device alone, no contention: the per-device latency of each driver
            for key, fn in (
                ("alone raw ios", raw.ios),
                ("alone cold ios", cold(inv)),
                ("alone warm ios", lambda d: warm_pool.run(d, job)),
            ):
                add(key, parallel(fn, [alone_sw])[0])
                undo()
            for key, fn in (
                ("alone raw nft", raw.nft),
                ("alone cold nft", cold(inv)),
                ("alone warm nft", lambda d: warm_pool.run(d, job)),
            ):
                add(key, parallel(fn, [alone_fw])[0])
                undo()
            for key, fn in (
                ("alone cold snmp", cold(inv, "snmp")),
                ("alone warm snmp", lambda d: warm_pool.run(d, snmp_job, via="snmp")),
            ):
                add(key, parallel(fn, [alone_sw])[0])
                undo()
            add("process raw ios", in_process("raw"))
            undo()
            add("process cordon ios", in_process("cordon"))
            undo()
    f["_devices"] = [float(len(switches)), float(len(firewalls))]
    return f


def report(f: dict[str, list[float]], runs: int, inv: Inventory) -> None:
    n_sw, n_fw = (int(x) for x in f["_devices"])
    alone_sw, alone_fw = first(inv, "cisco_ios"), first(inv, "linux_nftables")
    print()
    print(f"Medians of {runs} runs; each run is undone (untimed) before the next.")
    print("Change = connect + apply + read-back verify (+ close when cold).")
    print()
    cols = f"{'raw paramiko':>14}{'cordon cold':>14}{'cold/raw':>10}{'cordon warm':>14}"
    head = f"{'scenario (all devices in parallel)':<44}{cols}"
    print(head)
    print("-" * len(head))
    for label, key in (
        (f"{n_sw} cisco_ios (netmiko), shut 2 ports", "ios"),
        (f"{n_fw} linux_nftables (paramiko), ruleset", "nft"),
        (f"all {n_sw + n_fw} twin devices (ios + nftables)", "all"),
    ):
        raw, c, w = f[f"raw {key}"], f[f"cold {key}"], f[f"warm {key}"]
        print(f"{label:<44}{fmt(raw):>14}{fmt(c):>14}{med(c) / med(raw):>9.2f}x{fmt(w):>14}")
        print(
            f"{'   per device, median within that run':<44}{fmt(f[f'raw {key} per-device']):>14}"
            f"{fmt(f[f'cold {key} per-device']):>14}{'':>10}{fmt(f[f'warm {key} per-device']):>14}"
        )
    print(
        f"{f'{n_sw} switches, SNMPv3 ifAdminStatus x2':<44}{'-':>14}{fmt(f['cold snmp']):>14}"
        f"{'':>10}{fmt(f['warm snmp']):>14}"
    )
    print("   (SNMP read-back polls through snmpd's ifTable cache, about 2 s)")
    print()
    print(f"{'one device alone (no contention)':<44}{cols.replace('cold/raw', '        ')}")
    for label, key, has_raw in (
        (f"{alone_sw}, cisco_ios", "ios", True),
        (f"{alone_fw}, linux_nftables", "nft", True),
        (f"{alone_sw}, SNMPv3", "snmp", False),
    ):
        raw_txt = fmt(f[f"alone raw {key}"]) if has_raw else "-"
        print(
            f"{'   ' + label:<44}{raw_txt:>14}{fmt(f[f'alone cold {key}']):>14}{'':>10}"
            f"{fmt(f[f'alone warm {key}']):>14}"
        )
    print()
    pr, pc = f["process raw ios"], f["process cordon ios"]
    print(
        f"one-shot process (interpreter + imports + cold change on {n_sw} switches): "
        f"raw {med(pr):.3f} s, cordon {med(pc):.3f} s ({med(pc) / med(pr):.2f}x)"
    )
    warm_all = med(f["warm all"])
    print(
        f"aims: cold ios within 1.2x of raw: {med(f['cold ios']) / med(f['raw ios']):.2f}x; "
        f"warm change on all {n_sw + n_fw} devices under 0.2 s: {warm_all:.3f} s"
    )


if __name__ == "__main__":
    main()

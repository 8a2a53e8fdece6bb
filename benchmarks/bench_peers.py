"""The peers' job, side by side in one run: shut two interfaces on each IOS-style device and read
them back (`show interface brief`), all devices in parallel, cold (a fresh process, new SSH
sessions), wall time from process start, at 9 and 36 devices. Run by raw paramiko, netmiko,
Nornir (nornir + nornir_netmiko: the `bench` extra, skipped without it), Cordon's drivers alone,
and the full `cordon run --local --yes` (plan, journal, audit, backups, read-back) as a
subprocess.

The devices: a twin group this benchmark builds for itself (`scripts.synth.synthetic`, 4 sites
of 9 access switches on the `cisco_ios` platform's twin: FRR's vtysh behind sshd), each access
switch given two spare ports (gi30, gi31) in a zone `bench` that the playbook `bench-shut`
(written next to the inventory) shuts with `shut_zone_ports`; a host is cabled to each (the twin
makes a switch port where something is cabled: a veth into the host's namespace). 9 devices: one
site's access switches; 36: the four sites'. Every tool shuts the same ports and checks them
down. Each run is undone (untimed, `no shutdown` read back) before the next; each Cordon run gets
a fresh state directory (a cold start: no journal, no pool). The order of the tools rotates
between runs.

Every child process reaches the devices through the twin's management veth only (the twin's
root link, like every twin client); the twin is taken down at the end. agent/ is compiled to
bytecode first, as an install does (the peers' libraries are, in site-packages). Ansible is not
run (not installed here; it needs its own install).

Run as root, with no twin up: `.venv/bin/python -m benchmarks.bench_peers [--runs N]`.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import ipaddress
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {9: ["site-001"], 36: ["site-001", "site-002", "site-003", "site-004"]}
PORTS = ("gi30", "gi31")
VLAN = 250
PLAYBOOK = "bench-shut"
TOOLS = ("raw", "netmiko", "nornir", "drivers", "cordon", "base")
LABELS = {
    "raw": "raw paramiko",
    "netmiko": "netmiko",
    "nornir": "Nornir + nornir_netmiko",
    "drivers": "Cordon, drivers only",
    "cordon": "Cordon, `cordon run --local --yes`",
    "base": "same, the --base checkout's agent/",
}
PLAYBOOK_DOC = {
    "name": PLAYBOOK,
    "description": "The peers' benchmark job: shut the bench zone's two ports on every switch",
    "level": "L4",
    "targets": {"kinds": ["establishment"]},
    "order": "parallel",
    "limits": {"one_switch_at_a_time": False, "max_parallel_sites": 16},
    "steps": [{"name": "shut", "action": "shut_zone_ports", "zones": ["bench"]}],
}


# ----------------------------------------------------------------------------- the bench group


def group() -> dict[str, Any]:
    """4 synthetic sites, each access switch with two spare ports in the zone `bench`."""
    from scripts.synth import synthetic  # noqa: PLC0415 - the parent only

    doc = synthetic(4, devices_per_site=11)
    used = _networks(doc)
    free = (n for n in ipaddress.IPv4Network("198.18.250.0/24").subnets(new_prefix=27))
    for site in doc["sites"]:
        if site.get("kind") != "establishment":
            continue
        subnet = next(free)
        if any(subnet.overlaps(n) for n in used):
            raise SystemExit(f"bench zone subnet {subnet} overlaps the synthetic group")
        addresses = subnet.hosts()
        ports, hosts = [], []
        for device in site["devices"]:
            if device.get("role") != "access_switch":
                continue
            for port in PORTS:
                device["interfaces"].append(
                    {"name": port, "vlan": VLAN, "description": "bench spare port"}
                )
                ports.append(f"{device['name']}:{port}")
                # a host on each port: the twin makes a switch port only where something is
                # cabled (a veth into the host's namespace), so the port really goes down
                hosts.append(
                    {
                        "name": f"{device['name']}-{port}",
                        "address": str(next(addresses)),
                        "port": f"{device['name']}:{port}",
                        "description": "bench host",
                    }
                )
        site["zones"].append(
            {
                "name": "bench",
                "criticality": "business",
                "description": "spare ports for the peers' benchmark",
                "vlan": VLAN,
                "subnet": str(subnet),
                "ports": ports,
                "hosts": hosts,
            }
        )
    return doc


def _networks(doc: object) -> list[ipaddress.IPv4Network]:
    """Every address or network written in the document (to keep the bench subnets apart)."""
    out: list[ipaddress.IPv4Network] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("subnet", "address") and isinstance(value, str):
                out.append(ipaddress.IPv4Interface(value).network)
            else:
                out += _networks(value)
    elif isinstance(doc, list):
        for value in doc:
            out += _networks(value)
    return out


def devices_of(inv_doc: dict[str, Any], sites: Sequence[str]) -> list[dict[str, Any]]:
    """The job's devices: name, management address, the two ports."""
    return [
        {"name": d["name"], "address": d["management"]["address"], "ports": list(PORTS)}
        for s in inv_doc["sites"]
        if s["name"] in sites
        for d in s["devices"]
        if d.get("role") == "access_switch"
    ]


# ----------------------------------------------------------------------------- the peers (children)


def _parallel(fn: Callable[[dict[str, Any]], None], devices: Sequence[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(max_workers=len(devices)) as ex:
        list(ex.map(fn, devices))


def _lines(ports: Sequence[str], no: str = "") -> list[str]:
    return [x for p in ports for x in (f"interface {p}", f"{no}shutdown")]


def _check_down(name: str, ports: Sequence[str], text: str) -> None:
    for p in ports:
        if not re.search(rf"^{re.escape(p)}\s+down\b", text, re.M):
            raise RuntimeError(f"{name}: {p} not down after the change")


def raw_child(work: Path, devices: Sequence[dict[str, Any]]) -> None:
    """Bare paramiko: pinned host key compared, key auth, one PTY shell, batch send, read back."""
    import paramiko  # noqa: PLC0415 - counted in the child's time, as in a peer's script

    host_keys = paramiko.HostKeys(str(work / ".secrets" / "known_hosts"))
    pkey = paramiko.Ed25519Key.from_private_key_file(str(work / ".secrets/ssh/cordon_ed25519"))

    def read_until(chan: paramiko.Channel, buf: bytes, rx: re.Pattern[bytes]) -> bytes:
        while not rx.search(buf):
            data = chan.recv(65536)
            if not data:
                raise RuntimeError("channel closed")
            buf += data
        return buf

    def one(dev: dict[str, Any]) -> None:
        sock = socket.create_connection((dev["address"], 22), timeout=10)
        t = paramiko.Transport(sock)
        try:
            t.start_client(timeout=10)
            pinned = host_keys.lookup(dev["address"])
            if pinned is None or t.get_remote_server_key() not in pinned.values():
                raise RuntimeError(f"{dev['name']}: host key mismatch")
            t.auth_publickey("root", pkey)
            chan = t.open_session()
            chan.settimeout(10)
            chan.get_pty(term="vt100", width=511, height=1000)
            chan.invoke_shell()
            read_until(chan, b"", re.compile(rb"#\s*$"))
            lines = ["configure terminal", *_lines(dev["ports"]), "end", "show interface brief"]
            chan.sendall(("\n".join(lines) + "\n").encode())
            out = read_until(chan, b"", re.compile(rb"show interface brief.*?\n.*#\s*$", re.S))
            _check_down(dev["name"], dev["ports"], out.decode())
        finally:
            t.close()

    _parallel(one, devices)


def _netmiko_params(work: Path) -> dict[str, Any]:
    """netmiko as its users set it up for this job: key auth, the host key checked against the
    group's known_hosts (strict), fast_cli (netmiko 4's default)."""
    return {
        "device_type": "cisco_ios",
        "username": "root",
        "use_keys": True,
        "key_file": str(work / ".secrets/ssh/cordon_ed25519"),
        "allow_agent": False,
        "ssh_strict": True,
        "system_host_keys": False,
        "alt_host_keys": True,
        "alt_key_file": str(work / ".secrets" / "known_hosts"),
    }


def netmiko_child(work: Path, devices: Sequence[dict[str, Any]]) -> None:
    from netmiko import ConnectHandler  # noqa: PLC0415

    params = _netmiko_params(work)

    def one(dev: dict[str, Any]) -> None:
        with ConnectHandler(host=dev["address"], **params) as conn:
            conn.send_config_set(_lines(dev["ports"]))
            _check_down(dev["name"], dev["ports"], str(conn.send_command("show interface brief")))

    _parallel(one, devices)


def nornir_child(work: Path, devices: Sequence[dict[str, Any]]) -> None:
    import yaml  # noqa: PLC0415
    from nornir import InitNornir  # noqa: PLC0415
    from nornir.core.task import Result, Task  # noqa: PLC0415
    from nornir_netmiko.tasks import (  # noqa: PLC0415
        netmiko_send_command,
        netmiko_send_config,
    )

    inv = work / f"nornir-{len(devices)}"
    params = _netmiko_params(work)
    extras = {k: v for k, v in params.items() if k not in ("device_type", "username")}
    inv.mkdir(exist_ok=True)
    (inv / "hosts.yaml").write_text(
        yaml.safe_dump(
            {
                d["name"]: {
                    "hostname": d["address"],
                    "username": "root",
                    "platform": "cisco_ios",
                    "data": {"ports": d["ports"]},
                    "connection_options": {"netmiko": {"extras": extras}},
                }
                for d in devices
            }
        )
    )
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": len(devices)}},
        inventory={"plugin": "SimpleInventory", "options": {"host_file": str(inv / "hosts.yaml")}},
        logging={"enabled": False},
    )

    def job(task: Task) -> Result:
        ports = task.host["ports"]
        task.run(task=netmiko_send_config, config_commands=_lines(ports))
        out = task.run(task=netmiko_send_command, command_string="show interface brief")
        _check_down(task.host.name, ports, str(out.result))
        return Result(host=task.host)

    result = nr.run(task=job)
    nr.close_connections()
    if result.failed:
        raise RuntimeError(f"nornir: failed on {sorted(result.failed_hosts)}")


def drivers_child(work: Path, devices: Sequence[dict[str, Any]]) -> None:
    """Cordon's drivers alone: one-shot driver per device (pinned transport, prompt first,
    audited commands), apply, read back."""
    from agent.drivers import ChangeSet, Expectation, Target  # noqa: PLC0415
    from agent.inventory import load  # noqa: PLC0415
    from agent.platforms.registry import one_shot  # noqa: PLC0415

    inv = load(work / "inventory.yaml")

    def one(dev: dict[str, Any]) -> None:
        with one_shot(Target.of(inv, dev["name"])) as drv:
            drv.apply(ChangeSet(tuple(_lines(dev["ports"])), action="bench.shut"))
            drv.verify(Expectation(admin_up=dict.fromkeys(dev["ports"], False)))

    _parallel(one, devices)


def profiled(out: Path, argv: Sequence[str]) -> None:
    """`python -m MODULE ARGS` (argv: `-m MODULE ARGS`) in this process, every thread under
    cProfile (the devices' worker threads and paramiko's transports included: `python -m
    cProfile` sees the main thread only, where a `cordon run` waits for its workers); the
    statistics merged into `out` when the process exits."""
    import atexit  # noqa: PLC0415 - the profiled child only
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415
    import runpy  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("--profiled OUT -- -m MODULE [ARGS]")
    profiles = [cProfile.Profile()]
    bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def each_thread(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            bootstrap(self)
        finally:
            prof.disable()

    def merge() -> None:
        profiles[0].disable()
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread that profiled nothing
                stats.add(prof)
        stats.dump_stats(str(out))

    threading.Thread._bootstrap_inner = each_thread  # type: ignore[attr-defined]
    atexit.register(merge)
    sys.argv = [argv[1], *argv[2:]]
    profiles[0].enable()
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


CHILDREN = {
    "raw": raw_child,
    "netmiko": netmiko_child,
    "nornir": nornir_child,
    "drivers": drivers_child,
}


# ----------------------------------------------------------------------------- the parent


def timed_child(
    tool: str, work: Path, n: int, run: int, base: Path | None, profile: Path | None = None
) -> tuple[float, float]:
    """Wall time of one fresh process doing the job, from its start to its exit, and the CPU
    time it used (user + system; `profile`: run under `profiled`, its statistics written there)."""
    env = {**os.environ, "CORDON_LOG_DIR": str(work / "logs")}
    if tool == "base" and base is not None:  # another checkout's `agent` first on the path
        env["PYTHONPATH"] = str(base)
    if tool in ("cordon", "base"):
        state = work / f"state-{tool}-{n}-{run}"
        argv = [sys.executable, "-m", "agent", "run", PLAYBOOK, "--local", "--yes"]
        if profile is not None:  # every thread's profile (cProfile's own: the main thread's)
            argv[1:1] = ["-m", "benchmarks.bench_peers", "--profiled", str(profile)]
            env["PYTHONPATH"] = str(ROOT)
        argv += ["-i", "inventory.yaml"]
        argv += ["--roles", "roles.yaml", "--state-dir", str(state)]
        argv += [x for s in SIZES[n] for x in ("--site", s)]
        cwd = work
    else:
        argv = [sys.executable, "-m", "benchmarks.bench_peers", "--child", tool]
        argv += ["--work", str(work), "--n", str(n)]
        cwd = ROOT
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tool} at {n} devices failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def prepare(work: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415 - the parent only

    doc = group()
    (work / "inventory.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    roles = work / "roles.yaml"
    roles.write_text("oncall: []\noperator: []\nauditor: []\nroot_is: operator\n")
    roles.chmod(0o600)
    (work / "playbooks").mkdir()
    (work / "playbooks" / f"{PLAYBOOK}.yaml").write_text(yaml.safe_dump(PLAYBOOK_DOC))
    (work / "devices.json").write_text(
        json.dumps({str(n): devices_of(doc, sites) for n, sites in SIZES.items()})
    )
    return doc


def measure(
    work: Path, runs: int, tools: Sequence[str], base: Path | None, profile: Path | None = None
) -> dict[str, list[float]]:
    from agent.drivers import ChangeSet, Driver, Expectation, Pool  # noqa: PLC0415
    from agent.inventory import load  # noqa: PLC0415

    inv = load(work / "inventory.yaml")
    every = json.loads((work / "devices.json").read_text())
    figures: dict[str, list[float]] = {}

    def undo_job(drv: Driver) -> None:
        drv.apply(ChangeSet(tuple(_lines(PORTS, "no ")), action="bench.undo"))
        drv.verify(Expectation(admin_up=dict.fromkeys(PORTS, True)))

    with Pool(inv, keepalive=None) as pool:
        names = [d["name"] for d in every["36"]]

        def undo() -> None:
            for o in pool.run_many(names, undo_job):
                if not o.ok:
                    raise RuntimeError(f"undo failed: {o.error}")

        undo()
        for run in range(runs):
            for n in SIZES:
                order = list(tools[run % len(tools) :]) + list(tools[: run % len(tools)])
                for tool in order:
                    wall, cpu = timed_child(tool, work, n, run, base)
                    figures.setdefault(f"{tool} {n}", []).append(wall)
                    figures.setdefault(f"{tool} {n} cpu", []).append(cpu)
                    print(
                        f"  run {run + 1}/{runs}  {n:>2} devices  {tool:<8} {wall:.3f} s "
                        f"(cpu {cpu:.3f} s)"
                    )
                    undo()
        if profile is not None:  # one more Cordon run per size, under cProfile (not counted)
            profile.mkdir(parents=True, exist_ok=True)
            for n in SIZES:
                timed_child("cordon", work, n, runs, None, profile / f"cordon-run-{n}.prof")
                undo()
            print(f"profiles of `cordon run`: {profile}/cordon-run-N.prof")
    return figures


def report(f: dict[str, list[float]], runs: int, tools: Sequence[str]) -> None:
    print()
    print(
        f"The peers' job (shut 2 ports per IOS-style device + read back, all in parallel, cold, "
        f"wall time from process start): median of {runs}, [min-max]"
    )
    head = f"{'tool':<38}" + "".join(f"{f'{n} devices':>31}" for n in SIZES)
    print(head)
    print("-" * len(head))
    for tool in tools:
        cells = []
        for n in SIZES:
            xs = f[f"{tool} {n}"]
            ratio = statistics.median(xs) / statistics.median(f[f"raw {n}"])
            cells.append(
                f"{statistics.median(xs):.3f} s {ratio:4.2f}x [{min(xs):.2f}-{max(xs):.2f}]"
            )
        print(f"{LABELS[tool]:<38}" + "".join(f"{c:>31}" for c in cells))
    print(f"{'Ansible ios_config':<38}{'not run (not installed)':>31}")
    print()
    print("CPU time of each process (user + system), median: what it costs on a busy machine")
    for tool in tools:
        cells = []
        for n in SIZES:
            cpu = statistics.median(f[f"{tool} {n} cpu"])
            cells.append(f"{cpu:.3f} s {cpu / statistics.median(f[f'raw {n} cpu']):4.2f}x")
        print(f"{LABELS[tool]:<38}" + "".join(f"{c:>31}" for c in cells))


def main() -> None:
    if sys.argv[1:2] == ["--profiled"]:  # a profiled child: --profiled OUT -m MODULE ARGS
        profiled(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--base",
        type=Path,
        help="also run `cordon run` from this directory's agent/ (e.g. `git archive main agent` "
        "unpacked): before and after in the same run",
    )
    parser.add_argument(
        "--profile", type=Path, help="also profile one cordon run per size here (every thread)"
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        devices = json.loads((args.work / "devices.json").read_text())[str(args.n)]
        CHILDREN[args.child](args.work, devices)
        return
    tools = ["raw", *(t for t in args.tools if t not in ("raw", "base"))]  # ratios are to raw
    if "nornir" in tools and not all(map(importlib.util.find_spec, ("nornir", "nornir_netmiko"))):
        print("Nornir not run: `pip install -e '.[bench]'` installs nornir and nornir_netmiko")
        tools.remove("nornir")
    if args.base is not None:
        if not (args.base / "agent" / "__init__.py").is_file():
            sys.exit(f"--base {args.base}: no agent/ package there")
        tools.append("base")
    from agent.inventory import load  # noqa: PLC0415 - the parent only
    from agent.lab import build  # noqa: PLC0415
    from agent.lab.state import LabState  # noqa: PLC0415
    from benchmarks.machine import describe  # noqa: PLC0415

    print(describe())
    # as an install does (pip writes every module's bytecode): the peers' libraries have theirs
    # in site-packages, and a checkout run with PYTHONDONTWRITEBYTECODE would compile Cordon's
    # ~300 modules at every start
    for where in (ROOT, args.base):
        if where is not None and not compileall.compile_dir(where / "agent", quiet=1):
            sys.exit(f"could not compile {where / 'agent'}")
    print("bytecode of agent/ written (as an install does)")
    with tempfile.TemporaryDirectory(prefix="cordon-bench-peers-") as t, build.exclusive(print):
        work = Path(t)
        if LabState.load(build.DEFAULT_LAB) is not None:
            sys.exit("a twin is up: `cordon lab down` first")
        prepare(work)
        build.up(load(work / "inventory.yaml"))
        try:
            figures = measure(work, args.runs, tools, args.base, args.profile)
        finally:
            build.down()
    report(figures, args.runs, tools)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

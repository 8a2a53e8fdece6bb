"""Fixtures of the twin tests: a tiny lab of `cdt-` namespaces, torn down and checked after each.

Twin tests need root; outside CI they skip loudly, in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import os
import pty
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.lab import daemons, netns

REQUIRED = [
    "ip", "ssh", "ssh-keygen", "snmpget", "snmpset", daemons.SSHD, daemons.ZEBRA,
    daemons.VTYSH, daemons.SNMPD, daemons.UNSHARE,
]  # fmt: skip


def _twin_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root: network namespaces and the daemons need root"
    missing = [p for p in REQUIRED if shutil.which(p) is None]
    if missing:
        return f"missing programs: {', '.join(missing)}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("twin") is None:
        return
    reason = _twin_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"twin test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"!!! TWIN TEST SKIPPED ({reason}); run as root to exercise the real daemons !!!")


def wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    """Poll `predicate()` until true; fail naming `what` (a bound, not a timing assertion)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(0.05)


def link_is_up(ns: str, dev: str) -> bool:
    out = netns.run(["ip", "-o", "link", "show", dev], netns=ns).stdout
    flags = re.search(r"<([^>]*)>", out)
    assert flags is not None, out
    return "UP" in flags.group(1).split(",")


@dataclass
class Lab:
    """Three namespaces: a (client) -- b (switch/router, forwards) -- c (host).

    a eth0 198.18.1.1/30 <-> b eth0 198.18.1.2/30 ; b eth1 198.18.2.1/30 <-> c eth0 198.18.2.2/30.
    """

    tag: str
    root: Path
    a: str
    b: str
    c: str
    pathspace: str
    namespaces: list[str] = field(default_factory=list)
    procs: list[daemons.DaemonProc] = field(default_factory=list)
    ptys: list[PtySession] = field(default_factory=list)

    A_ADDR = "198.18.1.1"
    B_MGMT = "198.18.1.2"
    B_LAN = "198.18.2.1"
    C_ADDR = "198.18.2.2"

    def node_dir(self, node: str) -> Path:
        d = self.root / node
        d.mkdir(exist_ok=True)
        return d

    def add_ns(self, name: str) -> str:
        self.namespaces.append(name)
        netns.create(name)
        return name

    def track(self, *procs: daemons.DaemonProc) -> None:
        self.procs.extend(procs)


def _build(lab: Lab) -> None:
    for ns in (lab.a, lab.b, lab.c):
        lab.add_ns(ns)
    run = netns.run
    run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", lab.b],
        netns=lab.a)  # fmt: skip
    run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", lab.c],
        netns=lab.b)  # fmt: skip
    for ns, dev, cidr in (
        (lab.a, "eth0", f"{lab.A_ADDR}/30"),
        (lab.b, "eth0", f"{lab.B_MGMT}/30"),
        (lab.b, "eth1", f"{lab.B_LAN}/30"),
        (lab.c, "eth0", f"{lab.C_ADDR}/30"),
    ):
        run(["ip", "addr", "add", cidr, "dev", dev], netns=ns)
        run(["ip", "link", "set", dev, "up"], netns=ns)
    run(["ip", "route", "add", "198.18.2.0/30", "via", lab.B_MGMT], netns=lab.a)
    run(["ip", "route", "add", "198.18.1.0/30", "via", lab.B_LAN], netns=lab.c)
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=lab.b)


def _teardown(lab: Lab) -> list[str]:
    problems: list[str] = []
    for session in lab.ptys:
        session.close()
    for proc in reversed(lab.procs):
        try:
            daemons.stop(proc)
        except Exception as exc:
            problems.append(f"stop {proc.name}: {exc}")
    for ns in lab.namespaces:
        left = netns.pids(ns)
        if left:
            problems.append(f"processes left in {ns}: {left}")
        try:
            netns.delete(ns)
        except Exception as exc:
            problems.append(f"delete {ns}: {exc}")
    shutil.rmtree(lab.root, ignore_errors=True)
    shutil.rmtree(daemons.frr_dir(lab.pathspace), ignore_errors=True)
    for proc in lab.procs:
        if daemons.is_running(proc):
            problems.append(f"{proc.name} pid {proc.pid} still running")
    problems += [f"namespace {ns} left" for ns in lab.namespaces if netns.exists(ns)]
    if daemons.frr_dir(lab.pathspace).exists():
        problems.append(f"{daemons.frr_dir(lab.pathspace)} left")
    if lab.root.exists():
        problems.append(f"{lab.root} left")
    return problems


@pytest.fixture
def cdt_bare_lab() -> Iterator[Lab]:
    """Namespace names and a state directory, nothing built; torn down and checked after."""
    netns.ensure_blackhole()
    tag = secrets.token_hex(3)
    lab = Lab(
        tag=tag,
        root=Path(tempfile.mkdtemp(prefix=f"cdt-{tag}-")),
        a=f"cdt-{tag}-a",
        b=f"cdt-{tag}-b",
        c=f"cdt-{tag}-c",
        pathspace=f"cdt{tag}b",
    )
    try:
        yield lab
    finally:
        problems = _teardown(lab)
        assert not problems, "teardown left things behind:\n" + "\n".join(problems)


@pytest.fixture
def cdt_lab(cdt_bare_lab: Lab) -> Lab:
    """The three-namespace lab, wired and routed, no daemons yet."""
    _build(cdt_bare_lab)
    return cdt_bare_lab


@dataclass
class Keys:
    host: daemons.SshKey
    client: daemons.SshKey
    stranger: daemons.SshKey
    authorized_keys: Path
    known_hosts: Path


@pytest.fixture
def cdt_keys(cdt_lab: Lab) -> Keys:
    d = cdt_lab.node_dir("keys")
    host = daemons.gen_ssh_host_key(d / "host_ed25519")
    client = daemons.gen_client_key(d / "client_ed25519")
    stranger = daemons.gen_client_key(d / "stranger_ed25519")
    ak = d / "authorized_keys"
    ak.write_text(client.public_line + "\n", encoding="utf-8")
    kh = d / "known_hosts"
    kh.write_text(host.known_hosts_line(cdt_lab.B_MGMT) + "\n", encoding="utf-8")
    return Keys(host, client, stranger, ak, kh)


def ssh_argv(key: Path, known_hosts: Path, target: str, *extra: str) -> list[str]:
    return [
        "ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=30",
        "-F", "/dev/null", *extra, f"root@{target}",
    ]  # fmt: skip


class PtySession:
    """A child process on a pseudo-terminal, with expect-style reads (for `ssh -tt`)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        self.buffer = ""

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        """Read until `pattern` matches; return everything before the match and consume it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buffer)
            if m:
                before = self.buffer[: m.start()]
                self.buffer = self.buffer[m.end() :]
                return before
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} in pty output: {self.buffer[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    pytest.fail(f"pty closed before {pattern!r}: {self.buffer[-500:]!r}")
                self.buffer += chunk.decode("utf-8", "replace")

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

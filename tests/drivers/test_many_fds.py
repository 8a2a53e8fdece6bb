"""Descriptors numbered above 1,024 (a process holding ~500 warm sessions has them): the SSH
shell's and the CLI session's read loops wait on them (select() raised ValueError there), and a
pool raises the open-file limit or refuses, with the figures, a fleet it cannot hold.

No device: a real paramiko SSH server in this process, over a socketpair, runs /bin/sh."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import paramiko
import pytest
from paramiko.common import (
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from agent.drivers.base import Target, Timeouts
from agent.drivers.ssh import Shell
from agent.errors import ConnectError
from agent.inventory.models import Device, DeviceRole, Management, SshSettings
from agent.platforms.cisco_ios.session import _PinnedIosSession
from tests.drivers.conftest import HIGH_FD
from tests.drivers.keys import new_ed25519, write_private

ROOT = Path(__file__).resolve().parents[2]


class _ShellServer(paramiko.ServerInterface):
    """Any user, no credential (the channel is what is under test); `exec` and `shell` run
    /bin/sh with pipes, copying bytes both ways and the exit status back (`spawn=False`: they
    are accepted and nothing runs)."""

    def __init__(self, *, spawn: bool = True) -> None:
        self.spawn = spawn

    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.spawn:
            _spawn(channel, ["/bin/sh", "-c", command.decode()])
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        if self.spawn:
            _spawn(channel, ["/bin/sh"])
        return True


def _spawn(chan: paramiko.Channel, argv: list[str]) -> None:
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            while data := chan.recv(65536):
                stdin.write(data)
                stdin.flush()
        except OSError:
            pass
        finally:
            stdin.close()

    def copy(src: IO[bytes], send: object) -> None:
        while data := os.read(src.fileno(), 65536):
            send(data)  # type: ignore[operator]

    out = threading.Thread(target=copy, args=(proc.stdout, chan.sendall), daemon=True)
    err = threading.Thread(target=copy, args=(proc.stderr, chan.sendall_stderr), daemon=True)

    def reap() -> None:
        out.join()
        err.join()
        chan.send_exit_status(proc.wait())
        chan.close()

    for t in (threading.Thread(target=feed, daemon=True), out, err):
        t.start()
    threading.Thread(target=reap, daemon=True).start()


@pytest.fixture
def transport(many_fds: int, tmp_path: Path) -> Iterator[paramiko.Transport]:
    """A client transport, authenticated, to the in-process server (both ends numbered high)."""
    yield from _connected(tmp_path, _ShellServer())


@pytest.fixture
def idle_transport(many_fds: int, tmp_path: Path) -> Iterator[paramiko.Transport]:
    """The same, to a server that runs nothing (it needs no descriptor for a channel)."""
    yield from _connected(tmp_path, _ShellServer(spawn=False))


def _connected(tmp_path: Path, interface: _ShellServer) -> Iterator[paramiko.Transport]:
    client_sock, server_sock = socket.socketpair()
    assert min(client_sock.fileno(), server_sock.fileno()) > 1024
    server = paramiko.Transport(server_sock)
    server.add_server_key(paramiko.Ed25519Key.from_private_key_file(str(_host_key(tmp_path))))
    server.start_server(threading.Event(), server=interface)  # an event: returns at once
    client = paramiko.Transport(client_sock)
    try:
        client.start_client(timeout=10)
        client.auth_none("tester")
        yield client
    finally:
        client.close()
        server.close()


def _host_key(tmp: Path) -> Path:
    return write_private(tmp / "host_key", new_ed25519())


def _target(tmp: Path) -> Target:
    device = Device(
        name="sw1",
        role=DeviceRole.ACCESS_SWITCH,
        platform="cisco_ios",
        management=Management(address=ipaddress.IPv4Address("198.19.0.5"), interface="mgmt0"),
        ssh=SshSettings(username="tester", key="file:k"),
    )
    return Target(device=device, site="s", base_dir=tmp, known_hosts=None)


def test_shell_reads_through_a_descriptor_above_1024(
    transport: paramiko.Transport, tmp_path: Path
) -> None:
    """A command whose output comes late (the loop has to wait on the channel) returns its exit
    code and both streams when the channel's descriptor is above 1,024."""
    shell = Shell(transport, _target(tmp_path), Timeouts(command=10))
    try:
        run = shell.run("sh -c 'sleep 0.3; echo out; echo err >&2; exit 3'", operation="test")
        assert (run.rc, run.out.strip(), run.err.strip()) == (3, "out", "err")
        assert shell.chan.fileno() > HIGH_FD
    finally:
        shell.close()


def test_cli_session_reads_through_a_descriptor_above_1024(
    transport: paramiko.Transport, tmp_path: Path
) -> None:
    """The cisco_ios session's read loop (netmiko's contract) finds a pattern that arrives late
    on a channel numbered above 1,024."""
    session = _PinnedIosSession(_target(tmp_path), Timeouts(command=10))
    chan = transport.open_session(timeout=10)
    chan.get_pty()
    chan.invoke_shell()
    session.remote_conn = chan
    from netmiko.channel import SSHChannel  # noqa: PLC0415 - as establish_connection does

    session.channel = SSHChannel(conn=chan, encoding=session.encoding)
    try:
        session.write_channel("sleep 0.3; echo DONE-$((40 + 2))\n")
        assert session.read_until_pattern(pattern="DONE-42", read_timeout=10).endswith("DONE-42")
        assert chan.fileno() > HIGH_FD
    finally:
        chan.close()


def test_out_of_descriptors_is_a_connect_error_naming_the_limit(
    idle_transport: paramiko.Transport, tmp_path: Path
) -> None:
    """When the process has no descriptor left for the channel's pipe, opening the shell is a
    ConnectError naming the device and the open-file limit (it was a bare OSError traceback)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(n) for n in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))  # nothing above what is open
    holes: list[int] = []
    try:
        with contextlib.suppress(OSError):  # and nothing free below it either
            while True:
                holes.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(ConnectError) as caught:
            Shell(idle_transport, _target(tmp_path), Timeouts(command=10))
    finally:
        for fd in holes:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert caught.value.message.startswith("sw1: connect: this process has no file descriptor")
    assert f"open-file limit {top + 1:,}" in caught.value.message
    assert caught.value.hint is not None and "ulimit -Hn" in caught.value.hint


# -- the open-file limit -------------------------------------------------------------------

_CHILD = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from agent.drivers import Pool
from agent.errors import CordonError
from agent.inventory.models import Inventory
from scripts.synth import synthetic

inv = Inventory.model_validate(synthetic(50, devices_per_site=10))
print(len(inv.devices()))
try:
    pool = Pool(inv, keepalive=None, max_size=1000)
except CordonError as exc:
    print("refused", exc.exit_code, exc.message, exc.hint, sep="\\n")
    sys.exit(0)
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(int(sys.argv[3]))]
print("held", len(held), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def _child(soft: int, hard: int, hold: int) -> subprocess.CompletedProcess[str]:
    """The child above: it sets its RLIMIT_NOFILE to (soft, hard) first, then makes the pool
    and holds `hold` more open files."""
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(soft), str(hard), str(hold)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_pool_raises_the_soft_limit_to_hold_a_500_device_fleet() -> None:
    """Started with a soft limit of 1,024 and a higher hard limit, a process making the pool of a
    ~500-device fleet can then hold 2,000 open files (the soft limit was raised to the hard)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the open-file hard limit ({hard}) is below 4,096")
    top = 4096 if hard == resource.RLIM_INFINITY else hard
    done = _child(1024, top, 2000)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1:] == ["held", "2000", str(top)]


def test_pool_refuses_a_fleet_past_the_hard_limit_with_the_figures() -> None:
    """With a hard limit of 1,024, the pool of a ~500-device fleet (1,000 warm sessions) is
    refused before any session, saying how many open files it needs and how many it may have."""
    done = _child(1024, 1024, 0)
    assert done.returncode == 0, done.stderr[-2000:]
    n, refused, code, message, hint = done.stdout.splitlines()
    assert (refused, code) == ("refused", "2"), done.stdout
    assert f"{int(n):,} devices with up to 1,000 warm sessions need about" in message
    assert "open files; this process may open 1,024" in message
    assert "nothing was sent" in message and "ulimit -Hn" in hint

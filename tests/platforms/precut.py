"""Connections opened before a cut, for the stateful firewalls' twin tests (Stormshield, Junos
SRX): a TCP connection held open across a change, and whether it still carries data (application
lines both ways, or bytes acknowledged by a twin service that reads and discards them)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Iterator

from agent.lab import netns
from tests.conftest import Twin


@contextlib.contextmanager
def held(twin: Twin, src: str, dst: str, address: str, port: int) -> Iterator[Held]:
    """A TCP connection from host `src` to `address:port` on host `dst` (inventory paths),
    open for the block: (client end, server end)."""
    with netns.inside(twin.bp.host_ns[dst]):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with netns.inside(twin.bp.host_ns[src]):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(1)
        client.settimeout(5.0)
        client.connect((address, port))
        listener.settimeout(5.0)
        served, _ = listener.accept()
        try:
            yield Held(client, served)
        finally:
            served.close()
    finally:
        client.close()
        listener.close()


@dataclasses.dataclass
class Held:
    client: socket.socket
    served: socket.socket

    def carries(self, what: bytes) -> bool:
        """Does a line sent by the client reach the server, and the server's answer the client
        (within 3 s each: a dropped segment has no other sign)?"""
        try:
            for a, b in ((self.client, self.served), (self.served, self.client)):
                a.sendall(what + b"\n")
                b.settimeout(3.0)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = b.recv(4096)
                    if not chunk:
                        return False
                    got += chunk
                if got != what + b"\n":
                    return False
        except OSError:
            return False
        return True


def banner_connection(twin: Twin, src: str, address: str, port: int) -> socket.socket:
    """A connection from host `src` to the twin's service at `address:port`, its banner read."""
    with netns.inside(twin.bp.host_ns[src]):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5.0)
    s.connect((address, port))
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(4096)
        assert chunk, "the service closed before its banner"
        got += chunk
    return s


def delivered(s: socket.socket, what: bytes) -> bool:
    """Are bytes sent on `s` acknowledged by the other end within 3 s (the service reads and
    discards them; its kernel's ACK coming back is the proof they crossed both ways)?"""
    s.sendall(what)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0] == 0:
            return True
        time.sleep(0.05)
    return False

"""Owns the juniper_junos twin's `netconf` SSH subsystem: sshd runs it for each session that asks
for the subsystem (RFC 6242) and it relays the session's bytes, both ways and unchanged, to the
device's configuration daemon (`twin_device`) on the namespace's loopback; the daemon speaks
NETCONF. Run by path (`python -I -S twin_netconf.py HOST PORT`): standard library only, so a
session costs no package import."""

from __future__ import annotations

import os
import select
import socket
import sys


def relay(host: str, port: int) -> int:
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    open_in = True
    while True:
        watched = [sock] + ([stdin] if open_in else [])
        ready, _, _ = select.select(watched, [], [])
        if stdin in ready:
            data = os.read(stdin, 65536)
            if data:
                sock.sendall(data)
            else:  # the client closed its side: let the daemon finish, then stop
                open_in = False
                sock.shutdown(socket.SHUT_WR)
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return 0
            view = memoryview(data)
            while view:
                view = view[os.write(stdout, view) :]


if __name__ == "__main__":
    sys.exit(relay(sys.argv[1], int(sys.argv[2])))

"""Owns the aruba_aoscx CLI session: one SSH login (host key pinned by the shared transport), the
Manager prompt (`switch#`) awaited before anything is typed, each command's answer read up to the
next prompt, then logout. Used for the auto checkpoint only (REST carries everything else).
Imports the shared SSH transport and the error tree; no device library beyond paramiko."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from agent.drivers.base import Target, Timeouts
from agent.drivers.ssh import abort, open_transport, translated, wait_readable
from agent.errors import ConnectError, DeviceError, DeviceTimeout

_PROMPT = re.compile(r"(?m)^([A-Za-z0-9_.-]{1,32})# ?$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read_to_prompt(chan: object, target: Target, timeout: float, operation: str) -> str:
    import paramiko  # noqa: PLC0415 - loaded with the driver

    assert isinstance(chan, paramiko.Channel)
    buf = ""
    deadline = time.monotonic() + timeout
    while True:
        text = _ANSI.sub("", buf.replace("\r", ""))
        lines = text.split("\n")
        if lines and _PROMPT.fullmatch(lines[-1]):
            return "\n".join(lines[:-1])
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceTimeout(target.name, operation, f"no CLI prompt within {timeout:g} s")
        if chan.recv_ready():
            buf += chan.recv(65536).decode("utf-8", "replace")
            continue
        if chan.closed or chan.eof_received:
            raise ConnectError(target.name, operation, "the switch closed the CLI session")
        wait_readable(chan, min(left, 0.5))


def run(target: Target, timeouts: Timeouts, commands: Sequence[str], operation: str) -> list[str]:
    """Each command's answer (its echo removed), in one CLI session."""
    for c in commands:
        if any(not ch.isprintable() for ch in c):
            raise DeviceError(target.name, operation, f"command {c!r} refused: control characters")
    transport = open_transport(target, timeouts)
    try:
        with translated(target, operation, timeouts.command):
            chan = transport.open_session(timeout=timeouts.connect)
            chan.get_pty(term="vt100", width=511, height=1000)
            chan.invoke_shell()
            _read_to_prompt(chan, target, timeouts.connect, operation)
            out = []
            for c in commands:
                chan.sendall((c + "\n").encode())
                said = _read_to_prompt(chan, target, timeouts.command, operation)
                lines = said.split("\n")
                if lines and lines[0].strip().endswith(c):
                    lines = lines[1:]
                out.append("\n".join(lines).strip())
            chan.sendall(b"exit\n")
            return out
    except DeviceError:
        abort(transport)
        raise
    finally:
        transport.close()

"""Owns the aruba_aoscx CLI session: one SSH login (host key pinned by the shared transport), the
Manager prompt (`switch#`) awaited before anything is typed, each command's answer read up to the
next prompt, then logout (`Session`: kept open from a checkpoint's arm to its confirm). Used for
the auto checkpoint only (REST carries everything else).
Imports the shared SSH transport and the error tree; no device library beyond paramiko."""

from __future__ import annotations

import contextlib
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


class Session:
    """One CLI login kept open between commands: the arm of the auto checkpoint and its
    confirm, a step apart, share it (one SSH handshake and login, not two). Each command's
    answer is read up to the next prompt. Once a command failed, the session is dropped, never
    used again (what the switch made of it is not known)."""

    def __init__(self, target: Target, timeouts: Timeouts, operation: str) -> None:
        self.target = target
        self.timeouts = timeouts
        self.transport = open_transport(target, timeouts)
        try:
            with translated(target, operation, timeouts.command):
                self.chan = self.transport.open_session(timeout=timeouts.connect)
                self.chan.get_pty(term="vt100", width=511, height=1000)
                self.chan.invoke_shell()
                _read_to_prompt(self.chan, target, timeouts.connect, operation)
        except BaseException:
            abort(self.transport)
            raise

    @property
    def usable(self) -> bool:
        return bool(
            self.transport.is_active() and not self.chan.closed and not self.chan.eof_received
        )

    def run(self, commands: Sequence[str], operation: str) -> list[str]:
        """Each command's answer (its echo removed); a failure drops the session."""
        for c in commands:
            if any(not ch.isprintable() for ch in c):
                raise DeviceError(
                    self.target.name, operation, f"command {c!r} refused: control characters"
                )
        try:
            with translated(self.target, operation, self.timeouts.command):
                out = []
                for c in commands:
                    self.chan.sendall((c + "\n").encode())
                    said = _read_to_prompt(self.chan, self.target, self.timeouts.command, operation)
                    lines = said.split("\n")
                    if lines and lines[0].strip().endswith(c):
                        lines = lines[1:]
                    out.append("\n".join(lines).strip())
                return out
        except BaseException:
            abort(self.transport)
            raise

    def close(self) -> None:
        """Log out and close; never raises."""
        with contextlib.suppress(Exception):
            if self.usable:
                self.chan.sendall(b"exit\n")
        with contextlib.suppress(Exception):
            self.transport.close()

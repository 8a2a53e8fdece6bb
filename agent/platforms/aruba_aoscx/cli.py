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
from typing import TYPE_CHECKING

from agent.drivers.base import Target, Timeouts
from agent.drivers.ssh import abort, open_transport, translated, wait_readable
from agent.errors import ConnectError, DeviceError, DeviceTimeout

if TYPE_CHECKING:
    import paramiko

_PROMPT = re.compile(r"(?m)^([A-Za-z0-9_.-]{1,32})# ?$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What the switch prints by itself into the session that armed `checkpoint auto`, after its
# prompt, then a new prompt (HPE's CLI guide, `checkpoint auto`, GUID-3AF7EBD5-218F-46E2-90D0-
# 021B8EDBF1ED: `switch# WARNING  Please "checkpoint auto confirm" within 2 minutes`).
_ALIVE_S = 2.0  # a kept login's prompt after an empty line; missing it costs a new login only
_AFTER_PROMPT = re.compile(r"^[A-Za-z0-9_.-]{1,32}# ")
_NOTICE = re.compile(r"(?:[A-Za-z0-9_.-]{1,32}# ?)?WARNING\b.*")


def _clean(buf: str) -> list[str]:
    return _ANSI.sub("", buf.replace("\r", "")).split("\n")


def _read_to_prompt(chan: paramiko.Channel, target: Target, timeout: float, operation: str) -> str:
    """What the switch says up to its next prompt (the login's banner, an empty line's answer)."""
    buf = ""
    deadline = time.monotonic() + timeout
    while True:
        lines = _clean(buf)
        if lines and _PROMPT.fullmatch(lines[-1]):
            return "\n".join(lines[:-1])
        buf += _receive(chan, target, deadline, timeout, operation)


def _read_answer(
    chan: paramiko.Channel, target: Target, command: str, timeout: float, operation: str
) -> str:
    """The answer to `command`, just sent: what follows its echo up to a prompt, without the
    switch's own notices (`_NOTICE`). What came before the echo is not its answer (a notice and
    the prompt after it, printed since the last command); a notice between the echo and the
    answer is followed by a prompt, so the answer is read on to the next prompt until there is
    one (every command Cordon types here answers something)."""
    buf = ""
    deadline = time.monotonic() + timeout
    while True:
        lines = _clean(buf)
        echo = next(
            (
                i
                for i, x in enumerate(lines[:-1])
                if x.rstrip().endswith(command) and not _NOTICE.fullmatch(x)
            ),
            None,
        )
        if echo is not None and _PROMPT.fullmatch(lines[-1]):
            body = [  # the answer may follow a notice's prompt on its line
                _AFTER_PROMPT.sub("", x)
                for x in lines[echo + 1 : -1]
                if not _NOTICE.fullmatch(x) and not _PROMPT.fullmatch(x)
            ]
            if any(x.strip() for x in body):
                return "\n".join(body).strip()
        buf += _receive(chan, target, deadline, timeout, operation)


def _receive(
    chan: paramiko.Channel, target: Target, deadline: float, timeout: float, operation: str
) -> str:
    """What arrives next, waiting up to `deadline`."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceTimeout(target.name, operation, f"no CLI prompt within {timeout:g} s")
        if chan.recv_ready():
            return bytes(chan.recv(65536)).decode("utf-8", "replace")
        if chan.closed or chan.eof_received:
            raise ConnectError(target.name, operation, "the switch closed the CLI session")
        wait_readable(chan, min(left, 0.5))


def _drain(chan: paramiko.Channel) -> None:
    """Discard what the switch printed since the last answer was read (its notices)."""
    while chan.recv_ready():
        chan.recv(65536)


class Session:
    """One CLI login kept open between commands: the arm of the auto checkpoint and its
    confirm, a step apart, share it (one SSH handshake and login, not two). Each command's
    answer is read from its echo up to the next prompt. Once a command failed, the session is
    dropped, never used again (what the switch made of it is not known)."""

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

    def alive(self) -> bool:
        """Whether the switch still answers this login: an empty line, its prompt read back
        within `_ALIVE_S` (a live switch answers at once). When it does not, the session is
        dropped. Nothing else is sent: a kept login is only reused once this said True."""
        if not self.usable:
            return False
        try:
            with translated(self.target, "probe", _ALIVE_S):
                _drain(self.chan)
                self.chan.sendall(b"\n")
                _read_to_prompt(
                    self.chan, self.target, min(_ALIVE_S, self.timeouts.command), "probe"
                )
        except (DeviceError, OSError, EOFError):  # no prompt, a closed channel: dropped
            abort(self.transport)
            return False
        return True

    def run(self, commands: Sequence[str], operation: str) -> list[str]:
        """Each command's answer: what the switch printed before it was sent is discarded, and
        its answer is read from its echo on (`_read_answer`); a failure drops the session."""
        for c in commands:
            if any(not ch.isprintable() for ch in c):
                raise DeviceError(
                    self.target.name, operation, f"command {c!r} refused: control characters"
                )
        try:
            with translated(self.target, operation, self.timeouts.command):
                out = []
                for c in commands:
                    _drain(self.chan)
                    self.chan.sendall((c + "\n").encode())
                    out.append(
                        _read_answer(self.chan, self.target, c, self.timeouts.command, operation)
                    )
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

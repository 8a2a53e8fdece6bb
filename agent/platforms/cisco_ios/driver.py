"""Owns the cisco_ios driver: netmiko on a pinned paramiko transport, prompt first, error_pattern.
Imports the shared transports (`agent.drivers`), this folder's parser, audit and errors; must not
import pysnmp, the engine or the CLI; netmiko and paramiko exceptions stop here."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import paramiko
from netmiko.channel import SSHChannel
from netmiko.cisco.cisco_ios import CiscoIosSSH
from netmiko.exceptions import (
    ConfigInvalidException,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)

from agent.audit import store_evidence
from agent.audit.redact import scrub
from agent.drivers import trail
from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    Target,
    Timeouts,
    Via,
    mismatches,
)
from agent.drivers.ssh import abort, open_transport, translated, wait_readable
from agent.errors import (
    AuthError,
    CommandRejected,
    ConnectError,
    CordonError,
    DeviceError,
    DeviceTimeout,
)
from agent.platforms.cisco_ios import parse

T = TypeVar("T")

_PROMPT = re.compile(r"^(?P<base>[\w.:/-]+)(?:\([\w.-]+\))?(?P<term>[>#])\s*$", re.M)
_ANY_PROMPT = r"^[\w.:/-]+(?:\([\w.-]+\))?[>#]\s*$"  # no groups: netmiko splits on it
_REJECTED = re.compile(r"at command: (?P<cmd>.*), matched error: (?P<err>.*)$", re.S)


class _PinnedIosSession(CiscoIosSSH):
    """netmiko's cisco_ios session on a channel of our own pinned transport.

    `establish_connection` opens the PTY shell on the transport we authenticated (netmiko never
    sees a host key policy); session preparation waits for the first prompt before typing, which
    keeps FRR's vtysh (and slow IOS logins) in step, then turns paging off.
    """

    def __init__(self, target: Target, timeouts: Timeouts) -> None:
        self._target = target
        self._timeouts = timeouts
        self._transport: paramiko.Transport | None = None
        super().__init__(
            host=target.address,
            port=target.device.ssh.port,
            username=target.device.ssh.username or "",
            device_type="cisco_ios",
            conn_timeout=timeouts.connect,
            auth_timeout=timeouts.connect,
            banner_timeout=timeouts.connect,
            blocking_timeout=timeouts.command,
            timeout=int(max(timeouts.command, 1)),
            fast_cli=True,
            global_delay_factor=1.0,
            auto_connect=False,
        )

    def establish_connection(self, width: int = 511, height: int = 1000) -> None:
        self._transport = open_transport(self._target, self._timeouts)
        with translated(self._target, "connect", self._timeouts.connect):
            chan = self._transport.open_session(timeout=self._timeouts.connect)
            chan.get_pty(term="vt100", width=width, height=height)
            chan.invoke_shell()
        chan.settimeout(self.blocking_timeout)
        self.remote_conn = chan
        self.channel = SSHChannel(conn=chan, encoding=self.encoding)

    def _try_session_preparation(self, force_data: bool = True) -> None:
        try:
            self.session_preparation()
        except BaseException:
            self.disconnect()
            raise

    def session_preparation(self) -> None:
        banner = self.read_until_pattern(
            pattern=_ANY_PROMPT, re_flags=re.M, read_timeout=self._timeouts.connect
        )
        prompt = _PROMPT.search(banner.splitlines()[-1] if banner.strip() else "")
        if prompt is None:
            raise ConnectError(self._target.name, "connect", "no CLI prompt after login")
        if prompt.group("term") != "#":
            raise AuthError(
                self._target.name,
                "connect",
                "the CLI opened in user EXEC mode ('>'); Cordon needs a privileged login",
            )
        self.base_prompt = prompt.group("base")[:16]
        self.command("terminal length 0")

    def read_until_pattern(
        self,
        pattern: str = "",
        read_timeout: float = 10.0,
        re_flags: int = 0,
        max_loops: int | None = None,
    ) -> str:
        """netmiko's read loop (same contract: up to and including the match, the rest kept for
        the next read), but waiting on the channel instead of sleeping 10 ms per turn."""
        if self.read_timeout_override:
            read_timeout = self.read_timeout_override
        rx = re.compile(pattern, re_flags)
        output = ""
        deadline = time.monotonic() + read_timeout
        while True:
            output += self.read_channel()
            m = rx.search(output)
            if m:
                if output[m.end() :]:
                    self._read_buffer += output[m.end() :]
                return output[: m.end()]
            left = deadline - time.monotonic()
            if read_timeout and left <= 0:
                raise ReadTimeout(f"pattern {pattern!r} not seen within {read_timeout:g} s")
            chan = self.remote_conn
            if not isinstance(chan, paramiko.Channel):
                raise EOFError
            if (chan.closed or chan.eof_received) and not chan.recv_ready():
                raise EOFError
            wait_readable(chan, min(left, 0.5) if read_timeout else 0.5)

    def command(self, line: str, *, read_timeout: float | None = None) -> str:
        """Send one exec-mode line; return its output (echo and prompt removed)."""
        limit = self._timeouts.command if read_timeout is None else read_timeout
        self.write_channel(self.normalize_cmd(line))
        self.read_until_pattern(pattern=re.escape(line.strip()), read_timeout=limit)
        out = self.read_until_pattern(
            pattern=rf"^{re.escape(self.base_prompt)}[^\n]*#\s*$",
            re_flags=re.M,
            read_timeout=limit,
        )
        lines = out.replace("\r", "").split("\n")
        return "\n".join(lines[:-1]).strip("\n")

    def cleanup(self, command: str = "exit") -> None:
        """Log out: the session is always left in exec mode, so no mode probing (netmiko's
        probe would wait out a read timeout on a dead link)."""
        with contextlib.suppress(Exception):
            self.write_channel(command + self.RETURN)

    def paramiko_cleanup(self) -> None:
        try:
            super().paramiko_cleanup()
        finally:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    @property
    def transport(self) -> paramiko.Transport | None:
        return self._transport


class IosDriver:
    """A cisco_ios device driven by netmiko (IOS, IOS-XE, and FRR's vtysh in the twin)."""

    via: Via = "ssh"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._session: _PinnedIosSession | None = None

    # -- session ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        session = _PinnedIosSession(self.target, self.timeouts)
        with self._netmiko("connect", self.timeouts.connect):
            session._open()
        self._session = session

    def is_open(self) -> bool:
        s = self._session
        if s is None or s.transport is None or not s.transport.is_active():
            return False
        chan = s.remote_conn
        return isinstance(chan, paramiko.Channel) and not chan.closed

    def close(self) -> None:
        """Log out and close (never raises)."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.disconnect()

    def _abort(self) -> None:
        """Drop the session without a word to the device, discarding anything unsent."""
        session, self._session = self._session, None
        if session is not None:
            abort(session.transport)
            with contextlib.suppress(Exception):
                session.paramiko_cleanup()

    def ping(self) -> None:
        self._run("ping", lambda s: s.command(""))

    # -- reads -----------------------------------------------------------------------------------

    def facts(self) -> Facts:
        def read(s: _PinnedIosSession) -> Facts:
            interfaces = self._parse(
                "facts", parse.parse_show_interface, s.command("show interface")
            )
            config = s.command("show running-config")
            return Facts(
                device=self.target.name,
                platform=self.target.device.platform,
                via=self.via,
                interfaces=interfaces,
                config=config,
            )

        return self._run("facts", read)

    def backup(self) -> Backup:
        text = self._run("backup", lambda s: s.command("show running-config"))
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
        )

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            def once(s: _PinnedIosSession) -> tuple[Facts, list[str]]:
                if expect.needs_oper:
                    ifs = self._parse(
                        "verify", parse.parse_show_interface, s.command("show interface")
                    )
                else:
                    text = s.command("show interface brief")
                    ifs = self._parse("verify", parse.parse_show_interface_brief, text)
                config = s.command("show running-config") if expect.needs_config else ""
                facts = Facts(
                    device=self.target.name,
                    platform=self.target.device.platform,
                    via=self.via,
                    interfaces=ifs,
                    config=config,
                )
                return facts, mismatches(facts, expect)

            return self._run("verify", once)

        return trail.verify_loop(
            self.target,
            via=self.via,
            action=action,
            read=read,
            timeout=self.timeouts.settle if timeout is None else timeout,
        )

    # -- change ----------------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> ApplyResult:
        commands = [c.strip() for c in changes.commands if c.strip()]
        bad = [c for c in commands if any(not ch.isprintable() for ch in c)]
        if bad:
            raise DeviceError(
                self.target.name,
                "apply",
                f"command {bad[0]!r} refused before sending: control characters (a newline "
                "would smuggle in another command)",
            )
        t0 = time.monotonic()
        if not commands:
            return ApplyResult(self.target.name, changes.action, (), "", 0.0)
        try:
            output = self._run(
                "apply",
                lambda s: s.send_config_set(
                    commands,
                    error_pattern=parse.CLI_ERROR_PATTERN,
                    read_timeout=self.timeouts.command,
                    cmd_verify=True,
                ),
            )
        except CommandRejected as exc:
            before = commands.index(exc.command) if exc.command in commands else 0
            if before:
                exc.hint = (
                    f"the {before} command(s) before it were applied and stay applied: "
                    "read back, then undo or complete"
                )
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            self._leave_config_mode()
            raise
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        clean = scrub(str(output)).replace("\r", "")
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=commands, output=clean, started=t0
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _leave_config_mode(self) -> None:
        """After a rejected command: back to exec mode, or drop the session if that fails."""
        s = self._session
        if s is None:
            return
        try:
            with self._netmiko("apply", self.timeouts.command):
                s.exit_config_mode()
        except DeviceError:
            self._abort()

    def _run(self, operation: str, fn: Callable[[_PinnedIosSession], T]) -> T:
        self.connect()
        session = self._session
        assert session is not None
        try:
            with self._netmiko(operation, self.timeouts.command):
                return fn(session)
        except DeviceError as exc:
            if not isinstance(exc, CommandRejected):
                self._abort()  # the session's state is unknown: never reuse it
            raise

    def _parse(self, operation: str, parser: Callable[[str], T], text: str) -> T:
        try:
            return parser(text)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, operation, f"unexpected device output: {exc}"
            ) from None

    @contextmanager
    def _netmiko(self, operation: str, timeout: float) -> Iterator[None]:
        name = self.target.name
        try:
            with translated(self.target, operation, timeout):
                yield
        except CordonError:
            raise
        except ConfigInvalidException as exc:
            m = _REJECTED.search(str(exc))
            cmd = m.group("cmd") if m else "?"
            err = m.group("err") if m else str(exc)
            raise CommandRejected(name, operation, scrub(cmd), scrub(err)) from None
        except ReadTimeout:
            raise DeviceTimeout(
                name,
                operation,
                f"no prompt from {self.target.address} within {timeout:g} s",
                hint="check the management path to the device",
            ) from None
        except NetmikoAuthenticationException:
            raise AuthError(name, operation, "authentication refused") from None
        except NetmikoTimeoutException:
            raise DeviceTimeout(name, operation, f"no answer within {timeout:g} s") from None
        except (ReadException, ValueError) as exc:
            raise DeviceError(
                name, operation, f"CLI out of step: {scrub(str(exc))[:200]}"
            ) from None

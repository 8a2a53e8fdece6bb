"""Owns the cisco_ios driver: netmiko on a pinned paramiko transport, prompt first, error_pattern.
Imports the shared transports (`agent.drivers`), this folder's parser and session, audit and
errors; must not import pysnmp, the engine or the CLI; netmiko and paramiko exceptions stop here.
netmiko loads with the session (`agent.platforms.cisco_ios.session`), once a device's transport
is open: a run's SSH handshakes overlap its import (#18)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import paramiko

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
from agent.drivers.ssh import abort, open_transport, translated
from agent.errors import (
    AuthError,
    CommandRejected,
    CordonError,
    DeviceError,
    DeviceTimeout,
)
from agent.platforms.cisco_ios import parse

if TYPE_CHECKING:
    from agent.platforms.cisco_ios.session import _PinnedIosSession

__all__ = ["IosDriver"]

T = TypeVar("T")

_REJECTED = re.compile(r"at command: (?P<cmd>.*), matched error: (?P<err>.*)$", re.S)


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
        # the pinned, authenticated transport first, then netmiko (its import, at a run's first
        # session, overlaps the other devices' handshakes, #18)
        with translated(self.target, "connect", self.timeouts.connect):
            transport = open_transport(self.target, self.timeouts)
        try:
            from agent.platforms.cisco_ios.session import _PinnedIosSession  # noqa: PLC0415

            session = _PinnedIosSession(self.target, self.timeouts, transport)
            with self._netmiko("connect", self.timeouts.connect):
                session._open()
        except BaseException:
            transport.close()
            raise
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
            try:
                trail.change_failed(
                    self.target,
                    via=self.via,
                    changes=changes,
                    commands=commands,
                    exc=exc,
                    started=t0,
                )
            finally:  # even when the audit refuses the record: never left in config mode
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
        from netmiko.exceptions import (  # noqa: PLC0415 - loaded with the session
            ConfigInvalidException,
            NetmikoAuthenticationException,
            NetmikoTimeoutException,
            ReadException,
            ReadTimeout,
        )

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

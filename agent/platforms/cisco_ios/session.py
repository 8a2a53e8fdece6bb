"""The cisco_ios CLI session: netmiko's cisco_ios session on a channel of our own pinned,
authenticated paramiko transport, prompt first. Loaded by `driver` once a device's transport is
open (netmiko's import, a sixth of a cold run's, then overlaps the SSH handshakes of the other
devices, #18). Imports netmiko, paramiko and the shared SSH transport (`agent.drivers.ssh`);
netmiko's exceptions reach `driver`, which translates them."""

from __future__ import annotations

import contextlib
import re
import time

import paramiko
from netmiko.channel import SSHChannel
from netmiko.cisco.cisco_ios import CiscoIosSSH
from netmiko.exceptions import ReadTimeout

from agent.drivers.base import Target, Timeouts
from agent.drivers.ssh import open_transport, translated, wait_readable
from agent.errors import AuthError, ConnectError

__all__ = ["ANY_PROMPT", "PROMPT", "_PinnedIosSession"]

PROMPT = re.compile(r"^(?P<base>[\w.:/-]+)(?:\([\w.-]+\))?(?P<term>[>#])\s*$", re.M)
ANY_PROMPT = r"^[\w.:/-]+(?:\([\w.-]+\))?[>#]\s*$"  # no groups: netmiko splits on it
# what IOS answers to a command it did not accept (exec or configuration mode)
_NOT_ACCEPTED = re.compile(
    r"^\s*%\s*(?:Invalid input|Unknown command|Incomplete command|Ambiguous command)[^\n]*$",
    re.M | re.I,
)


class _PinnedIosSession(CiscoIosSSH):
    """netmiko's cisco_ios session on a channel of our own pinned transport.

    `establish_connection` opens the PTY shell on the transport we authenticated (netmiko never
    sees a host key policy); session preparation waits for the first prompt before typing, which
    keeps FRR's vtysh (and slow IOS logins) in step, then turns paging off.
    """

    def __init__(
        self, target: Target, timeouts: Timeouts, transport: paramiko.Transport | None = None
    ) -> None:
        """`transport`: one already open to `target` by `open_transport` (pinned host key,
        authenticated), used by `establish_connection`; None: it opens its own."""
        self._target = target
        self._timeouts = timeouts
        self._opened = transport
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
        opened, self._opened = self._opened, None
        self._transport = opened or open_transport(self._target, self._timeouts)
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
            pattern=ANY_PROMPT, re_flags=re.M, read_timeout=self._timeouts.connect
        )
        prompt = PROMPT.search(banner.splitlines()[-1] if banner.strip() else "")
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

    # Configuration mode, without netmiko's probes: its `config_mode` and `exit_config_mode` each
    # send an empty line and read the prompt before and after their command (`check_config_mode`),
    # four of the ten round trips of a two-port change (#18). The session is always in exec mode
    # between two operations (the driver leaves config mode after a rejected command, or drops
    # the session), so the mode is known before; after, it is read from the prompt the command
    # itself ends with. The failures are netmiko's (a ValueError, out of step).

    def config_mode(
        self, config_command: str = "configure terminal", pattern: str = "", re_flags: int = 0
    ) -> str:
        output = self._mode_command(config_command)
        # the command itself not accepted (e.g. the session already in a configuration mode):
        # out of step, the session is dropped. Only after its echo, and only "not accepted":
        # a console message (`%Error...`, `%Failed...`) is no refusal.
        answer = output.split(config_command.strip(), 1)[-1]
        refused = _NOT_ACCEPTED.search(answer)
        if refused is not None:
            raise ValueError(f"Failed to enter configuration mode: {refused.group(0).strip()}")
        if not self._in_config(output):
            raise ValueError("Failed to enter configuration mode.")
        return output

    def exit_config_mode(self, exit_config: str = "end", pattern: str = r"#.*") -> str:
        output = self._mode_command(exit_config)
        if self._in_config(output):
            raise ValueError("Failed to exit configuration mode")
        return output

    def _mode_command(self, line: str) -> str:
        """Send `line`; its output up to and including the prompt that follows it."""
        limit = self._timeouts.command
        self.write_channel(self.normalize_cmd(line))
        output = self.read_until_pattern(pattern=re.escape(line.strip()), read_timeout=limit)
        return output + self.read_until_pattern(
            pattern=rf"^{re.escape(self.base_prompt)}[^\n]*[>#]\s*$",
            re_flags=re.M,
            read_timeout=limit,
        )

    @staticmethod
    def _in_config(output: str) -> bool:
        """Does the prompt `output` ends with show a configuration mode (`name(config...)#`)?"""
        lines = output.rstrip().splitlines()
        return bool(lines) and ")#" in lines[-1]

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

"""The cisco_ios session enters and leaves configuration mode from the prompts its own
`configure terminal` and `end` end with (no netmiko mode probes, #18): a session found in a
configuration mode is refused and dropped, never used to report an applied command as rejected;
a rejected command leaves configuration mode even when the audit refuses the failure's record.

Pure: a small IOS CLI (`_Cli`) answers on the session's channel calls; what is asserted is the
CLI's own state (its mode, the lines it applied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.drivers import trail
from agent.drivers.base import ChangeSet, Target, Timeouts
from agent.errors import AuditError, CommandRejected, DeviceError
from agent.platforms.cisco_ios import parse
from agent.platforms.cisco_ios.driver import IosDriver
from agent.platforms.cisco_ios.session import _PinnedIosSession
from tests.drivers.test_many_fds import _target

INVALID = "% Invalid input detected at '^' marker."


class _Cli:
    """The subset of an IOS CLI a change uses: exec, config and config-if modes."""

    def __init__(self, mode: str = "exec", console: tuple[str, str] = ("", "")) -> None:
        self.mode = mode
        self.applied: list[str] = []
        self.console = console  # a console message printed before / after the echo

    def prompt(self) -> str:
        return {"exec": "R1#", "config": "R1(config)#", "config-if": "R1(config-if)#"}[self.mode]

    def answer(self, line: str) -> str:
        """The echo, the command's output and the next prompt."""
        out = ""
        if line == "configure terminal":
            if self.mode == "exec":
                self.mode = "config"
                out = "Enter configuration commands, one per line.  End with CNTL/Z.\n"
            else:
                out = f"{INVALID}\n"
        elif line == "end":
            self.mode = "exec"
        elif line.startswith("interface ") and self.mode != "exec":
            self.mode = "config-if"
            self.applied.append(line)
        elif line in ("shutdown", "no shutdown") and self.mode == "config-if":
            self.applied.append(line)
        else:
            out = f"{INVALID}\n"
        before, after = self.console if line == "configure terminal" else ("", "")
        before, after = (before + "\n") if before else "", (after + "\n") if after else ""
        return f"{before}{line}\n{after}{out}{self.prompt()}"


class _Channel:
    """netmiko's channel interface (`read_channel`, `write_channel`) answered by `_Cli`."""

    def __init__(self, cli: _Cli) -> None:
        self.cli = cli
        self.pending = ""

    def write_channel(self, out_data: str) -> None:
        for line in out_data.replace("\r", "\n").split("\n"):
            if line.strip():
                self.pending += self.cli.answer(line.strip())

    def read_channel(self) -> str:
        out, self.pending = self.pending, ""
        return out


class _FakeSession(_PinnedIosSession):
    """The real session (and netmiko's read and write logic) on a channel answered by `_Cli`."""

    def __init__(self, target: Target, cli: _Cli) -> None:
        super().__init__(target, Timeouts(command=5))
        self.channel = _Channel(cli)  # type: ignore[assignment]
        self.base_prompt = "R1"


def _send(session: _PinnedIosSession, lines: list[str]) -> str:
    return str(
        session.send_config_set(
            lines, error_pattern=parse.CLI_ERROR_PATTERN, read_timeout=5, cmd_verify=True
        )
    )


def test_a_change_from_exec_mode_is_applied_and_ends_in_exec_mode(tmp_path: Path) -> None:
    cli = _Cli()
    _send(_FakeSession(_target(tmp_path), cli), ["interface gi1", "shutdown"])
    assert (cli.mode, cli.applied) == ("exec", ["interface gi1", "shutdown"])


def test_a_session_found_in_a_configuration_mode_is_refused_before_any_line(
    tmp_path: Path,
) -> None:
    """`configure terminal` refused (the session was left in `(config-if)#`): the change stops
    there (out of step: the driver drops the session), never sending a line that would then be
    reported as rejected while the device applied it."""
    cli = _Cli(mode="config-if")
    with pytest.raises(ValueError, match="Failed to enter configuration mode: % Invalid input"):
        _send(_FakeSession(_target(tmp_path), cli), ["interface gi1", "shutdown"])
    assert cli.applied == []


def _driver(tmp_path: Path, cli: _Cli, monkeypatch: pytest.MonkeyPatch) -> IosDriver:
    driver = IosDriver(_target(tmp_path), Timeouts(command=5))
    driver._session = _FakeSession(driver.target, cli)
    monkeypatch.setattr(driver, "is_open", lambda: driver._session is not None)
    return driver


def test_the_driver_drops_a_session_found_in_a_configuration_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = _Cli(mode="config-if")
    driver = _driver(tmp_path, cli, monkeypatch)
    monkeypatch.setattr(driver, "_abort", lambda: setattr(driver, "_session", None))
    with pytest.raises(DeviceError) as err:
        driver.apply(ChangeSet(("interface gi1", "shutdown")))
    assert not isinstance(err.value, CommandRejected)
    assert "CLI out of step" in str(err.value)
    assert (driver._session, cli.applied) == (None, [])


def test_a_rejected_line_leaves_configuration_mode_even_when_the_audit_refuses_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = _Cli()
    driver = _driver(tmp_path, cli, monkeypatch)

    def refused(*args: object, **kwargs: object) -> None:
        raise AuditError("the audit trail refused the record (disk full)")

    monkeypatch.setattr(trail, "change_failed", refused)
    with pytest.raises(AuditError):
        driver.apply(ChangeSet(("interface gi1", "shutdown", "no such command")))
    assert cli.mode == "exec"
    assert cli.applied == ["interface gi1", "shutdown"]


@pytest.mark.parametrize(
    "console",
    [
        ("%Error: standby sync failed", ""),
        ("", "%Failed to sync configuration to standby"),
    ],
)
def test_a_console_message_around_configure_terminal_is_no_refusal(
    tmp_path: Path, console: tuple[str, str]
) -> None:
    """A console line (`%Error...`, `%Failed...`) printed around `configure terminal` of a
    session in exec mode is no refusal of it: configuration mode entered (review of #18).
    (netmiko's `send_config_set` still matches the error pattern on all it read, this output
    included: a console line without a timestamp there fails the change, as before #18.)"""
    cli = _Cli(console=console)
    _FakeSession(_target(tmp_path), cli).config_mode()
    assert cli.mode == "config"

"""The top-level `cordon` group: serves `agent.cli.commands.COMMANDS`, each command's module
imported when that command runs, and is the only place that turns `CordonError`s (and unusable
state files) into text and exit codes.

Imports click, `agent.settings`, `agent.errors`, the command registry (names only) and the
platforms' registry (a program loads inventories only once the platforms are registered).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import NoReturn

import click

import agent.platforms.registry  # noqa: F401 - registers the platforms every inventory names
from agent import __version__, settings
from agent.cli import commands
from agent.errors import CordonError, DaemonError

EXIT_CODES_HELP = """\b
Exit codes:
  0 success            2 invalid input (nothing touched)
  3 plan refused       4 run refused/failed     5 site locked by another run
  6 device error       7 audit error            8 audit chain broken
  9 twin (lab) error  10 twin safety refusal   11 daemon error
 12 daemon not running (start it, or --local)  13 access refused (role)
 14 approval refused   15 run rolled back       16 run partial
 17 run re-isolated    18 approval expired      19 rollback failed
130 interrupted
"""


class _Commands(click.Group):
    """The commands of `agent.cli.commands.COMMANDS`, each imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(commands.COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return commands.load(cmd_name)


@click.group(cls=_Commands, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cordon")
def cli() -> None:
    """Cordon: contain, segment and reconnect a hospital group's networks, provably."""


def fail(err: CordonError) -> NoReturn:
    click.secho(f"error: {err.message}", fg="red", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    sys.exit(err.exit_code)


def state_error(exc: sqlite3.Error) -> DaemonError:
    """A journal or job store that cannot be used, said as such (never a traceback)."""
    return DaemonError(
        f"the state directory's journal cannot be used: {exc}",
        hint="check that the state directory (--state-dir) and its files are writable by you, "
        "that the disk is not full, and that no other process holds the journal",
    )


def main() -> None:
    try:
        settings.current()  # every CORDON_* variable validated before any command runs
        cli.main(standalone_mode=False)
    except CordonError as err:
        fail(err)
    except sqlite3.Error as exc:  # a read-only, locked or corrupt journal or job store
        fail(state_error(exc))
    except OSError as exc:  # a state directory, lock or socket this user may not use
        where = f" {exc.filename}" if exc.filename else ""
        fail(
            DaemonError(
                f"cannot use{where}: {exc.strerror or type(exc).__name__}",
                hint="check --state-dir and its files (owner, mode, free space); "
                "nothing was changed",
            )
        )
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)

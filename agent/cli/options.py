"""The options every `cordon` command shares: output (--json), where the daemon is (--socket,
--state-dir, --token), --local with its inventory and roles; --site, --param and --inventory.

Imports click, `agent.settings` and `agent.daemon` (the socket's name); `agent.daemon.main` only to
read the socket a running daemon wrote. Nothing here talks to the daemon or renders.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from agent import settings
from agent.daemon import SOCKET_NAME

__all__ = ["JSON", "Opts", "common", "inventory_option", "pairs", "params_option", "sites_option"]

JSON = dict[str, Any]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Opts:
    json: bool
    local: bool
    socket: Path | None
    token: str | None
    state_dir: Path
    inventory: Path | None
    roles: Path | None

    @property
    def color(self) -> bool:
        """Colour only for a person: never with --json, never into a pipe or a file."""
        return not self.json and sys.stdout.isatty()

    def socket_path(self) -> Path:
        """--socket, else the one the state directory's daemon wrote, else <state>/cordon.sock."""
        if self.socket is not None:
            return self.socket
        from agent.daemon.lock import read_state  # noqa: PLC0415 - daemon-side

        up = read_state(self.state_dir)
        if up is not None and isinstance(up.get("socket"), str):
            return Path(up["socket"])
        return self.state_dir / SOCKET_NAME


_OPTIONS = (
    click.option("--json", "json_out", is_flag=True, help="Machine output: JSON only on stdout."),
    click.option(
        "--local",
        is_flag=True,
        help="No daemon: run the engine in this process (authorized and audited the same way).",
    ),
    click.option(
        "--socket",
        type=click.Path(path_type=Path),
        default=lambda: settings.current().socket,
        help="The daemon's socket (default: the state directory's).",
    ),
    click.option(
        "--token",
        default=lambda: settings.current().token,
        help="Your bearer token (default: $CORDON_TOKEN; without one, your OS user).",
    ),
    click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=lambda: settings.current().state_dir,
        show_default=".state",
        help="Journal and daemon state (default: $CORDON_STATE_DIR).",
    ),
    click.option(
        "--inventory",
        "-i",
        "inventory_path",
        type=click.Path(path_type=Path),
        default=None,
        help="With --local: the inventory (default: $CORDON_INVENTORY or the example).",
    ),
    click.option(
        "--roles",
        type=click.Path(path_type=Path),
        default=None,
        help="With --local: the roles file (default: $CORDON_ROLES or inventory/roles.yaml).",
    ),
)


def common(fn: Callable[Concatenate[Opts, _P], _R]) -> Callable[_P, _R]:
    """Add the shared options; the command receives them as one `Opts`."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        o = Opts(
            json=bool(kwargs.pop("json_out")),
            local=bool(kwargs.pop("local")),
            socket=_path(kwargs.pop("socket")),
            token=_str(kwargs.pop("token")),
            state_dir=_path(kwargs.pop("state_dir")) or Path(".state"),
            inventory=_path(kwargs.pop("inventory_path")),
            roles=_path(kwargs.pop("roles")),
        )
        return fn(o, *args, **kwargs)

    out: Callable[_P, _R] = wrapper
    for option in reversed(_OPTIONS):
        out = option(out)
    return out


def _path(value: object) -> Path | None:
    return Path(str(value)) if value is not None else None


def _str(value: object) -> str | None:
    return str(value) if value is not None else None


sites_option = click.option(
    "--site",
    "--sites",
    "-s",
    "sites",
    multiple=True,
    help="Only this site (repeatable; default: the playbook's targets).",
)


def pairs(what: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], JSON]:
    """A click callback reading repeated KEY=VALUE options into a dict (each key once)."""

    def parse(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> JSON:
        out: JSON = {}
        for raw in values:
            key, sep, value = raw.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise click.BadParameter(f"{raw!r}: expected {what}")
            if key.strip() in out:
                raise click.BadParameter(f"{key.strip()} given twice")
            out[key.strip()] = value.strip()
        return out

    return parse


params_option = click.option(
    "--param",
    "params",
    multiple=True,
    callback=pairs("NAME=VALUE"),
    help="A playbook parameter, e.g. --param zone=guest (repeatable).",
)

inventory_option = click.option(
    "--inventory",
    "-i",
    "inventory_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Inventory file (default: $CORDON_INVENTORY or inventory/hospi-grand-ouest.yaml).",
)

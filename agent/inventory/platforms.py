"""Owns the platform names an inventory may use, and the one thing its checks must know of each
(whether its interface names are Linux kernel names).

Why a name set here and not a look-up in `agent.platforms.registry`: the inventory is a layer
BELOW the platforms (a platform's driver contract, `agent.drivers.base`, is typed by the inventory
models), so the inventory may not import the registry. Instead the registry feeds this set: its
`register` calls `admit`, its `unregister` calls `withdraw`, and it registers the built-in
platforms when it is imported. Every program that loads an inventory imports the registry first
(the command line, the daemon, the service, the lab and the test suite all reach it through the
planner, the pool or the twin), so the built-ins are always admitted before an inventory is
checked; `known()` refuses to answer while nothing has been admitted, so a program that forgot it
fails loudly instead of calling every platform unknown. A new platform is therefore only its own
folder and its `register` line: this module never names one.

Imports only the standard library.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# A platform name as an inventory writes it: it becomes part of module paths, log lines and
# messages, never of a device command.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Known:
    """What the inventory's checks know of a registered platform."""

    name: str
    kernel_names: bool  # its interface names are Linux kernel names (<= 15 chars, no '/' or ':')


_lock = threading.Lock()
_known: dict[str, Known] = {}


def valid_name(value: str) -> str:
    """`value` if it is a well-formed platform name; ValueError saying the rule otherwise."""
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid platform name: lower-case letters, digits and '_', "
            "1-32 characters, starting with a letter"
        )
    return value


def admit(name: str, *, kernel_names: bool) -> None:
    """Let inventories use platform `name` (called by the platform registry)."""
    valid_name(name)
    with _lock:
        _known[name] = Known(name, kernel_names)


def withdraw(name: str) -> None:
    """Inventories may no longer use platform `name` (the registry unregistered it)."""
    with _lock:
        _known.pop(name, None)


def known() -> Mapping[str, Known]:
    """The admitted platforms by name (a read-only snapshot). RuntimeError while none is: the
    program loads an inventory without having imported `agent.platforms.registry` (a bug)."""
    with _lock:
        snapshot = dict(_known)
    if not snapshot:
        raise RuntimeError(
            "no platform is registered: import agent.platforms.registry before loading an "
            "inventory (it registers the built-in platforms)"
        )
    return MappingProxyType(snapshot)

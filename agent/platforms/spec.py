"""Owns the shape of a platform's registration (`Spec`): its name, how its driver is made, and the
renderers of the two kinds of change (interface shutdown by a method, packet rules as a script).
Imports the driver contract and the plan's state types only; no device library."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.drivers.base import Driver, Target, Timeouts, Via
from agent.network.state import DeviceState

# (target, timeouts) -> an unconnected driver; the device library loads when this is called
DriverFactory = Callable[[Target, Timeouts | None], Driver]


class ShutLines(Protocol):
    """The lines that shut (`down`) or reopen `interfaces`, in a stable order."""

    def __call__(self, interfaces: list[str], *, down: bool) -> list[str]: ...


@dataclass(frozen=True)
class Spec:
    """One platform (or one cross-platform method, as SNMP) as the registry knows it.

    `name`: the inventory's platform value (or the method's name). `driver`: makes its driver,
    reached over `via`. `shuts_by`/`shut_lines`: the playbook method by which it shuts interfaces
    itself (`cli`) and the lines for it. `rules_by`/`rules_script`: the method by which it holds
    packet rules (`nft`) and the whole script that makes its rules exactly a state (also the
    undo: the script of the state before)."""

    name: str
    driver: DriverFactory
    via: Via = "ssh"
    shuts_by: str | None = None
    shut_lines: ShutLines | None = None
    rules_by: str | None = None
    rules_script: Callable[[DeviceState], str] | None = None

    def __post_init__(self) -> None:
        if (self.shuts_by is None) != (self.shut_lines is None):
            raise ValueError(f"platform {self.name}: shuts_by and shut_lines go together")
        if (self.rules_by is None) != (self.rules_script is None):
            raise ValueError(f"platform {self.name}: rules_by and rules_script go together")

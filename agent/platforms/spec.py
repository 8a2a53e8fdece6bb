"""Owns the shape of a platform's registration (`Spec`, `Rules`): its name, how its driver is made,
the renderers of the two kinds of change (interface shutdown by a method, packet rules as a
script), how its read-back and its backups are read, and where its twin lives.
Imports the driver contract and the plan's state types only; no device library, no twin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.drivers.base import Driver, Target, Timeouts, Via
from agent.inventory.models import Device
from agent.network.state import DeviceState, NftRule

# (target, timeouts) -> an unconnected driver; the device library loads when this is called
DriverFactory = Callable[[Target, Timeouts | None], Driver]


class ShutLines(Protocol):
    """The lines that shut (`down`) or reopen `interfaces`, in a stable order."""

    def __call__(self, interfaces: list[str], *, down: bool) -> list[str]: ...


@dataclass(frozen=True)
class Rules:
    """How a platform holds packet rules.

    `method`: the playbook method that changes them (`nft`). `script`: the whole script that makes
    its rules exactly a state (also the undo: the script of the state before). `comments`: the
    exact set of rule comments the device shows once it holds a state's rules (the read-back and
    drift compare it). `comments_in`: the rule comments in the text of its own rules as read back
    (`Facts.ours`). `counted_as`: the comment a counting rule's packets are keyed by when its
    counters are read (`Counters.rule_counters`; the soak watches them). `home`: where its rules
    live, as messages name it."""

    method: str
    script: Callable[[DeviceState], str]
    comments: Callable[[DeviceState], frozenset[str]]
    comments_in: Callable[[str], frozenset[str]]
    counted_as: Callable[[NftRule], str]
    home: str


@dataclass(frozen=True)
class Spec:
    """One platform (or one cross-platform method, as SNMP) as the registry knows it.

    `name`: the inventory's platform value (or the method's name). `driver`: makes its driver,
    reached over `via`. `shuts_by`/`shut_lines`: the playbook method by which it shuts interfaces
    itself (`cli`) and the lines for it. `rules`: how it holds packet rules, None if it holds
    none. `config_lines`: a backup's lines apart from what isolation changes and what changes by
    itself (the baseline digest compares them); None: every line. `twin`: the module that starts
    its twin device (imported only by the lab, through `registry.twin`), None if it has none.
    `forwards`: the device routes between its interfaces (a firewall or router: its interfaces
    carry addresses); False: it bridges VLANs (a switch). `kernel_names`: its interface names are
    Linux kernel names, used as they are (else the twin renames what Linux would refuse).
    `l3_switch`: it bridges its VLANs like a switch and, where its interfaces carry addresses
    (SVIs `Vlan110`, routed ports), routes between them (`routes`, `bridges` ask per device).
    `reverts_config`: its driver's on-device dead-man (`capabilities.DeadMan`) restores the whole
    configuration the device had when armed (a commit-confirm, a rollback timer), so the executor
    arms it for any change its own session makes (a port reopened too); False: it covers its
    packet rules only. `local_exceptions`: its rules renderer holds local exceptions
    (`NftRule.local`: accepts of the device's own traffic, placed before its drops of its own
    traffic on a cut interface), so a firewall managed in band through a link a step cuts gets the
    whole link cut with an exception for the agent's management of it alone; False: the plan cuts
    only what such a firewall forwards there."""

    name: str
    driver: DriverFactory
    via: Via = "ssh"
    shuts_by: str | None = None
    shut_lines: ShutLines | None = None
    rules: Rules | None = None
    config_lines: Callable[[str], list[str]] | None = None
    twin: str | None = None
    forwards: bool = False
    kernel_names: bool = False
    l3_switch: bool = False
    reverts_config: bool = False
    local_exceptions: bool = False

    def __post_init__(self) -> None:
        if (self.shuts_by is None) != (self.shut_lines is None):
            raise ValueError(f"platform {self.name}: shuts_by and shut_lines go together")
        if self.local_exceptions and self.rules is None:
            raise ValueError(f"platform {self.name}: local_exceptions needs rules")

    def routes(self, device: Device) -> bool:
        """Does `device` route (its interfaces carry addresses in the twin)? An L3 switch routes
        when an interface other than its management one has an address."""
        if not self.l3_switch:
            return self.forwards
        mgmt = device.management.interface
        return any(i.address is not None and i.name != mgmt for i in device.interfaces)

    def bridges(self, device: Device) -> bool:
        """Does `device` bridge VLANs (one bridge per VLAN in the twin)?"""
        return self.l3_switch or not self.routes(device)

    @property
    def rules_by(self) -> str | None:
        """The method by which it holds packet rules (`nft`), None if it holds none."""
        return self.rules.method if self.rules is not None else None

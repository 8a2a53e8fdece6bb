"""Owns the driver contract: the `Driver` protocol, frozen facts/change sets/backups/expectations.
Must not import netmiko, paramiko, pysnmp, the engine or the CLI: pure types the engine uses."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

from agent.errors import DeviceError
from agent.inventory.models import Device, Inventory, Platform

Via = Literal["ssh", "snmp"]

# The nftables table the agent owns on a Linux firewall; nothing else is ever written or flushed.
CORDON_TABLE = "inet cordon"


def _frozen(mapping: Mapping[str, bool] | None) -> Mapping[str, bool]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Timeouts:
    """Bounds of every device operation, in seconds.

    `connect` covers TCP connect, SSH banner, key exchange and authentication (each bounded by it);
    `command` is the read timeout of one command; `settle` bounds read-back polling in `verify`;
    `snmp` is the per-try SNMP timeout, retried `snmp_retries` times.
    """

    connect: float = 10.0
    command: float = 15.0
    settle: float = 6.0
    snmp: float = 1.0
    snmp_retries: int = 2


@dataclass(frozen=True)
class Target:
    """One device and what is needed to reach it: where its secret references resolve, and the
    group's pinned host keys (an inline `ssh.host_key` takes precedence)."""

    device: Device
    site: str
    base_dir: Path
    known_hosts: Path | None
    tls_pins: Path | None = None  # the group's pinned certificates (an inline pin wins)

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def address(self) -> str:
        return str(self.device.management.address)

    @classmethod
    def of(cls, inv: Inventory, name: str) -> Target:
        """The target of device `name` in `inv` (KeyError-free: a DeviceError names it)."""
        found = inv.find_device(name)
        if found is None:
            raise DeviceError(name, "lookup", "no such device in the inventory")
        site, device = found
        base = Path(inv.path).parent
        kh = base / inv.group.known_hosts if inv.group.known_hosts else None
        pins = base / inv.group.tls_pins if inv.group.tls_pins else None
        return cls(device=device, site=site.name, base_dir=base, known_hosts=kh, tls_pins=pins)

    @classmethod
    def all(cls, inv: Inventory, *, site: str | None = None) -> list[Target]:
        """Every device of `inv` (of one site if `site` is given), in inventory order."""
        return [cls.of(inv, d.name) for s, d in inv.devices() if site is None or s.name == site]


@dataclass(frozen=True)
class InterfaceState:
    """One interface as the device reports it. Counters are None where the source has none."""

    name: str
    admin_up: bool
    oper_up: bool | None = None
    index: int | None = None
    in_octets: int | None = None
    out_octets: int | None = None


@dataclass(frozen=True)
class Facts:
    """What a device says about itself at `taken_at` (epoch seconds).

    `config` is the running configuration (IOS), the full running ruleset (nftables) or, over
    SNMP, the admin state of every interface as text. `ours` is the text of the agent's own table
    on an nftables firewall ("" when absent) and "" elsewhere.
    """

    device: str
    platform: Platform
    via: Via
    interfaces: tuple[InterfaceState, ...]
    config: str = ""
    ours: str = ""
    taken_at: float = field(default_factory=time.time)

    def interface(self, name: str) -> InterfaceState | None:
        return next((i for i in self.interfaces if i.name == name), None)


@dataclass(frozen=True)
class ChangeSet:
    """Commands already rendered for one platform, applied in order.

    cisco_ios: configuration-mode lines (`interface gi1`, `shutdown`); the driver enters and leaves
    configuration mode. linux_nftables: lines of one nft script touching only `table inet cordon`,
    loaded atomically. SNMP: lines `ifAdminStatus <ifname> up|down`, sent as one SET.
    `action` names the intent for the audit trail (`contain.shut_port`, `undo`, ...).
    """

    commands: tuple[str, ...]
    action: str = "change"

    def __post_init__(self) -> None:
        if isinstance(self.commands, str):
            raise TypeError("ChangeSet.commands is a tuple of lines, not one string")
        object.__setattr__(self, "commands", tuple(self.commands))


@dataclass(frozen=True)
class Expectation:
    """What a read-back must show. Every given part must hold; empty parts are not checked.

    `admin_up` / `oper_up`: interface -> wanted state. `config_has` / `config_lacks`: lines that
    must (not) appear, stripped, in the configuration read back (for nftables: the agent's table).
    `table_present`: nftables only, whether `table inet cordon` must exist. `rule_comments`:
    nftables only, the exact set of rule comments the agent's table must hold.
    """

    admin_up: Mapping[str, bool] = field(default_factory=dict)
    oper_up: Mapping[str, bool] = field(default_factory=dict)
    config_has: tuple[str, ...] = ()
    config_lacks: tuple[str, ...] = ()
    table_present: bool | None = None
    rule_comments: frozenset[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "admin_up", _frozen(self.admin_up))
        object.__setattr__(self, "oper_up", _frozen(self.oper_up))
        object.__setattr__(self, "config_has", tuple(self.config_has))
        object.__setattr__(self, "config_lacks", tuple(self.config_lacks))

    @property
    def needs_config(self) -> bool:
        return bool(self.config_has or self.config_lacks)

    @property
    def needs_oper(self) -> bool:
        return bool(self.oper_up)


@dataclass(frozen=True)
class Backup:
    """A configuration snapshot, stored (scrubbed) as audit evidence under `sha256`."""

    device: str
    platform: Platform
    via: Via
    text: str
    sha256: str
    ours: str | None = None  # nftables: our table's text, None when the table did not exist
    taken_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ApplyResult:
    """What the device said while a change set was applied (output scrubbed of secrets)."""

    device: str
    action: str
    commands: tuple[str, ...]
    output: str
    duration_s: float


@runtime_checkable
class Driver(Protocol):
    """One management session to one device. Not thread-safe: one caller at a time (the pool
    serialises). Every method raises only `DeviceError` subclasses naming device and operation."""

    target: Target
    via: Via

    def connect(self) -> None:
        """Open the session (host key checked before authenticating); idempotent."""

    def close(self) -> None:
        """Close the session; never raises."""

    def is_open(self) -> bool:
        """Whether the session still looks usable (no I/O)."""

    def ping(self) -> None:
        """One cheap round trip (keepalive and liveness check)."""

    def facts(self) -> Facts:
        """Interfaces with admin/oper state and the running configuration or ruleset."""

    def backup(self) -> Backup:
        """Snapshot the configuration and store it as evidence."""

    def apply(self, changes: ChangeSet) -> ApplyResult:
        """Apply a rendered change set; a rejected command raises `CommandRejected`."""

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        """Read back until `expect` holds or `timeout` (default: Timeouts.settle) passes; then
        `VerifyError` lists every mismatch. Returns the facts that satisfied it."""


def mismatches(facts: Facts, expect: Expectation, *, config: str | None = None) -> list[str]:
    """Every way `facts` (and `config`, the text read back for config checks) miss `expect`."""
    out: list[str] = []
    for what, wanted, attr in (
        ("admin", expect.admin_up, "admin_up"),
        ("oper", expect.oper_up, "oper_up"),
    ):
        for name, up in sorted(wanted.items()):
            iface = facts.interface(name)
            if iface is None:
                out.append(f"interface {name}: not found")
                continue
            have = getattr(iface, attr)
            if have is None:
                out.append(f"interface {name}: {what} state unknown")
            elif have != up:
                out.append(
                    f"interface {name}: {what} {'up' if have else 'down'}, "
                    f"expected {'up' if up else 'down'}"
                )
    if expect.needs_config:
        text = facts.config if config is None else config
        lines = {line.strip() for line in text.splitlines()}
        out += [f"missing line {w!r}" for w in expect.config_has if w.strip() not in lines]
        out += [f"unexpected line {w!r}" for w in expect.config_lacks if w.strip() in lines]
    return out

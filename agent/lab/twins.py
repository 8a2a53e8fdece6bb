"""Owns what the lab hands a platform's twin to start one device in its namespace (`Node`), the
shape of a twin module (`Twin`) and starting a device through the twins the platform registry
names (`start`): the device's platform first, then each shared method's (SNMP), each deciding
what it starts for that device. No platform is named here.
Imports the platform registry, the inventory's device model and the lab's daemons and topology
types; a twin module (`agent.platforms.<name>.twin`) imports this and the lab's primitives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

from agent.errors import LabError
from agent.inventory.models import Device
from agent.lab import daemons
from agent.lab.topology import DaemonSpec
from agent.platforms import registry


@dataclass(frozen=True)
class Https:
    """What the twin generated for a device's HTTPS API: its certificate and key (pinned in the
    group's tls_pins file), its port, and the credential values the inventory references (the
    twin device accepts exactly these; never logged)."""

    cert: Path
    key: Path
    port: int
    username: str | None
    token: str | None = field(repr=False, default=None)
    password: str | None = field(repr=False, default=None)


@dataclass(frozen=True)
class Node:
    """One twin device to start. `spec`: its namespace, addresses, ports and renamed
    interfaces; `device`: its inventory entry; `lab`: the twin's name; `dir`: its own directory
    (configs, pid files, logs); `host_key` / `authorized_keys`: sshd's; `snmp_secrets`: the auth
    and priv passphrases of its SNMP agent, if it has one; `https`: its HTTPS API's material, if
    the inventory gives it one. `record` journals a started process
    the moment it exists; `keep(kind, path)` journals a path of `kind` that `lab down` removes."""

    spec: DaemonSpec
    device: Device
    lab: str
    dir: Path
    host_key: Path
    authorized_keys: Path
    snmp_secrets: tuple[str, str] | None
    record: Callable[[daemons.DaemonProc], None]
    keep: Callable[[str, str], None]
    https: Https | None = None

    def sshd(self, force_command: str | None = None) -> None:
        """Start and journal the device's sshd (with `force_command`: the login runs it)."""
        self.record(
            daemons.start_sshd(
                self.spec.ns,
                self.dir,
                self.spec.device,
                str(self.spec.mgmt_address),
                port=self.spec.ssh_port,
                host_key_path=self.host_key,
                authorized_keys_path=self.authorized_keys,
                force_command=force_command,
            )
        )


class Twin(Protocol):
    """A platform's twin module: `start` brings up what emulates that platform on `node`."""

    def start(self, node: Node) -> None: ...


def start(node: Node) -> None:
    """Start `node`'s device: its platform's twin, then every shared method's twin."""
    names = [str(node.spec.platform), *registry.methods()]
    own = registry.twin(names[0])
    if own is None:
        raise LabError(f"{node.spec.device}: platform {names[0]} has no twin device")
    cast(Twin, own).start(node)
    for name in names[1:]:
        module = registry.twin(name)
        if module is not None:
            cast(Twin, module).start(node)

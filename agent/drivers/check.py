"""Owns `device check` as data: every device reached in parallel (its own session: SSH with its
host key, or an HTTPS API with its pinned certificate; SNMP; facts).
Must not import click, the engine or a device library; `agent.cli.commands.device` renders it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.drivers.base import InterfaceState, Target, Timeouts, Via
from agent.errors import AuthError, CertificateError, CordonError, DeviceTimeout, HostKeyError
from agent.inventory.models import Inventory
from agent.platforms.registry import one_shot


@dataclass(frozen=True)
class Probe:
    """One transport's verdict: ok, timeout, refused-auth, host-key, error or n/a."""

    status: str
    detail: str = ""


@dataclass(frozen=True)
class DeviceCheck:
    device: str
    site: str
    platform: str
    address: str
    ssh: Probe  # the platform's own session (SSH, or an HTTPS API for FortiGate, Stormshield...)
    host_key: str  # pinned (matched) | changed | unknown | not checked (SSH key or TLS certificate)
    host_key_seen: str | None
    host_key_pinned: str | None
    snmp: Probe
    interfaces: tuple[InterfaceState, ...] = field(default=())
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.ssh.status == "ok" and self.snmp.status in ("ok", "n/a")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _verdict(exc: CordonError) -> Probe:
    if isinstance(exc, DeviceTimeout):
        return Probe("timeout", exc.message)
    if isinstance(exc, HostKeyError):
        return Probe("host-key", exc.message)
    if isinstance(exc, CertificateError):
        return Probe("certificate", exc.message)
    if isinstance(exc, AuthError):
        return Probe("auth-refused", exc.message)
    return Probe("error", exc.message)


def _ssh(
    target: Target, timeouts: Timeouts
) -> tuple[Probe, str, str | None, str | None, tuple[InterfaceState, ...]]:
    try:
        with one_shot(target, timeouts, "ssh") as driver:
            facts = driver.facts()
    except (HostKeyError, CertificateError) as exc:  # the device's identity, SSH or TLS
        state = "changed" if exc.expected else "unknown"
        return _verdict(exc), state, exc.seen, exc.expected, ()
    except CordonError as exc:
        return _verdict(exc), "not checked", None, None, ()
    return Probe("ok"), "pinned", None, None, facts.interfaces


def _snmp(target: Target, timeouts: Timeouts) -> tuple[Probe, tuple[InterfaceState, ...]]:
    if target.device.snmp is None:
        return Probe("n/a", "no SNMP settings"), ()
    via: Via = "snmp"
    try:
        with one_shot(target, timeouts, via) as driver:
            facts = driver.facts()
    except CordonError as exc:
        return _verdict(exc), ()
    return Probe("ok"), facts.interfaces


def check_device(target: Target, timeouts: Timeouts) -> DeviceCheck:
    """SSH and SNMP of one device, side by side (SSH facts preferred, SNMP's when SSH fails)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as ex:
        ssh_f = ex.submit(_ssh, target, timeouts)
        snmp_f = ex.submit(_snmp, target, timeouts)
        ssh, host_key, seen, pinned, ssh_ifs = ssh_f.result()
        snmp, snmp_ifs = snmp_f.result()
    return DeviceCheck(
        device=target.name,
        site=target.site,
        platform=str(target.device.platform),
        address=target.address,
        ssh=ssh,
        host_key=host_key,
        host_key_seen=seen,
        host_key_pinned=pinned,
        snmp=snmp,
        interfaces=_merge(ssh_ifs, snmp_ifs),
        duration_s=round(time.monotonic() - t0, 3),
    )


def _merge(
    ssh: tuple[InterfaceState, ...], snmp: tuple[InterfaceState, ...]
) -> tuple[InterfaceState, ...]:
    """SSH's view of each interface, with SNMP's oper state and counters where SSH has none."""
    if not ssh:
        return snmp
    by_name = {i.name: i for i in snmp}
    out = []
    for i in ssh:
        s = by_name.get(i.name)
        if s is None:
            out.append(i)
            continue
        out.append(
            InterfaceState(
                name=i.name,
                admin_up=i.admin_up,
                oper_up=i.oper_up if i.oper_up is not None else s.oper_up,
                index=i.index if i.index is not None else s.index,
                in_octets=i.in_octets if i.in_octets is not None else s.in_octets,
                out_octets=i.out_octets if i.out_octets is not None else s.out_octets,
            )
        )
    return tuple(out)


def check(
    inv: Inventory,
    *,
    site: str | None = None,
    timeouts: Timeouts | None = None,
    max_workers: int = 32,
) -> list[DeviceCheck]:
    """Check every device of `inv` (or of one site) in parallel; inventory order."""
    targets = Target.all(inv, site=site)
    timeouts = timeouts or Timeouts()
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(targets)))) as ex:
        return list(ex.map(lambda t: check_device(t, timeouts), targets))

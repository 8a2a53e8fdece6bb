"""Test-side ways to act on the twin as an operator would (IOS-style CLI over SSH, SNMPv3 SET),
with pinned host keys and the credentials the twin wrote where the inventory points. The agent's
own drivers are tested separately; these prove the twin itself behaves like real devices."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netmiko import ConnectHandler
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    Integer,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    set_cmd,
    usmAesCfb128Protocol,
    usmHMACSHAAuthProtocol,
    walk_cmd,
)

from agent.inventory.models import Device, Inventory
from agent.secrets import ref_path, resolve


def _device(inv: Inventory, name: str) -> Device:
    found = inv.find_device(name)
    assert found is not None, name
    return found[1]


def ios(inv: Inventory, name: str) -> Any:
    """A netmiko cisco_ios session to a twin switch: key auth, host key pinned (never added)."""
    dev = _device(inv, name)
    base = Path(inv.path).parent
    assert dev.ssh.key is not None and inv.group.known_hosts is not None
    return ConnectHandler(
        device_type="cisco_ios",
        host=str(dev.management.address),
        port=dev.ssh.port,
        username=dev.ssh.username,
        use_keys=True,
        key_file=str(ref_path(dev.ssh.key, base)),
        allow_agent=False,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(base / inv.group.known_hosts),
        conn_timeout=30,
        fast_cli=True,
    )


def shutdown(inv: Inventory, device: str, interface: str, *, down: bool) -> str:
    conn = ios(inv, device)
    try:
        cmd = "shutdown" if down else "no shutdown"
        return str(
            conn.send_config_set(
                [f"interface {interface}", cmd], error_pattern=r"% (Unknown|Invalid)"
            )
        )
    finally:
        conn.disconnect()


IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"


def _usm(inv: Inventory, dev: Device) -> Any:

    snmp = dev.snmp
    assert snmp is not None and snmp.auth and snmp.priv and snmp.user
    base = Path(inv.path).parent
    return UsmUserData(
        snmp.user,
        resolve(snmp.auth, base_dir=base, what="test"),
        resolve(snmp.priv, base_dir=base, what="test"),
        authProtocol=usmHMACSHAAuthProtocol,
        privProtocol=usmAesCfb128Protocol,
    )


async def _if_index(inv: Inventory, dev: Device, ifname: str) -> int:
    """The ifIndex whose ifDescr or ifName is `ifname` (a device whose names the twin renamed,
    `GigabitEthernet1/0/6`, answers its own name in ifName)."""
    engine = SnmpEngine()
    target = await UdpTransportTarget.create((str(dev.management.address), 161), timeout=5)
    for column in (IF_DESCR, IF_NAME):
        async for err_ind, err_stat, _idx, binds in walk_cmd(
            engine,
            _usm(inv, dev),
            target,
            ContextData(),
            ObjectType(ObjectIdentity(column)),
            lexicographicMode=False,
        ):
            assert not err_ind and not err_stat, (err_ind, err_stat)
            for oid, value in binds:
                if str(value) == ifname:
                    return int(str(oid).rsplit(".", 1)[1])
    raise AssertionError(f"{dev.name} has no interface {ifname}")


async def _set_admin(inv: Inventory, dev: Device, index: int, value: int) -> None:

    target = await UdpTransportTarget.create((str(dev.management.address), 161), timeout=5)
    err_ind, err_stat, _idx, _binds = await set_cmd(
        SnmpEngine(),
        _usm(inv, dev),
        target,
        ContextData(),
        ObjectType(ObjectIdentity(f"{IF_ADMIN}.{index}"), Integer(value)),
    )
    assert not err_ind and not err_stat, (err_ind, str(err_stat))


def snmp_admin(inv: Inventory, device: str, ifname: str, *, up: bool) -> int:
    """SET ifAdminStatus of `device:ifname` over SNMPv3 authPriv; returns the ifIndex."""
    dev = _device(inv, device)

    async def go() -> int:
        index = await _if_index(inv, dev, ifname)
        await _set_admin(inv, dev, index, 1 if up else 2)
        return index

    return asyncio.run(go())


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.2) -> bool:
    """Poll `predicate` until it holds or `timeout` passes (effects on real devices settle)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)

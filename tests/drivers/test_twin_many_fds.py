"""Warm sessions on descriptors above 1,024, as in a daemon holding ~500 of them: with more than
1,024 files already open, the real drivers shut a switch port and read it back (CLI and SNMP) and
change two firewalls' rules in their own syntax (a Linux firewall's nftables table over SSH, a
Stormshield's filter over HTTPS), then undo all; the twin's kernel shows each state."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from agent.drivers import ChangeSet, Driver, Expectation, Pool
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms import registry
from agent.run.transaction import expectation
from tests.drivers import twinhelp as th
from tests.drivers.conftest import HIGH_FD
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin

SWITCH = "bz2-sw1"  # IOS-XE: its CLI shuts by `interface X` / `shutdown`, as this test sends
LINUX_FW, HTTPS_FW = "bz2-fw1", "bz1-fw1"  # linux_nftables over SSH, stormshield over HTTPS
FIREWALLS = (LINUX_FW, HTTPS_FW)
CUT = DeviceState().with_rules([NftRule("drop", iif="inet0", dport=3389, tag="test fds")])


def high_sockets() -> list[int]:
    """This process's sockets numbered above the held range."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > HIGH_FD and os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.append(fd)
        except OSError:  # closed in between
            continue
    return found


def access_port(lab: Lab) -> str:
    device = th.target(lab, SWITCH).device
    return next(i.name for i in device.interfaces if i.vlan is not None)


def test_drivers_work_on_descriptors_above_1024(lab: Lab, many_fds: int) -> None:
    """CLI shut + read-back, SNMP read-back, two firewalls' rules change + read-back, and the undo
    of each, on warm sessions whose sockets are numbered above 1,024 (select() raised ValueError
    on them)."""
    assert many_fds > 1024
    port = access_port(lab)
    before = set(high_sockets())

    def shut(d: Driver) -> None:
        d.apply(ChangeSet((f"interface {port}", "shutdown"), action="test.fds"))
        d.verify(Expectation(admin_up={port: False}))

    def reopen(d: Driver) -> None:
        d.apply(ChangeSet((f"interface {port}", "no shutdown"), action="test.fds"))
        d.verify(Expectation(admin_up={port: True}))

    def rules(before: DeviceState, after: DeviceState) -> Callable[[Driver], None]:
        def run(d: Driver) -> None:
            spec = registry.platform(str(d.target.device.platform)).rules
            assert spec is not None
            d.apply(ChangeSet(tuple(spec.script(after).splitlines()), action="test.fds"))
            d.verify(expectation(spec.method, before, after))

        return run

    with Pool(lab.inv, keepalive=None) as pool:
        warmed = pool.warm([SWITCH, *FIREWALLS])
        assert [f"{o.device}: {o.error}" for o in warmed if not o.ok] == []
        assert len(set(high_sockets()) - before) >= 3  # the three sessions live up there
        try:
            pool.run(SWITCH, shut)
            assert not th.link_up(lab, SWITCH, port)
            seen = pool.run(
                SWITCH, lambda d: d.verify(Expectation(admin_up={port: False})), via="snmp"
            )
            state = seen.interface(port)
            assert state is not None and state.admin_up is False
            for fw in FIREWALLS:
                pool.run(fw, rules(NORMAL, CUT))
            assert "test fds #" in th.nft_table(lab, LINUX_FW, "cordon")
        finally:
            pool.run(SWITCH, reopen)
            for fw in FIREWALLS:
                pool.run(fw, rules(CUT, NORMAL))
    assert th.link_up(lab, SWITCH, port)
    assert th.nft_table(lab, LINUX_FW, "cordon") == ""

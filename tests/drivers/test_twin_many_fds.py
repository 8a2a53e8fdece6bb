"""Warm sessions on descriptors above 1,024, as in a daemon holding ~500 of them: with more than
1,024 files already open, the real drivers shut a switch port and read it back (CLI and SNMP) and
change a firewall's nftables table, then undo both; the twin's kernel shows each state."""

from __future__ import annotations

import os

import pytest

from agent.drivers import ChangeSet, Driver, Expectation, Pool
from agent.platforms.linux_nftables.driver import nft_remove, nft_replace
from tests.drivers import twinhelp as th
from tests.drivers.conftest import HIGH_FD
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin

SWITCH, FIREWALL = "bz1-sw1", "bz1-fw1"
RULE = 'iifname "inet0" tcp dport 3389 drop comment "test:fds"'


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
    """CLI shut + read-back, SNMP read-back, nft change + read-back, and the undo of each, on warm
    sessions whose sockets are numbered above 1,024 (select() raised ValueError on them)."""
    assert many_fds > 1024
    port = access_port(lab)
    before = set(high_sockets())

    def shut(d: Driver) -> None:
        d.apply(ChangeSet((f"interface {port}", "shutdown"), action="test.fds"))
        d.verify(Expectation(admin_up={port: False}))

    def reopen(d: Driver) -> None:
        d.apply(ChangeSet((f"interface {port}", "no shutdown"), action="test.fds"))
        d.verify(Expectation(admin_up={port: True}))

    def cut(d: Driver) -> None:
        body = ["chain input {", "type filter hook input priority 0;", RULE, "}"]
        d.apply(nft_replace(body, action="test.fds"))
        d.verify(Expectation(rule_comments=frozenset({"test:fds"})))

    def uncut(d: Driver) -> None:
        d.apply(nft_remove(action="test.fds"))
        d.verify(Expectation(table_present=False))

    with Pool(lab.inv, keepalive=None) as pool:
        assert [f"{o.device}: {o.error}" for o in pool.warm([SWITCH, FIREWALL]) if not o.ok] == []
        assert len(set(high_sockets()) - before) >= 2  # both SSH sessions live up there
        try:
            pool.run(SWITCH, shut)
            assert not th.link_up(lab, SWITCH, port)
            seen = pool.run(
                SWITCH, lambda d: d.verify(Expectation(admin_up={port: False})), via="snmp"
            )
            state = seen.interface(port)
            assert state is not None and state.admin_up is False
            pool.run(FIREWALL, cut)
            assert "test:fds" in th.nft_table(lab, FIREWALL, "cordon")
        finally:
            pool.run(SWITCH, reopen)
            pool.run(FIREWALL, uncut)
    assert th.link_up(lab, SWITCH, port)
    assert th.nft_table(lab, FIREWALL, "cordon") == ""

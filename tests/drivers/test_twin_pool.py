"""Warm sessions on the twin: a pooled change, verify and undo on every one of the 21 devices in
parallel opens no new SSH session; a session the device drops is reopened on the next use."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.drivers import ChangeSet, Driver, Expectation, Pool
from agent.lab.daemons import DaemonProc, is_running
from agent.platforms.linux_nftables.driver import nft_remove, nft_replace
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin


def logins(lab: Lab, device: str) -> int:
    return th.sshd_log(lab, device).count("Accepted publickey")


def ports(lab: Lab, device: str) -> list[str]:
    """Two access ports of a switch (interfaces carrying a zone VLAN)."""
    found = th.target(lab, device).device
    return [i.name for i in found.interfaces if i.vlan is not None][:2]


def change(lab: Lab, *, undo: bool) -> Callable[[Driver], None]:
    def run(d: Driver) -> None:
        name = d.target.name
        if d.target.device.platform == "cisco_ios":
            cmd = "no shutdown" if undo else "shutdown"
            lines = [x for p in ports(lab, name) for x in (f"interface {p}", cmd)]
            d.apply(ChangeSet(tuple(lines), action="test.pool"))
            d.verify(Expectation(admin_up=dict.fromkeys(ports(lab, name), undo)))
        elif undo:
            d.apply(nft_remove(action="test.pool"))
            d.verify(Expectation(table_present=False))
        else:
            rule = 'iifname "inet0" tcp dport 3389 drop comment "test:pool"'
            d.apply(
                nft_replace(
                    ["chain input {", "type filter hook input priority 0;", rule, "}"],
                    action="test.pool",
                )
            )
            d.verify(Expectation(rule_comments=frozenset({"test:pool"})))

    return run


def test_warm_change_on_every_device_opens_no_session(lab: Lab) -> None:
    """Change, read back and undo on all 21 devices through warm sessions: every device succeeds
    and no sshd logs a new login after warm-up."""
    names = [d.name for _, d in lab.inv.devices()]
    assert len(names) == 21
    with Pool(lab.inv, keepalive=None) as pool:
        assert [o.device for o in pool.warm(names) if not o.ok] == []
        before = {n: logins(lab, n) for n in names}
        try:
            done = pool.run_many(names, change(lab, undo=False))
            assert [f"{o.device}: {o.error}" for o in done if not o.ok] == []
        finally:
            undone = pool.run_many(names, change(lab, undo=True))
        assert [f"{o.device}: {o.error}" for o in undone if not o.ok] == []
        assert {n: logins(lab, n) for n in names} == before
    sw = "bz1-sw1"
    assert all(th.link_up(lab, sw, p) for p in ports(lab, sw))
    assert th.nft_table(lab, "bz1-fw1", "cordon") == ""


def sshd_of(lab: Lab, device: str) -> DaemonProc:
    for raw in lab.state.procs:
        proc = DaemonProc.from_dict(raw)
        if proc.kind == "sshd" and proc.hostname == device:
            return proc
    raise AssertionError(f"no sshd recorded for {device}")


def session_children(proc: DaemonProc) -> list[int]:
    """The per-connection processes the device's sshd forked (our sessions)."""
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return [int(p) for p in path.read_text().split()]


@pytest.mark.parametrize("device", ["rns-fw1", "rns-sw2"])
def test_session_dropped_by_the_device_is_reopened(lab: Lab, device: str) -> None:
    """When the device ends our session (its sshd session process killed), the next pooled use
    reconnects with a new login and succeeds."""
    sshd = sshd_of(lab, device)
    assert is_running(sshd)
    with Pool(lab.inv, keepalive=None, probe_after=0.0) as pool:
        pool.run(device, lambda d: d.facts())
        children = session_children(sshd)
        assert len(children) == 1  # the pool's one session
        before = logins(lab, device)
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        facts = pool.run(device, lambda d: d.facts())
        assert facts.interface("mgmt0") is not None
        assert logins(lab, device) == before + 1
    assert is_running(sshd)

"""Warm sessions on the twin: a pooled change, verify and undo on every one of the 21 devices in
parallel (each in its platform's own syntax: Linux, FortiGate, Stormshield, IOS, IOS-XE,
AOS-CX, Junos) opens no new
session (the same TCP connection to each device's management port; no new SSH login); a session
the device drops is reopened on the next use."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.drivers import ChangeSet, Driver, Pool
from agent.engine import render
from agent.lab import netns
from agent.lab.daemons import DaemonProc, is_running
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms import registry
from agent.run.transaction import expectation
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin


def logins(lab: Lab, device: str) -> int:
    return th.sshd_log(lab, device).count("Accepted publickey")


def ports(lab: Lab, device: str) -> list[str]:
    """Two access ports of a switch (interfaces carrying a zone VLAN)."""
    found = th.target(lab, device).device
    return [i.name for i in found.interfaces if i.vlan is not None][:2]


def changed(lab: Lab, device: str) -> DeviceState:
    """The test's change of a device: a drop rule on a firewall (by its own rules method), two
    access ports shut on a switch (by its own CLI; the example's IOS-XE, AOS-CX and Junos EX
    switches hold rules too, but route nothing here: L2 access switches)."""
    dev = th.target(lab, device).device
    spec = registry.platform(str(dev.platform))
    if spec.rules is not None and spec.routes(dev):
        routed = next(i.name for i in dev.interfaces if i.address is not None)
        return DeviceState().with_rules([NftRule("drop", iif=routed, dport=3389, tag="test pool")])
    assert spec.shuts_by == "cli"  # the example's switches shut ports in their own CLI
    state = DeviceState()
    for port in ports(lab, device):
        state = state.shut(port, "cli")
    return state


def change(lab: Lab, *, undo: bool) -> Callable[[Driver], None]:
    """Apply the test's change (or its undo) as the executor does, and read it back."""

    def run(d: Driver) -> None:
        name = d.target.name
        state = changed(lab, name)
        before, after = (state, NORMAL) if undo else (NORMAL, state)
        steps = render.render(str(d.target.device.platform), before, after)
        assert steps, f"{name}: the test's change renders to nothing"
        for method, commands, _undo in steps:
            d.apply(ChangeSet(tuple(commands), action="test.pool"))
            d.verify(expectation(method, before, after))

    return run


def connections(lab: Lab, device: str) -> set[str]:
    """The peers of the TCP connections established to the device's management port (SSH or
    HTTPS), seen from inside its namespace: a new session is a new peer port."""
    dev = th.target(lab, device).device
    port = dev.https.port if dev.https is not None else dev.ssh.port
    out = netns.run(
        ["ss", "-Htn", "state", "established", "sport", "=", f":{port}"],
        netns=lab.bp.device_ns[device],
    ).stdout
    return {m.group(1) for m in re.finditer(r"\s(\S+:\d+)\s*$", out, re.MULTILINE)}


def has_sshd(lab: Lab, device: str) -> bool:
    return (lab.state.dir / device / "sshd.log").exists()


def test_warm_change_on_every_device_opens_no_session(lab: Lab) -> None:
    """Change, read back and undo on all 21 devices through warm sessions: every device succeeds,
    each keeps the one TCP connection it had after warm-up, and no sshd logs a new login."""
    names = [d.name for _, d in lab.inv.devices()]
    assert len(names) == 21
    assert {str(d.platform) for _, d in lab.inv.devices()} >= {
        "linux_nftables", "fortigate", "stormshield", "cisco_ios", "cisco_iosxe", "aruba_aoscx",
        "juniper_junos",
    }  # fmt: skip
    ssh = [n for n in names if has_sshd(lab, n)]
    # a session another test left behind (an agent it SIGKILLed: the device keeps the half-open
    # connection until its keepalive gives up) is not ours: only connections made from here count
    others = {n: connections(lab, n) for n in names}
    with Pool(lab.inv, keepalive=None) as pool:
        assert [o.device for o in pool.warm(names) if not o.ok] == []
        before = {n: logins(lab, n) for n in ssh}
        warm = {n: connections(lab, n) - others[n] for n in names}
        assert {n for n, peers in warm.items() if len(peers) != 1} == set(), warm
        try:
            done = pool.run_many(names, change(lab, undo=False))
            assert [f"{o.device}: {o.error}" for o in done if not o.ok] == []
        finally:
            undone = pool.run_many(names, change(lab, undo=True))
        assert [f"{o.device}: {o.error}" for o in undone if not o.ok] == []
        assert {n: connections(lab, n) - others[n] for n in names} == warm
        assert {n: logins(lab, n) for n in ssh} == before
    sw = "bz1-sw1"
    assert all(th.link_up(lab, sw, p) for p in ports(lab, sw))
    assert th.nft_table(lab, "bz2-fw1", "cordon") == ""  # a Linux firewall: its kernel agrees


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


# a Linux firewall, an IOS switch, an IOS-XE switch
@pytest.mark.parametrize("device", ["bz2-fw1", "nts-sw1", "rns-sw2"])
def test_session_dropped_by_the_device_is_reopened(lab: Lab, device: str) -> None:
    """When the device ends our session (its sshd session process killed), the next pooled use
    reconnects with a new login and succeeds."""
    sshd = sshd_of(lab, device)
    assert is_running(sshd)
    others = set(session_children(sshd))  # sessions another test's killed agent left behind
    with Pool(lab.inv, keepalive=None, probe_after=0.0) as pool:
        pool.run(device, lambda d: d.facts())
        children = [c for c in session_children(sshd) if c not in others]
        assert len(children) == 1  # the pool's one session
        before = logins(lab, device)
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        facts = pool.run(device, lambda d: d.facts())
        assert facts.interface(th.target(lab, device).device.management.interface) is not None
        assert logins(lab, device) == before + 1
    assert is_running(sshd)

"""A device cut off from management (its mgmt link down in the twin) gives a DeviceTimeout naming
it and its address, within the configured bound, over its own session (SSH, or HTTPS for a
FortiGate) and SNMP, cold or on a warm pooled session, while every other device still answers;
once the link is back the pool reconnects on its own. The HTTPS transport words a silent or
refusing device as the SSH one does."""

from __future__ import annotations

import errno
import http.client

import pytest

from agent.drivers import Driver, Facts, Pool, Target, Timeouts, tls
from agent.errors import ConnectError, DeviceTimeout
from agent.inventory import load
from agent.platforms.registry import one_shot
from tests.conftest import EXAMPLE
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab

CUT_FW, CUT_SW = "stn-fw1", "nts-sw1"  # a FortiGate (HTTPS API) and an IOS switch (SSH)


@pytest.mark.parametrize(
    ("raised", "kind", "text"),
    [
        (TimeoutError("timed out"), DeviceTimeout, "no answer from 198.19.0.42 (HTTPS port 443) "
         "within 3 s"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), DeviceTimeout,
         "no answer from 198.19.0.42 (HTTPS port 443): no route to host"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ConnectError,
         "198.19.0.42 (HTTPS port 443) refused"),
    ],
)  # fmt: skip
def test_https_connect_failures_are_worded_like_ssh(
    monkeypatch: pytest.MonkeyPatch, raised: OSError, kind: type[ConnectError], text: str
) -> None:
    """No answer, no route (ARP gave up) and a refusal name the device, its address and port;
    the first two are DeviceTimeouts with the SSH transport's hint (no socket is opened here)."""

    def fail(self: http.client.HTTPSConnection) -> None:
        raise raised

    monkeypatch.setattr(http.client.HTTPSConnection, "connect", fail)
    with pytest.raises(ConnectError) as info:
        tls.connect(Target.of(load(EXAMPLE), CUT_FW), 3.0)
    assert type(info.value) is kind
    assert str(info.value).startswith(f"{CUT_FW}: connect: {text}")
    if kind is DeviceTimeout:
        assert info.value.hint == "check the management path to the device (link, route, ACL)"


def facts(driver: Driver) -> Facts:
    return driver.facts()


@pytest.mark.twin
def test_cut_off_device_times_out_and_the_others_answer(lab: Lab) -> None:
    """Cold connections to all 21 devices in parallel: the cut one is a DeviceTimeout naming
    device and operation, every other device returns its facts."""
    names = [d.name for _, d in lab.inv.devices()]
    with (
        th.management_cut(lab, CUT_FW),
        Pool(lab.inv, timeouts=Timeouts(connect=10.0), keepalive=None) as pool,
    ):
        outcomes = pool.run_many(names, facts)
    by = {o.device: o for o in outcomes}
    err = by[CUT_FW].error
    assert isinstance(err, DeviceTimeout)
    assert (err.device, err.operation) == (CUT_FW, "connect")
    assert "no answer from 198.19.0.42" in err.message  # the bound, or ARP giving up first
    others = [o for o in outcomes if o.device != CUT_FW]
    assert len(others) == 20
    assert [o.device for o in others if not o.ok] == []
    assert all(o.value is not None and o.value.interfaces for o in others)


@pytest.mark.twin
def test_snmp_to_a_cut_off_device_times_out(lab: Lab) -> None:
    """SNMP to the cut device is a DeviceTimeout after its retries; its neighbour answers."""
    bound = Timeouts(snmp=1.0, snmp_retries=1)
    with th.management_cut(lab, CUT_FW):
        with (
            pytest.raises(DeviceTimeout, match=rf"{CUT_FW}: connect: no SNMP answer"),
            one_shot(th.target(lab, CUT_FW), bound, via="snmp"),
        ):
            pass
        with one_shot(th.target(lab, CUT_SW), bound, via="snmp") as drv:
            assert drv.facts().interfaces


@pytest.mark.twin
def test_warm_session_cut_mid_use_times_out_then_reconnects(lab: Lab) -> None:
    """A pooled session whose device is cut raises DeviceTimeout on its next use (command
    bound) while the other pooled devices answer; after the link is back the pool reconnects."""
    names = [CUT_SW, "rns-sw1", "rns-fw1", "stn-sw1"]  # IOS, IOS-XE, FortiGate, AOS-CX
    with Pool(lab.inv, timeouts=Timeouts(connect=10.0, command=5.0), keepalive=None) as pool:
        assert all(o.ok for o in pool.warm(names))
        with th.management_cut(lab, CUT_SW):
            outcomes = pool.run_many(names, facts)
        by = {o.device: o for o in outcomes}
        err = by[CUT_SW].error
        assert isinstance(err, DeviceTimeout) and err.device == CUT_SW
        assert err.operation == "facts" and "within 5 s" in err.message
        assert all(by[n].ok for n in names if n != CUT_SW)
        again = pool.run(CUT_SW, facts)  # a fresh session, opened on demand
        assert again.interface("mgmt0") is not None
        assert [(d, is_open) for d, _, is_open, _ in pool.status() if d == CUT_SW] == [
            (CUT_SW, True)
        ]

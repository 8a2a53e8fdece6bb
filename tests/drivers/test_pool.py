"""The pool keeps sessions warm, reconnects dropped ones, stays within its size, and turns each
device's failure into data in a parallel run; shown with scripted drivers (no device)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    Target,
    Timeouts,
    Via,
)
from agent.drivers.pool import Pool, raise_on_error
from agent.errors import ConnectError, DeviceTimeout
from agent.inventory import load
from agent.inventory.models import Inventory

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "hospi-grand-ouest.yaml"


class FakeDriver:
    """A scripted session: counts connects and pings; `drop()` kills it like a lost TCP link."""

    def __init__(self, target: Target, timeouts: Timeouts, via: Via) -> None:
        self.target = target
        self.via = via
        self.open = False
        self.connects = 0
        self.pings = 0
        self.unreachable = False

    def connect(self) -> None:
        if self.unreachable:
            raise DeviceTimeout(self.target.name, "connect", "no answer")
        self.open = True
        self.connects += 1

    def close(self) -> None:
        self.open = False

    def is_open(self) -> bool:
        return self.open

    def drop(self) -> None:
        self.open = False

    def ping(self) -> None:
        self.pings += 1
        if self.unreachable:
            self.open = False
            raise ConnectError(self.target.name, "ping", "session closed")

    def facts(self) -> Facts:
        return Facts(self.target.name, self.target.device.platform, self.via, ())

    def backup(self) -> Backup:
        raise NotImplementedError

    def apply(self, changes: ChangeSet) -> ApplyResult:
        if not self.open:
            raise ConnectError(self.target.name, "apply", "not connected")
        return ApplyResult(self.target.name, changes.action, changes.commands, "", 0.0)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        return self.facts()


class Factory:
    def __init__(self) -> None:
        self.made: dict[str, FakeDriver] = {}
        self.unreachable: set[str] = set()

    def __call__(self, target: Target, timeouts: Timeouts, via: Via) -> FakeDriver:
        d = FakeDriver(target, timeouts, via)
        d.unreachable = target.name in self.unreachable
        self.made[target.name] = d
        return d


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def test_second_use_reuses_the_warm_session(inv: Inventory) -> None:
    """Two uses of one device connect once: the second pays no handshake."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=None) as pool:
        pool.run("rns-sw1", lambda d: d.facts())
        pool.run("rns-sw1", lambda d: d.apply(ChangeSet(("shutdown",))))
    assert factory.made["rns-sw1"].connects == 1


def test_dropped_session_is_reconnected_on_next_use(inv: Inventory) -> None:
    """A session the device dropped is reopened before it is handed out again."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=None) as pool:
        pool.run("rns-fw1", lambda d: None)
        factory.made["rns-fw1"].drop()
        pool.run("rns-fw1", lambda d: d.apply(ChangeSet(("x",))))
    assert factory.made["rns-fw1"].connects == 2


def test_idle_session_is_probed_before_use(inv: Inventory) -> None:
    """A session idle longer than probe_after is pinged first; a dead one is replaced."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=None, probe_after=0.0) as pool:
        pool.run("rns-fw1", lambda d: None)
        fake = factory.made["rns-fw1"]
        fake.unreachable = True  # the ping fails and closes it...
        fake.open = True
        with pytest.raises(DeviceTimeout):  # ...and the reconnect times out, naming the device
            pool.run("rns-fw1", lambda d: None)
        assert fake.pings == 1


def test_keepalive_pings_idle_sessions(inv: Inventory) -> None:
    """The keepalive thread pings idle sessions on its own."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=0.05) as pool:
        pool.run("core-fw1", lambda d: None)
        deadline = time.monotonic() + 5
        while factory.made["core-fw1"].pings < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert factory.made["core-fw1"].pings >= 2


def test_pool_is_bounded_and_evicts_the_least_recently_used(inv: Inventory) -> None:
    """With max_size 2, a third device closes the idle session used longest ago."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=None, max_size=2) as pool:
        pool.run("rns-fw1", lambda d: None)
        pool.run("rns-sw1", lambda d: None)
        pool.run("rns-fw1", lambda d: None)
        pool.run("rns-sw2", lambda d: None)
        assert sorted(d for d, _, _, _ in pool.status()) == ["rns-fw1", "rns-sw2"]
    assert factory.made["rns-sw1"].open is False


def test_pool_full_of_busy_sessions_times_out(inv: Inventory) -> None:
    """When every slot is busy past the connect bound, the waiter gets a DeviceTimeout."""
    factory = Factory()
    release = threading.Event()
    with Pool(
        inv, factory=factory, keepalive=None, max_size=1, timeouts=Timeouts(connect=0.2)
    ) as pool:
        holder = threading.Thread(target=lambda: pool.run("rns-fw1", lambda d: release.wait(5)))
        holder.start()
        time.sleep(0.05)
        with pytest.raises(DeviceTimeout, match=r"rns-sw1.*busy"):
            pool.run("rns-sw1", lambda d: None)
        release.set()
        holder.join()


def test_parallel_run_keeps_each_failure_as_data(inv: Inventory) -> None:
    """One unreachable device is an Outcome with its error; the others still succeed."""
    factory = Factory()
    factory.unreachable = {"stn-fw1"}
    names = ["rns-fw1", "stn-fw1", "nts-fw1"]
    with Pool(inv, factory=factory, keepalive=None) as pool:
        outcomes = pool.run_many(names, lambda d: d.facts().device)
    by = {o.device: o for o in outcomes}
    assert [o.device for o in outcomes] == names
    assert by["rns-fw1"].ok and by["rns-fw1"].value == "rns-fw1" and by["nts-fw1"].ok
    assert isinstance(by["stn-fw1"].error, DeviceTimeout)
    assert by["stn-fw1"].error.device == "stn-fw1"
    with pytest.raises(DeviceTimeout):
        raise_on_error(outcomes)


def test_snmp_sessions_are_neither_probed_nor_kept_alive(inv: Inventory) -> None:
    """SNMP is connectionless: a probe before use or a keepalive ping would double the cost of
    polling 500 devices and find out nothing the request itself does not."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=0.05, probe_after=0.0) as pool:
        pool.run("rns-sw1", lambda d: None, via="snmp")
        pool.run("rns-fw1", lambda d: None)
        time.sleep(0.3)
        pool.run("rns-sw1", lambda d: None, via="snmp")
        fw = factory.made["rns-fw1"]
        deadline = time.monotonic() + 5
        while fw.pings < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert fw.pings >= 1  # the SSH session is kept alive
    assert factory.made["rns-sw1"].pings == 0


def test_keepalive_skips_a_session_just_used(inv: Inventory) -> None:
    """A session used within the keepalive interval needs no ping."""
    factory = Factory()
    with Pool(inv, factory=factory, keepalive=0.5) as pool:
        end = time.monotonic() + 1.6
        while time.monotonic() < end:
            pool.run("core-fw1", lambda d: None)
            time.sleep(0.05)
    assert factory.made["core-fw1"].pings == 0

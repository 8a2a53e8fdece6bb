"""Tests of agent.lab.netns, .probe and .services: the sandbox rules, then real sockets."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from agent.errors import LabError, SafetyError
from agent.lab import daemons, netns, services
from agent.lab.probe import ContinuousProber, ProbeTarget, Status, probe_tcp
from agent.lab.services import Listener, ServiceSpec

from .conftest import Lab, wait_for

# ----------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize("addr", ["192.0.2.1", "10.0.0.1", "127.0.0.1", "0.0.0.0", "198.20.0.1"])
def test_twin_address_outside_sandbox_is_refused(addr: str) -> None:
    """Any address outside 198.18.0.0/15 raises SafetyError."""
    with pytest.raises(SafetyError):
        netns.check_twin_address(addr)


def test_twin_address_inside_sandbox_is_accepted() -> None:
    """Both /16 halves of 198.18.0.0/15 are twin addresses."""
    assert str(netns.check_twin_address("198.19.255.254")) == "198.19.255.254"


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "x" * 80])
def test_unsafe_namespace_names_are_refused(name: str) -> None:
    """Namespace names cannot escape /run/netns."""
    with pytest.raises(LabError):
        netns.check_name(name)


def test_probe_refuses_outside_destination_before_touching_a_namespace() -> None:
    """A non-twin destination is a SafetyError even when the namespace does not exist."""
    targets = [
        ProbeTarget("cdt-never-created", "198.18.0.1", 80),
        ProbeTarget("cdt-never-created", "192.0.2.1", 80),
    ]
    with pytest.raises(SafetyError):
        probe_tcp(targets, 1.0)
    with pytest.raises(SafetyError):
        ContinuousProber(targets)


def test_probe_refuses_outside_source() -> None:
    """A non-twin source address is refused too."""
    with pytest.raises(SafetyError):
        probe_tcp([ProbeTarget("cdt-x", "198.18.0.1", 80, src="10.1.1.1")], 1.0)


@pytest.mark.parametrize("addr", ["0.0.0.0", "127.0.0.1", "192.0.2.2"])
def test_services_refuse_wildcard_loopback_and_outside(addr: str) -> None:
    """The service process binds twin addresses only."""
    spec = ServiceSpec((Listener("cdt-x", addr, 80, "CORDON x 80"),))
    with pytest.raises(SafetyError):
        services.validate(spec)


def test_service_spec_round_trips() -> None:
    """dump_spec then load_spec gives the same spec."""
    spec = ServiceSpec(
        (Listener("cdt-x", "198.18.0.1", 80, services.banner_for("h", 80)),), ready_file="/r"
    )
    with tempfile.TemporaryDirectory(prefix="cdt-") as tmp:
        services.dump_spec(spec, Path(tmp) / "s.json")
        assert services.load_spec(Path(tmp) / "s.json") == spec


# ----------------------------------------------------------------------------- real namespaces


def _thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


@pytest.mark.twin
def test_blackhole_is_installed_in_root_namespace() -> None:
    """ensure_blackhole leaves a blackhole route for the whole twin range."""
    netns.ensure_blackhole()
    out = netns.run(["ip", "route", "show", "type", "blackhole"]).stdout
    assert "198.18.0.0/15" in out


@pytest.mark.twin
def test_socket_in_reaches_only_its_own_namespace(cdt_bare_lab: Lab) -> None:
    """A socket made for ns A reaches an address that exists only in A; one made for B cannot."""
    a, b = cdt_bare_lab.add_ns(cdt_bare_lab.a), cdt_bare_lab.add_ns(cdt_bare_lab.b)
    netns.run(["ip", "addr", "add", "198.18.9.1/32", "dev", "lo"], netns=a)
    home = _thread_netns()
    with netns.socket_in(a) as server:
        assert _thread_netns() == home
        server.bind(("198.18.9.1", 7000))
        server.listen()
        with netns.socket_in(a) as client:
            client.settimeout(5)
            client.connect(("198.18.9.1", 7000))
        with netns.socket_in(b) as stranger:
            stranger.settimeout(5)
            with pytest.raises(OSError):
                stranger.connect(("198.18.9.1", 7000))
    assert _thread_netns() == home


@pytest.mark.twin
def test_socket_in_switches_only_the_calling_thread(cdt_bare_lab: Lab) -> None:
    """While one thread is inside a namespace, other threads stay where they were."""
    a = cdt_bare_lab.add_ns(cdt_bare_lab.a)
    home = _thread_netns()
    inside = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def worker() -> None:
        with netns.inside(a):
            seen.append(_thread_netns())
            inside.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    assert _thread_netns() == home
    assert seen[0] != home
    release.set()
    t.join()


@pytest.mark.twin
def test_socket_in_refuses_the_root_namespace(cdt_bare_lab: Lab) -> None:
    """A namespace name that points at the root namespace is a SafetyError."""
    name = f"cdt-{cdt_bare_lab.tag}-root"
    try:
        netns.run(["ip", "netns", "attach", name, str(os.getpid())])  # pytest runs in the root ns
        with pytest.raises(SafetyError):
            netns.socket_in(name)
    finally:
        netns.delete(name)  # unmounts the name only
    assert not netns.exists(name)


@pytest.mark.twin
def test_run_names_command_and_stderr(cdt_bare_lab: Lab) -> None:
    """A failing command in a namespace raises LabError quoting the command and its stderr."""
    a = cdt_bare_lab.add_ns(cdt_bare_lab.a)
    with pytest.raises(LabError) as info:
        netns.run(["ip", "link", "show", "nosuchdev"], netns=a)
    assert "nosuchdev" in str(info.value)
    assert "not exist" in str(info.value)


@pytest.mark.twin
def test_missing_namespace_is_a_lab_error() -> None:
    """socket_in on a namespace that does not exist raises LabError."""
    with pytest.raises(LabError):
        netns.socket_in("cdt-never-created-xyz")


# ----------------------------------------------------------------------------- probes + services


def _start_services(lab: Lab, listeners: list[Listener]) -> daemons.DaemonProc:
    spec_path = lab.root / "services.json"
    ready = lab.root / "services.ready"
    services.dump_spec(ServiceSpec(tuple(listeners), str(ready)), spec_path)
    proc = daemons.start_services(spec_path, lab.root)
    lab.track(proc)
    return proc


@pytest.mark.twin
def test_probe_outcomes(cdt_lab: Lab) -> None:
    """ok, refused, wrong-banner, unreachable and timeout are told apart."""
    _start_services(cdt_lab, [Listener(cdt_lab.c, cdt_lab.C_ADDR, 8080, "CORDON c 8080")])
    # a routes 198.18.3.0/24 through b, which drops it silently: a timeout
    netns.run(["ip", "route", "add", "198.18.3.0/24", "via", cdt_lab.B_MGMT], netns=cdt_lab.a)
    netns.run(["ip", "route", "add", "blackhole", "198.18.3.0/24"], netns=cdt_lab.b)
    targets = [
        ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8080, "CORDON c 8080"),
        ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8081),
        ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8080, "CORDON other 8080"),
        ProbeTarget(cdt_lab.a, "198.18.100.1", 80),
        ProbeTarget(cdt_lab.a, "198.18.3.1", 80),
        ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8080, None, src=cdt_lab.A_ADDR),
    ]
    results = probe_tcp(targets, timeout=1.0)
    assert [r.target for r in results] == targets
    assert [r.status for r in results] == [
        Status.OK,
        Status.REFUSED,
        Status.WRONG_BANNER,
        Status.UNREACHABLE,
        Status.TIMEOUT,
        Status.OK,
    ]
    assert "CORDON c 8080" in results[2].detail


@pytest.mark.twin
def test_probe_many_targets_in_one_batch(cdt_lab: Lab) -> None:
    """500 probes over two namespaces and 50 listeners all succeed in one batch."""
    listeners = [
        Listener(cdt_lab.c, cdt_lab.C_ADDR, 9000 + i, f"CORDON c {9000 + i}") for i in range(50)
    ]
    _start_services(cdt_lab, listeners)
    targets = [
        ProbeTarget(ns, cdt_lab.C_ADDR, 9000 + i % 50, f"CORDON c {9000 + i % 50}")
        for ns in (cdt_lab.a, cdt_lab.c)
        for i in range(250)
    ]
    results = probe_tcp(targets, timeout=10.0)
    assert len(results) == 500
    assert [r for r in results if not r.ok] == []


@pytest.mark.twin
def test_services_process_stops_cleanly(cdt_lab: Lab) -> None:
    """SIGTERM ends the service process, its listeners close and its ready file goes."""
    proc = _start_services(cdt_lab, [Listener(cdt_lab.c, cdt_lab.C_ADDR, 8080, "CORDON c 8080")])
    target = ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8080, "CORDON c 8080")
    assert probe_tcp([target], 2.0)[0].ok
    assert daemons.stop(proc)
    assert not Path(proc.pidfile).exists()
    assert probe_tcp([target], 2.0)[0].status is Status.REFUSED
    assert daemons.stop(proc) is False


@pytest.mark.twin
def test_services_refuse_an_address_the_namespace_lacks(cdt_lab: Lab) -> None:
    """Binding a twin address not configured in the namespace fails the start, loudly."""
    with pytest.raises(LabError) as info:
        _start_services(cdt_lab, [Listener(cdt_lab.c, "198.18.77.7", 8080, "CORDON c 8080")])
    assert "cannot bind" in str(info.value)


@pytest.mark.twin
def test_continuous_prober_records_an_outage(cdt_lab: Lab) -> None:
    """Taking the link to c down and up shows as failed probes with a first-failure time."""
    _start_services(cdt_lab, [Listener(cdt_lab.c, cdt_lab.C_ADDR, 8080, "CORDON c 8080")])
    target = ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, 8080, "CORDON c 8080")
    mgmt = ProbeTarget(cdt_lab.a, cdt_lab.B_MGMT, 9, None)
    with ContinuousProber([target, mgmt], interval=0.05, timeout=0.5) as prober:
        wait_for(lambda: prober.stats()[target].sent >= 3, "healthy probes")
        assert prober.stats()[target].failed == 0
        # b's eth1, not c's eth0: a link going down flushes the kernel routes through it
        netns.run(["ip", "link", "set", "eth1", "down"], netns=cdt_lab.b)
        wait_for(lambda: prober.stats()[target].failed >= 2, "failed probes")
        netns.run(["ip", "link", "set", "eth1", "up"], netns=cdt_lab.b)
        wait_for(lambda: _last_ok(prober, target), "recovery")
        stats = prober.stop()
    assert stats[target].failed >= 2
    assert stats[target].first_failure_at is not None
    first = stats[target].first_failure
    assert first is not None
    assert first.status is not Status.OK
    assert stats[mgmt].failed == stats[mgmt].sent  # port 9 on b: refused every time


def _last_ok(prober: ContinuousProber, target: ProbeTarget) -> bool:
    last = prober.stats()[target].last
    return last is not None and last.ok


def test_socket_module_is_untouched() -> None:
    """The library does not monkey-patch socket creation."""
    assert socket.socket.__module__ == "socket"


@pytest.mark.twin
def test_prober_that_breaks_says_so(cdt_bare_lab: Lab) -> None:
    """If a probing namespace disappears, stop() raises instead of reporting zero failures."""
    a = cdt_bare_lab.add_ns(cdt_bare_lab.a)
    prober = ContinuousProber([ProbeTarget(a, "198.18.1.1", 80)], interval=0.05, timeout=0.2)
    with prober:
        wait_for(lambda: prober.rounds >= 1, "a first round")
        netns.delete(a)
        wait_for(lambda: prober.error is not None, "the prober to notice")
        with pytest.raises(LabError):
            prober.stop()

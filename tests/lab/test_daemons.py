"""Tests of agent.lab.daemons: each real daemon's effect, seen with real packets and sessions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netmiko import ConnectHandler

from agent.errors import LabError, SafetyError
from agent.lab import daemons, netns, services
from agent.lab.probe import ContinuousProber, ProbeStats, ProbeTarget, probe_tcp
from agent.lab.services import Listener, ServiceSpec

from .conftest import Keys, Lab, PtySession, link_is_up, ssh_argv, wait_for

pytestmark = pytest.mark.twin

SNMP_USER = "cordon"
AUTH = "auth-pass-123"
PRIV = "priv-pass-456"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
# snmpInASNParseErrs: net-snmp decrypts with the wrong key, fails to parse, drops, answers nothing
PARSE_ERRORS = "1.3.6.1.2.1.11.6.0"


def _flow(lab: Lab) -> ProbeTarget:
    """The a -> c flow crossing b's eth1, served by the service process."""
    spec_path = lab.root / "services.json"
    ready = lab.root / "services.ready"
    banner = services.banner_for("host-c", 8080)
    spec = ServiceSpec((Listener(lab.c, lab.C_ADDR, 8080, banner),), str(ready))
    services.dump_spec(spec, spec_path)
    lab.track(daemons.start_services(spec_path, lab.root))
    return ProbeTarget(lab.a, lab.C_ADDR, 8080, banner)


def _switch(lab: Lab, keys: Keys) -> list[daemons.DaemonProc]:
    """b as an IOS-style switch: zebra, and sshd whose only command is vtysh."""
    node = lab.node_dir("b")
    procs = daemons.start_frr(lab.b, node, "sw-b", lab.pathspace)
    lab.track(*procs)
    sshd = daemons.start_sshd(
        lab.b,
        node,
        "sw-b",
        lab.B_MGMT,
        host_key_path=Path(keys.host.path),
        authorized_keys_path=keys.authorized_keys,
        force_command=daemons.vtysh_force_command(lab.pathspace),
    )
    lab.track(sshd)
    return [*procs, sshd]


def _snmpd(lab: Lab) -> daemons.DaemonProc:
    proc = daemons.start_snmpd(
        lab.b, lab.node_dir("b"), "sw-b", lab.B_MGMT, user=SNMP_USER, auth_pass=AUTH, priv_pass=PRIV
    )
    lab.track(proc)
    return proc


def _snmp(lab: Lab, tool: str, *args: str, priv: str = PRIV) -> subprocess.CompletedProcess[str]:
    """net-snmp CLI from inside namespace a, with its own persistent dir (nothing in /var/lib)."""
    persist = lab.node_dir("snmp-client")
    argv = [
        "env", "MIBS=", f"SNMP_PERSISTENT_DIR={persist}", f"SNMPCONFPATH={persist}",
        tool, "-v3", "-l", "authPriv", "-u", SNMP_USER, "-a", "SHA", "-A", AUTH,
        "-x", "AES", "-X", priv, "-On", "-t", "1", "-r", "1", lab.B_MGMT, *args,
    ]  # fmt: skip
    return netns.run(argv, netns=lab.a, check=False)


def _ifindex(ns: str, dev: str) -> int:
    out = netns.run(["ip", "-o", "link", "show", dev], netns=ns).stdout
    return int(out.split(":", 1)[0])


@pytest.fixture
def prober(cdt_lab: Lab) -> Iterator[tuple[ContinuousProber, ProbeTarget]]:
    target = _flow(cdt_lab)
    p = ContinuousProber([target], interval=0.05, timeout=0.5)
    with p:
        wait_for(lambda: p.stats()[target].sent >= 3, "first probes")
        yield p, target


def _outage_seen(stats: ProbeStats) -> bool:
    return stats.failed > 0 and stats.last is not None and not stats.last.ok


def _recovered(p: ContinuousProber, target: ProbeTarget) -> bool:
    last = p.stats()[target].last
    return last is not None and last.ok


# ----------------------------------------------------------------------------- sshd


def test_ssh_with_pinned_host_key_and_authorized_client(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """A Linux-style sshd accepts the authorized key when the host key matches the pin."""
    node = cdt_lab.node_dir("b")
    proc = daemons.start_sshd(
        cdt_lab.b,
        node,
        "fw-b",
        cdt_lab.B_MGMT,
        host_key_path=Path(cdt_keys.host.path),
        authorized_keys_path=cdt_keys.authorized_keys,
    )
    cdt_lab.track(proc)
    argv = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT)
    done = netns.run([*argv, 'hostname; echo "pyenv=${PYENV_ROOT:-none}"'], netns=cdt_lab.a)
    # its own UTS host name; SetEnv SHLVL=1 keeps bash from sourcing root's .bashrc (pyenv init)
    assert done.stdout.split() == ["fw-b", "pyenv=none"]


def test_twenty_parallel_logins_succeed(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """MaxStartups lets 20 simultaneous key logins through to vtysh."""
    _switch(cdt_lab, cdt_keys)
    argv = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT)
    cmd = ["ip", "netns", "exec", cdt_lab.a, *argv, "show version"]
    runs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(20)
    ]
    outputs = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0] * 20, [err for _, err in outputs if err]
    assert all("FRRouting" in out for out, _ in outputs)


def test_ssh_refuses_unknown_client_and_wrong_pin(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """A key not in authorized_keys is refused (and logged); a changed host key is not trusted."""
    node = cdt_lab.node_dir("b")
    proc = daemons.start_sshd(
        cdt_lab.b,
        node,
        "fw-b",
        cdt_lab.B_MGMT,
        host_key_path=Path(cdt_keys.host.path),
        authorized_keys_path=cdt_keys.authorized_keys,
    )
    cdt_lab.track(proc)
    stranger = ssh_argv(Path(cdt_keys.stranger.path), cdt_keys.known_hosts, cdt_lab.B_MGMT)
    done = netns.run([*stranger, "true"], netns=cdt_lab.a, check=False)
    assert done.returncode == 255
    assert "Permission denied" in done.stderr
    assert cdt_keys.stranger.fingerprint in Path(proc.logfile).read_text()
    wrong_pin = cdt_lab.node_dir("keys") / "wrong_known_hosts"
    wrong_pin.write_text(cdt_keys.stranger.known_hosts_line(cdt_lab.B_MGMT) + "\n")
    client = ssh_argv(Path(cdt_keys.client.path), wrong_pin, cdt_lab.B_MGMT)
    done = netns.run([*client, "true"], netns=cdt_lab.a, check=False)
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr


def test_sshd_refuses_a_non_twin_listen_address(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """sshd is only ever bound to a twin address."""
    with pytest.raises(SafetyError):
        daemons.start_sshd(
            cdt_lab.b,
            cdt_lab.node_dir("b"),
            "fw-b",
            "0.0.0.0",
            host_key_path=Path(cdt_keys.host.path),
            authorized_keys_path=cdt_keys.authorized_keys,
        )


def test_host_key_fingerprint_matches_ssh_keygen(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """The fingerprint helper agrees with `ssh-keygen -l -E sha256`."""
    out = netns.run(["ssh-keygen", "-l", "-E", "sha256", "-f", cdt_keys.host.path + ".pub"])
    assert out.stdout.split()[1] == cdt_keys.host.fingerprint
    assert oct(os.stat(cdt_keys.host.path).st_mode & 0o777) == "0o600"


# ----------------------------------------------------------------------------- FRR / vtysh


def test_vtysh_shutdown_takes_the_kernel_link_down_and_cuts_the_flow(
    cdt_lab: Lab, cdt_keys: Keys, prober: tuple[ContinuousProber, ProbeTarget]
) -> None:
    """`interface eth1` + `shutdown` in vtysh downs the kernel link; `no shutdown` restores it."""
    p, target = prober
    _switch(cdt_lab, cdt_keys)
    assert "sw-b" in daemons.vtysh(cdt_lab.b, cdt_lab.pathspace, "show running-config")
    daemons.vtysh(cdt_lab.b, cdt_lab.pathspace, "configure terminal", "interface eth1", "shutdown")
    assert not link_is_up(cdt_lab.b, "eth1")
    wait_for(lambda: _outage_seen(p.stats()[target]), "the flow through eth1 to fail")
    daemons.vtysh(
        cdt_lab.b, cdt_lab.pathspace, "configure terminal", "interface eth1", "no shutdown"
    )
    assert link_is_up(cdt_lab.b, "eth1")
    wait_for(lambda: _recovered(p, target), "the flow to recover")
    assert p.stop()[target].first_failure_at is not None


def test_staticd_route_is_reinstalled_after_a_shutdown_cycle(cdt_lab: Lab) -> None:
    """With staticd, an FRR static route comes back after shutdown/no shutdown (a plain
    `ip route` through that link would be flushed for good)."""
    procs = daemons.start_frr(
        cdt_lab.b, cdt_lab.node_dir("b"), "sw-b", cdt_lab.pathspace, staticd=True
    )
    cdt_lab.track(*procs)
    assert [p.kind for p in procs] == ["staticd", "zebra"]
    ps = cdt_lab.pathspace
    daemons.vtysh(cdt_lab.b, ps, "configure terminal", f"ip route 198.18.50.0/24 {cdt_lab.C_ADDR}")

    def routed() -> bool:
        out = netns.run(["ip", "route", "show", "198.18.50.0/24"], netns=cdt_lab.b).stdout
        return f"via {cdt_lab.C_ADDR}" in out

    wait_for(routed, "the static route in the kernel")
    daemons.vtysh(cdt_lab.b, ps, "configure terminal", "interface eth1", "shutdown")
    wait_for(lambda: not routed(), "the route to leave with the link")
    daemons.vtysh(cdt_lab.b, ps, "configure terminal", "interface eth1", "no shutdown")
    wait_for(routed, "the route to come back")


def test_vtysh_rejects_unknown_commands(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """A command FRR does not know raises LabError with FRR's `% Unknown command`."""
    _switch(cdt_lab, cdt_keys)
    with pytest.raises(LabError) as info:
        daemons.vtysh(cdt_lab.b, cdt_lab.pathspace, "configure terminal", "frobnicate")
    assert "Unknown command" in str(info.value)


def test_ios_style_cli_over_ssh_tty(
    cdt_lab: Lab, cdt_keys: Keys, prober: tuple[ContinuousProber, ProbeTarget]
) -> None:
    """`ssh -tt` gets the switch's prompt; show/configure/interface/shutdown/end really work."""
    p, target = prober
    _switch(cdt_lab, cdt_keys)
    argv = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT, "-tt")
    session = PtySession(["ip", "netns", "exec", cdt_lab.a, *argv])
    cdt_lab.ptys.append(session)
    session.expect(r"sw-b# ")
    session.send("show interface brief")
    listing = session.expect(r"sw-b# ")
    assert re.search(r"eth1\s+up", listing), listing
    session.send("configure terminal")
    session.expect(r"sw-b\(config\)# ")
    session.send("interface eth1")
    session.expect(r"sw-b\(config-if\)# ")
    session.send("shutdown")
    session.expect(r"sw-b\(config-if\)# ")
    session.send("end")
    session.expect(r"sw-b# ")
    assert not link_is_up(cdt_lab.b, "eth1")
    wait_for(lambda: _outage_seen(p.stats()[target]), "the flow through eth1 to fail")
    session.send("show interface brief")
    assert re.search(r"eth1\s+down", session.expect(r"sw-b# "))
    for line, wait in (
        ("configure terminal", r"\(config\)# "),
        ("interface eth1", r"\(config-if\)# "),
        ("no shutdown", r"\(config-if\)# "),
        ("end", r"sw-b# "),
    ):
        session.send(line)
        session.expect(wait)
    assert link_is_up(cdt_lab.b, "eth1")
    wait_for(lambda: _recovered(p, target), "the flow to recover")
    session.send("exit")
    assert session.proc.wait(30) == 0


def test_vtysh_exec_request_runs_the_command(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """`ssh switch 'show version'` (no TTY) runs that command instead of reading stdin."""
    _switch(cdt_lab, cdt_keys)
    argv = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT)
    out = netns.run([*argv, "show version"], netns=cdt_lab.a).stdout
    assert "FRRouting" in out


def test_netmiko_cisco_ios_through_a_socket_made_in_the_namespace(
    cdt_lab: Lab, cdt_keys: Keys
) -> None:
    """netmiko cisco_ios, over a TCP socket created inside ns a, shuts a port with host-key pin."""
    _switch(cdt_lab, cdt_keys)
    sock = netns.socket_in(cdt_lab.a)
    sock.settimeout(30)
    sock.connect((cdt_lab.B_MGMT, 22))
    conn = ConnectHandler(
        device_type="cisco_ios",
        host=cdt_lab.B_MGMT,
        username="root",
        use_keys=True,
        key_file=cdt_keys.client.path,
        allow_agent=False,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(cdt_keys.known_hosts),
        sock=sock,
        conn_timeout=30,
    )
    try:
        assert conn.find_prompt() == "sw-b#"
        conn.send_config_set(
            ["interface eth1", "shutdown"], error_pattern=r"% (Unknown command|Invalid input)"
        )
        assert not link_is_up(cdt_lab.b, "eth1")
        conn.send_config_set(["interface eth1", "no shutdown"])
        assert link_is_up(cdt_lab.b, "eth1")
    finally:
        conn.disconnect()
        sock.close()


# ----------------------------------------------------------------------------- snmpd


def test_snmp_set_admin_down_cuts_the_flow_and_up_restores_it(
    cdt_lab: Lab, prober: tuple[ContinuousProber, ProbeTarget]
) -> None:
    """An SNMPv3 authPriv SET of ifAdminStatus=2 on b's eth1 takes it down; 1 brings it back."""
    p, target = prober
    _snmpd(cdt_lab)
    index = _ifindex(cdt_lab.b, "eth1")
    oid = f"{IF_ADMIN}.{index}"
    got = _snmp(cdt_lab, "snmpget", "1.3.6.1.2.1.1.5.0", oid)
    assert got.returncode == 0, got.stderr
    assert '"sw-b"' in got.stdout
    assert f"{oid} = INTEGER: 1" in got.stdout
    done = _snmp(cdt_lab, "snmpset", oid, "i", "2")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not link_is_up(cdt_lab.b, "eth1"), "eth1 to go down")
    wait_for(lambda: _outage_seen(p.stats()[target]), "the flow through eth1 to fail")
    wait_for(  # read-back lags ~2 s (snmpd's ifTable cache): poll
        lambda: f"{oid} = INTEGER: 2" in _snmp(cdt_lab, "snmpget", oid).stdout, "read-back of 2"
    )
    done = _snmp(cdt_lab, "snmpset", oid, "i", "1")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: link_is_up(cdt_lab.b, "eth1"), "eth1 to come back")
    wait_for(lambda: _recovered(p, target), "the flow to recover")


def test_snmp_wrong_privacy_passphrase_and_community_are_refused(cdt_lab: Lab) -> None:
    """A wrong priv passphrase gets no answer (counted as a parse error); v2c gets nothing."""
    _snmpd(cdt_lab)
    before = _counter(_snmp(cdt_lab, "snmpget", PARSE_ERRORS).stdout)
    bad = _snmp(cdt_lab, "snmpget", "1.3.6.1.2.1.1.5.0", priv="not-the-pass")
    assert bad.returncode != 0
    assert "sw-b" not in bad.stdout
    after = _counter(_snmp(cdt_lab, "snmpget", PARSE_ERRORS).stdout)
    assert after > before
    persist = cdt_lab.node_dir("snmp-client")
    v2c_argv = ["env", "MIBS=", f"SNMP_PERSISTENT_DIR={persist}", "snmpget", "-v2c", "-c", "public"]
    v2c_argv += ["-t", "0.5", "-r", "0", cdt_lab.B_MGMT, "1.3.6.1.2.1.1.5.0"]
    v2c = netns.run(v2c_argv, netns=cdt_lab.a, check=False)
    assert v2c.returncode != 0
    assert "Timeout" in v2c.stderr


def _counter(text: str) -> int:
    m = re.search(r"Counter32: (\d+)", text)
    assert m is not None, text
    return int(m.group(1))


_PYSNMP_SCRIPT = """
import asyncio, sys
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget, UsmUserData,
    usmAesCfb128Protocol, usmHMACSHAAuthProtocol, get_cmd, set_cmd,
)
from pysnmp.proto.rfc1902 import Integer

host, user, auth, priv, oid = sys.argv[1:6]

async def main() -> None:
    engine = SnmpEngine()
    usm = UsmUserData(user, auth, priv, authProtocol=usmHMACSHAAuthProtocol,
                      privProtocol=usmAesCfb128Protocol)
    target = await UdpTransportTarget.create((host, 161), timeout=2, retries=1)
    err, status, _, binds = await set_cmd(engine, usm, target, ContextData(),
                                          ObjectType(ObjectIdentity(oid), Integer(2)))
    print("set", err, status.prettyPrint() if status else 0)
    err, status, _, binds = await get_cmd(engine, usm, target, ContextData(),
                                          ObjectType(ObjectIdentity("1.3.6.1.2.1.1.5.0")))
    print("sysName", binds[0][1].prettyPrint() if binds else err)
    engine.close_dispatcher()

asyncio.run(main())
"""


def test_pysnmp_set_from_inside_the_namespace(cdt_lab: Lab) -> None:
    """pysnmp 7 (the agent's driver library), run inside ns a, SETs ifAdminStatus=2 for real."""
    _snmpd(cdt_lab)
    index = _ifindex(cdt_lab.b, "eth1")
    script = cdt_lab.root / "pysnmp_set.py"
    script.write_text(textwrap.dedent(_PYSNMP_SCRIPT))
    argv = [
        sys.executable,
        str(script),
        cdt_lab.B_MGMT,
        SNMP_USER,
        AUTH,
        PRIV,
        f"{IF_ADMIN}.{index}",
    ]
    done = netns.run(argv, netns=cdt_lab.a, timeout=60)
    assert "set None 0" in done.stdout, done.stdout + done.stderr
    assert "sysName sw-b" in done.stdout
    wait_for(lambda: not link_is_up(cdt_lab.b, "eth1"), "eth1 to go down")


# ----------------------------------------------------------------------------- stop()


def test_stop_leaves_no_process_even_with_an_open_session(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """stop() ends each daemon and its children (a live ssh session); a second stop() is a no-op."""
    procs = [*_switch(cdt_lab, cdt_keys), _snmpd(cdt_lab)]
    argv = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT, "-tt")
    session = PtySession(["ip", "netns", "exec", cdt_lab.a, *argv])
    cdt_lab.ptys.append(session)
    session.expect(r"sw-b# ")
    assert len(netns.pids(cdt_lab.b)) > len(procs)  # sshd session processes and vtysh too
    records = [daemons.DaemonProc.from_dict(p.as_dict()) for p in procs]
    assert records == procs  # what the lab state persists is enough to stop them
    for rec in records:
        assert daemons.stop(rec) is True
    assert netns.pids(cdt_lab.b) == []
    assert not any(Path(f"/proc/{p.pid}").exists() and daemons.is_running(p) for p in procs)
    assert not daemons.frr_dir(cdt_lab.pathspace).exists()
    assert not any(Path(p.pidfile).exists() for p in procs)
    assert [daemons.stop(rec) for rec in records] == [False] * len(records)
    assert session.proc.wait(30) is not None


def test_daemon_record_rejects_garbage() -> None:
    """A malformed persisted record is a LabError, not a stop() of some random PID."""
    with pytest.raises(LabError):
        daemons.DaemonProc.from_dict({"name": "x", "pid": "not-a-pid"})


def test_stop_does_not_touch_a_process_with_a_reused_pid(cdt_lab: Lab) -> None:
    """A record whose start time does not match the live PID is left alone."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        fake = daemons.DaemonProc(
            name="cdt/fake", kind="sshd", netns=None, hostname="x", pid=sleeper.pid,
            starttime=1, pidfile="/nonexistent", logfile="/nonexistent",
        )  # fmt: skip
        assert daemons.stop(fake) is False
        time.sleep(0.1)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_frr_pathspace_in_use_is_refused(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """A second FRR instance with the same pathspace is refused; the first keeps running."""
    procs = _switch(cdt_lab, cdt_keys)
    with pytest.raises(LabError):
        daemons.start_frr(cdt_lab.c, cdt_lab.node_dir("c"), "sw-c", cdt_lab.pathspace)
    assert all(daemons.is_running(p) for p in procs)


def test_failed_start_reports_the_daemon_output(cdt_lab: Lab, cdt_keys: Keys) -> None:
    """sshd on an address the namespace does not have fails loudly and leaves nothing running."""
    with pytest.raises(LabError) as info:
        daemons.start_sshd(
            cdt_lab.b,
            cdt_lab.node_dir("b"),
            "fw-b",
            "198.18.99.99",
            host_key_path=Path(cdt_keys.host.path),
            authorized_keys_path=cdt_keys.authorized_keys,
            timeout=5,
        )
    assert "sshd" in str(info.value)
    assert netns.pids(cdt_lab.b) == []


# ----------------------------------------------------------------------------- measurements


@pytest.mark.skipif(os.environ.get("CORDON_LAB_MEASURE") != "1", reason="set CORDON_LAB_MEASURE=1")
def test_measure(cdt_lab: Lab, cdt_keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    """Prints start-up time and RSS of each daemon kind and probe throughput (no assertions)."""
    t = time.perf_counter()
    frr = daemons.start_frr(cdt_lab.b, cdt_lab.node_dir("b"), "sw-b", cdt_lab.pathspace)
    t_frr = time.perf_counter() - t
    cdt_lab.track(*frr)
    t = time.perf_counter()
    sshd = daemons.start_sshd(
        cdt_lab.b,
        cdt_lab.node_dir("b"),
        "sw-b",
        cdt_lab.B_MGMT,
        host_key_path=Path(cdt_keys.host.path),
        authorized_keys_path=cdt_keys.authorized_keys,
        force_command=daemons.vtysh_force_command(cdt_lab.pathspace),
    )
    t_sshd = time.perf_counter() - t
    cdt_lab.track(sshd)
    t = time.perf_counter()
    snmpd = _snmpd(cdt_lab)
    t_snmpd = time.perf_counter() - t
    listeners = [
        Listener(cdt_lab.c, cdt_lab.C_ADDR, 10000 + i, f"CORDON c {i}") for i in range(500)
    ]
    spec_path, ready = cdt_lab.root / "s.json", cdt_lab.root / "s.ready"
    services.dump_spec(ServiceSpec(tuple(listeners), str(ready)), spec_path)
    t = time.perf_counter()
    svc = daemons.start_services(spec_path, cdt_lab.root)
    t_svc = time.perf_counter() - t
    cdt_lab.track(svc)
    targets = [ProbeTarget(cdt_lab.a, cdt_lab.C_ADDR, x.port, x.banner) for x in listeners]
    probe_tcp(targets, 10.0)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        res = probe_tcp(targets, 10.0)
        runs.append(time.perf_counter() - t)
        assert all(r.ok for r in res)
    runs.sort()
    ssh = ssh_argv(Path(cdt_keys.client.path), cdt_keys.known_hosts, cdt_lab.B_MGMT)
    t = time.perf_counter()
    netns.run([*ssh, "show version"], netns=cdt_lab.a)
    t_login = time.perf_counter() - t
    with capsys.disabled():
        print()
        for name, secs, proc in (
            ("zebra", t_frr, frr[0]),
            ("sshd", t_sshd, sshd),
            ("snmpd", t_snmpd, snmpd),
            ("services(500 listeners)", t_svc, svc),
        ):
            print(f"  {name:26s} start {secs * 1000:7.1f} ms   RSS {_rss_kb(proc.pid):6d} kB")
        print(f"  probe 500 targets: median {runs[2] * 1000:.1f} ms = {500 / runs[2]:.0f} probes/s")
        print(f"  ssh exec 'show version' through vtysh ForceCommand: {t_login * 1000:.0f} ms")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1

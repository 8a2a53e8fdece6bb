"""Real daemons of twin devices (sshd, FRR zebra/staticd, snmpd, the service process): start, stop.

Imports the standard library, agent.errors, agent.lab.netns and agent.lab.services (its spec) only;
never netmiko/pysnmp/paramiko.

Each daemon runs in the foreground of its own session, inside its namespace and under
`unshare --uts` with the device's host name, so the PID we get is the daemon's PID. Every start
returns a DaemonProc (PID + start time) for the caller to persist; stop() signals exactly that
process (and its children, e.g. sshd sessions), never anything found by name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent import mtls
from agent.errors import LabError
from agent.lab import netns

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
ZEBRA = "/usr/lib/frr/zebra"
STATICD = "/usr/lib/frr/staticd"
VTYSH = "/usr/bin/vtysh"
SNMPD = "/usr/sbin/snmpd"
UNSHARE = "/usr/bin/unshare"
FRR_RUN = Path("/var/run/frr")
SSHD_PRIVSEP = Path("/run/sshd")

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PATHSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
_SNMP_WORD_RE = re.compile(r"^[A-Za-z0-9_.@%+=:,/-]+$")
_VTYSH_ERROR = re.compile(
    r"^% (Unknown command|Command incomplete|Ambiguous command|Invalid)", re.M
)
_BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class DaemonProc:
    """A daemon the twin started. `name`, `pid`, `starttime` are what the lab state persists.

    `cleanup` lists paths stop() removes after the process is gone (e.g. /var/run/frr/<pathspace>).
    """

    name: str  # "<netns>/<kind>", e.g. "cdt-b/sshd"
    kind: str  # sshd | zebra | staticd | snmpd | services
    netns: str | None
    hostname: str
    pid: int
    starttime: int  # field 22 of /proc/<pid>/stat: guards against PID reuse
    pidfile: str
    logfile: str
    cleanup: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DaemonProc:
        try:
            return cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                netns=None if data.get("netns") is None else str(data["netns"]),
                hostname=str(data["hostname"]),
                pid=int(str(data["pid"])),
                starttime=int(str(data["starttime"])),
                pidfile=str(data["pidfile"]),
                logfile=str(data["logfile"]),
                cleanup=tuple(str(p) for p in _as_list(data.get("cleanup"))),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise LabError(f"invalid daemon record {dict(data)!r}: {exc!r}") from exc


@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair on disk: its public line and its SHA256 fingerprint."""

    path: str  # the private key; the public key is path + ".pub"
    public_line: str  # "ssh-ed25519 AAAA... comment"
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it

    def known_hosts_line(self, host: str, port: int = 22) -> str:
        """A known_hosts line pinning this (host) key for `host` (and `port` if not 22)."""
        where = host if port == 22 else f"[{host}]:{port}"
        kind, blob = self.public_line.split()[:2]
        return f"{where} {kind} {blob}"


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return list(value)


# ----------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of `pid`, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[19])


def _alive(pid: int, starttime: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[2] == starttime and st[0] not in ("Z", "X")


def is_running(proc: DaemonProc) -> bool:
    """True if the exact process we started (same PID and start time) still runs."""
    _reap(proc.pid)
    return _alive(proc.pid, proc.starttime)


def _reap(pid: int) -> None:
    popen = _children.get(pid)
    if popen is not None:
        if popen.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, starttime) of every live descendant of `pid`."""
    parent_of: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[0] not in ("Z", "X"):
                parent_of[int(entry)] = (st[1], st[2])
    found: list[tuple[int, int]] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, (ppid, start) in parent_of.items():
            if ppid == current:
                found.append((child, start))
                frontier.append(child)
    return found


def _wait_gone(procs: Sequence[tuple[int, int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for pid, _ in procs:
            _reap(pid)
        if not any(_alive(pid, start) for pid, start in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _kill(procs: Sequence[tuple[int, int]], sig: signal.Signals) -> None:
    for pid, start in procs:
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def stop(proc: DaemonProc, *, timeout: float = 5.0) -> bool:
    """Stop exactly `proc` (and its descendants): SIGTERM, then SIGKILL after `timeout`.

    Only signals a PID whose start time still matches the record. Idempotent: returns False if
    it was already gone. Removes `proc.cleanup` paths in every case.
    """
    was_running = is_running(proc)
    if was_running:
        family = _descendants(proc.pid)
        main = [(proc.pid, proc.starttime)]
        _kill(main, signal.SIGTERM)
        if not _wait_gone(main, timeout):
            _kill(main, signal.SIGKILL)
        _kill(family, signal.SIGTERM)
        if not _wait_gone(main + family, timeout):
            _kill(main + family, signal.SIGKILL)
            if not _wait_gone(main + family, 2.0):
                raise LabError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")
    _remove_paths(proc)
    return was_running


def _remove_paths(proc: DaemonProc) -> None:
    for raw in proc.cleanup:
        path = Path(raw)
        if path.is_dir() and not path.is_symlink():
            if path.parent != FRR_RUN:
                raise LabError(f"{proc.name}: refusing to remove directory {path}")
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _tail(*paths: Path, lines: int = 8) -> str:
    out: list[str] = []
    for p in paths:
        with contextlib.suppress(OSError):
            out += [f"{p.name}: {x}" for x in p.read_text(errors="replace").splitlines()[-lines:]]
    return "\n".join(out) or "(no output)"


def _launch(
    kind: str,
    ns: str | None,
    hostname: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    out_path: Path,
    pidfile: Path,
    logfile: Path,
    ready: Callable[[int], bool],
    cleanup: Sequence[Path] = (),
    timeout: float = 15.0,
) -> DaemonProc:
    """Start `argv` (in `ns` under its own UTS namespace named `hostname`); wait for `ready`."""
    if ns is not None:
        cmd = [
            "ip", "netns", "exec", ns, UNSHARE, "--uts", "--",
            "/bin/sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv,
        ]  # fmt: skip
    else:
        cmd = list(argv)
    with open(out_path, "ab") as out:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    _children[popen.pid] = popen
    st = _proc_stat(popen.pid)
    proc = DaemonProc(
        name=f"{ns or 'root'}/{kind}",
        kind=kind,
        netns=ns,
        hostname=hostname,
        pid=popen.pid,
        starttime=st[2] if st else 0,
        pidfile=str(pidfile),
        logfile=str(logfile),
        cleanup=tuple(str(p) for p in cleanup),
    )
    deadline = time.monotonic() + timeout
    while True:
        rc = popen.poll()
        if rc is not None:
            _children.pop(popen.pid, None)
            _remove_paths(proc)
            raise LabError(
                f"{proc.name} exited with status {rc} while starting:\n" + _tail(out_path, logfile),
                hint=f"see {out_path} and {logfile}",
            )
        if ready(popen.pid):
            return proc
        if time.monotonic() > deadline:
            stop(proc)
            raise LabError(
                f"{proc.name} not ready within {timeout:g} s:\n" + _tail(out_path, logfile)
            )
        time.sleep(0.005)


def _pidfile_is(pidfile: Path, pid: int) -> bool:
    try:
        return int(pidfile.read_text().split()[0]) == pid
    except (OSError, ValueError, IndexError):
        return False


def _hex_addr(address: str, port: int) -> str:
    (n,) = struct.unpack("=I", socket.inet_aton(address))
    return f"{n:08X}:{port:04X}"


def listening(pid: int, proto: str, address: str, port: int) -> bool:
    """True if `address:port` is bound (TCP: listening) in the network namespace of `pid`."""
    want = _hex_addr(address, port)
    try:
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if fields[1] == want and (proto != "tcp" or fields[3] == "0A"):
            return True
    return False


def _check_host(hostname: str) -> str:
    if not _HOST_RE.match(hostname):
        raise LabError(f"invalid twin host name {hostname!r}")
    return hostname


def _prepare(ns: str, node_dir: Path, hostname: str) -> Path:
    netns.check_name(ns)
    _check_host(hostname)
    if not netns.exists(ns):
        raise LabError(f"namespace {ns} does not exist")
    node_dir.mkdir(parents=True, exist_ok=True)
    return node_dir


# ----------------------------------------------------------------------------- ssh keys


def ssh_key_info(path: Path) -> SshKey:
    """Public line and SHA256 fingerprint of the key whose private half is at `path`."""
    pub = Path(str(path) + ".pub")
    try:
        line = pub.read_text(encoding="ascii").strip()
        blob = base64.b64decode(line.split()[1], validate=True)
    except (OSError, IndexError, ValueError) as exc:
        raise LabError(f"cannot read SSH public key {pub}: {exc}") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return SshKey(str(path), line, f"SHA256:{digest}")


def _gen_key(path: Path, comment: str) -> SshKey:
    if path.exists() or Path(str(path) + ".pub").exists():
        raise LabError(f"SSH key {path} already exists", hint="remove it or reuse it")
    path.parent.mkdir(parents=True, exist_ok=True)
    netns.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    return ssh_key_info(path)


def gen_ssh_host_key(path: Path, comment: str = "cordon-twin-host") -> SshKey:
    """Generate an ed25519 host key at `path` (0600) and `path`.pub."""
    return _gen_key(path, comment)


def gen_client_key(path: Path, comment: str = "cordon-twin-client") -> SshKey:
    """Generate an ed25519 client key at `path` (0600) and `path`.pub."""
    return _gen_key(path, comment)


# ----------------------------------------------------------------------------- sshd


def sshd_config(
    *,
    node_dir: Path,
    listen_addr: str,
    port: int,
    host_key_path: Path,
    authorized_keys_path: Path,
    force_command: str | None,
    max_startups: int = 64,
    subsystems: Sequence[tuple[str, str]] = (),
) -> str:
    """The sshd_config text of one twin instance (pure). `subsystems`: (name, command) pairs
    served besides sftp (a NETCONF device's `netconf`, RFC 6242)."""
    lines = [
        f"ListenAddress {listen_addr}:{port}",
        "AddressFamily inet",
        f"HostKey {host_key_path}",
        f"PidFile {node_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys_path}",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "UseDNS no",
        f"MaxStartups {max_startups}:30:{max_startups * 2}",
        "MaxSessions 16",
        "LoginGraceTime 30",
        "LogLevel VERBOSE",
        "PrintMotd no",
        "PrintLastLog no",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "SetEnv SHLVL=1",
        "Subsystem sftp internal-sftp",
    ]
    for name, command in subsystems:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name) or "\n" in command:
            raise LabError(f"invalid sshd subsystem {name!r}")
        lines.append(f"Subsystem {name} {command}")
    if force_command is not None:
        if "\n" in force_command:
            raise LabError("sshd ForceCommand must be one line")
        lines.append(f"ForceCommand {force_command}")
    return "\n".join(lines) + "\n"


def start_sshd(
    ns: str,
    node_dir: Path,
    hostname: str,
    listen_addr: str,
    *,
    port: int = 22,
    host_key_path: Path,
    authorized_keys_path: Path,
    force_command: str | None = None,
    max_startups: int = 64,
    timeout: float = 15.0,
    subsystems: Sequence[tuple[str, str]] = (),
) -> DaemonProc:
    """Start an OpenSSH sshd in `ns`, listening on `listen_addr:port` only; returns its record.

    Files in `node_dir`: sshd_config, sshd.pid, sshd.log (VERBOSE: auth failures and key
    fingerprints), sshd.out. For an IOS-style device pass force_command=vtysh_force_command(...).
    """
    _prepare(ns, node_dir, hostname)
    netns.check_twin_address(listen_addr, f"sshd listen address of {hostname}")
    for p in (host_key_path, authorized_keys_path):
        if not p.is_file():
            raise LabError(f"sshd for {hostname}: {p} does not exist")
    SSHD_PRIVSEP.mkdir(mode=0o755, exist_ok=True)
    conf = node_dir / "sshd_config"
    conf.write_text(
        sshd_config(
            node_dir=node_dir,
            listen_addr=listen_addr,
            port=port,
            host_key_path=host_key_path,
            authorized_keys_path=authorized_keys_path,
            force_command=force_command,
            max_startups=max_startups,
            subsystems=subsystems,
        ),
        encoding="utf-8",
    )
    netns.run([SSHD, "-t", "-f", str(conf)])
    pidfile, log = node_dir / "sshd.pid", node_dir / "sshd.log"
    pidfile.unlink(missing_ok=True)
    return _launch(
        "sshd",
        ns,
        hostname,
        [SSHD, "-D", "-f", str(conf), "-E", str(log)],
        env=_BASE_ENV,
        out_path=node_dir / "sshd.out",
        pidfile=pidfile,
        logfile=log,
        ready=lambda pid: _pidfile_is(pidfile, pid) and listening(pid, "tcp", listen_addr, port),
        cleanup=[pidfile],
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- FRR


def frr_dir(pathspace: str) -> Path:
    """FRR's per-instance directory: vty sockets, pid files, frr.conf, vtysh.conf."""
    if not _PATHSPACE_RE.match(pathspace):
        raise LabError(f"invalid FRR pathspace {pathspace!r}")
    return FRR_RUN / pathspace


def vtysh_argv(pathspace: str) -> list[str]:
    """argv of a vtysh bound to the FRR instance `pathspace` (add -c COMMAND ... to run some)."""
    d = frr_dir(pathspace)
    return [VTYSH, "-N", pathspace, "--config_dir", str(FRR_RUN), "-H", str(d / "vtysh.history")]


def vtysh_force_command(pathspace: str) -> str:
    """sshd ForceCommand for an IOS-style CLI: interactive vtysh, or `vtysh -c` for exec requests.

    With a PTY (netmiko, `ssh -tt`) vtysh is interactive; `ssh host 'show version'` runs that
    command (vtysh would otherwise read commands from stdin when there is no terminal).
    """
    return (
        "exec "
        + " ".join(vtysh_argv(pathspace))
        + ' ${SSH_ORIGINAL_COMMAND:+-c "$SSH_ORIGINAL_COMMAND"}'
    )


def translating_force_command(
    pathspace: str, names_file: Path, python: str = sys.executable
) -> str:
    """sshd ForceCommand for a switch whose inventory names the kernel cannot take: vtysh behind
    `agent/lab/clifront.py`, which speaks the inventory's names (`names_file`: JSON object
    {inventory name: kernel name}) both ways. Interactive and `ssh host 'cmd'` alike."""
    front = Path(__file__).resolve().parent / "clifront.py"
    return f"exec {python} -I {front} {names_file} -- " + " ".join(vtysh_argv(pathspace))


def vtysh(ns: str, pathspace: str, *commands: str, check: bool = True) -> str:
    """Run vtysh commands (in one session, in order) against the FRR instance; returns output."""
    argv = vtysh_argv(pathspace)
    for c in commands:
        argv += ["-c", c]
    done = netns.run(argv, netns=ns, check=False)
    if check and (done.returncode != 0 or _VTYSH_ERROR.search(done.stdout)):
        raise LabError(f"vtysh in {ns} ({pathspace}): {commands!r} failed: {done.stdout.strip()}")
    return done.stdout


def start_frr(
    ns: str,
    node_dir: Path,
    hostname: str,
    pathspace: str,
    *,
    staticd: bool = False,
    timeout: float = 15.0,
) -> list[DaemonProc]:
    """Start zebra (and staticd if asked) for `ns` as FRR instance `pathspace`.

    /var/run/frr/<pathspace>/ (owned by frr, removed by stop() of zebra) holds the vty sockets,
    pid files, frr.conf (hostname, read by zebra as user frr) and an empty vtysh.conf. Logs and
    stdout go to `node_dir` (zebra opens its log before dropping privileges).
    """
    _prepare(ns, node_dir, hostname)
    d = frr_dir(pathspace)
    if d.exists():
        raise LabError(
            f"FRR pathspace {pathspace} is in use ({d} exists)",
            hint="another twin device holds it, or a crashed lab left it: stop that lab first",
        )
    d.mkdir(mode=0o755)
    shutil.chown(d, "frr", "frr")
    conf = d / "frr.conf"
    conf.write_text(f"frr defaults traditional\nhostname {hostname}\n!\n", encoding="utf-8")
    (d / "vtysh.conf").write_text("", encoding="utf-8")
    for f in (conf, d / "vtysh.conf"):
        shutil.chown(f, "frr", "frr")
        f.chmod(0o640)
    procs: list[DaemonProc] = []
    try:
        for kind, exe, wanted in (("zebra", ZEBRA, True), ("staticd", STATICD, staticd)):
            if not wanted:
                continue
            pidfile, log = d / f"{kind}.pid", node_dir / f"{kind}.log"
            argv = [exe, "-N", pathspace, "-P", "0", "-f", str(conf), "-i", str(pidfile)]
            procs.append(
                _launch(
                    kind,
                    ns,
                    hostname,
                    [*argv, "--log", f"file:{log}"],
                    env=_BASE_ENV,
                    out_path=node_dir / f"{kind}.out",
                    pidfile=pidfile,
                    logfile=log,
                    ready=_frr_ready(pidfile, d / f"{kind}.vty"),
                    cleanup=[d] if kind == "zebra" else [],
                    timeout=timeout,
                )
            )
    except BaseException:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(d, ignore_errors=True)
        raise
    # stop zebra last: its record owns the directory the others live in
    return list(reversed(procs))


def _frr_ready(pidfile: Path, vty: Path) -> Callable[[int], bool]:
    def ready(pid: int) -> bool:
        return _pidfile_is(pidfile, pid) and vty.exists()

    return ready


# ----------------------------------------------------------------------------- snmpd


def snmpd_config(
    *,
    hostname: str,
    listen_addr: str,
    port: int,
    user: str,
    auth_pass: str,
    priv_pass: str,
    if_names: Mapping[int, str] | None = None,
) -> str:
    """snmpd.conf of one twin agent: SNMPv3 authPriv (SHA/AES) read-write user, no community.

    `if_names` (ifIndex -> name) overrides ifName where the twin's kernel had to rename an
    interface: the agent answers `Gi1/0/1` in ifName, as a real switch does, while ifDescr keeps
    the kernel's name (a real switch's ifDescr differs from its ifName too)."""
    for what, value in (
        ("user", user),
        ("auth passphrase", auth_pass),
        ("priv passphrase", priv_pass),
    ):
        if not _SNMP_WORD_RE.match(value):
            raise LabError(
                f"snmpd for {hostname}: {what} contains characters snmpd.conf cannot hold"
            )
    for what, value in (("auth passphrase", auth_pass), ("priv passphrase", priv_pass)):
        if len(value) < 8:
            raise LabError(f"snmpd for {hostname}: {what} must be at least 8 characters")
    return (
        f"agentAddress udp:{listen_addr}:{port}\n"
        f"sysName {hostname}\n"
        "sysLocation cordon digital twin\n"
        "sysContact cordon-lab\n"
        f'createUser {user} SHA "{auth_pass}" AES "{priv_pass}"\n'
        f"rwuser {user} priv\n"
    ) + "".join(
        f'override {IF_NAME_OID}.{index} octet_str "{_if_name(hostname, name)}"\n'
        for index, name in sorted((if_names or {}).items())
    )


IF_NAME_OID = "1.3.6.1.2.1.31.1.1.1.1"
_IF_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./:-]{0,47}$")


def _if_name(hostname: str, name: str) -> str:
    if not _IF_NAME_RE.match(name):
        raise LabError(f"snmpd for {hostname}: interface name {name!r} cannot go in snmpd.conf")
    return name


def start_snmpd(
    ns: str,
    node_dir: Path,
    hostname: str,
    listen_addr: str,
    *,
    user: str,
    auth_pass: str,
    priv_pass: str,
    port: int = 161,
    if_names: Mapping[int, str] | None = None,
    timeout: float = 15.0,
) -> DaemonProc:
    """Start net-snmp snmpd in `ns` on udp `listen_addr:port`, SNMPv3 authPriv only.

    Files in `node_dir`: snmpd.conf (0600: it holds the passphrases), snmpd.pid, snmpd.log,
    snmpd.out, and snmp/ (its SNMP_PERSISTENT_DIR: own engine ID).
    """
    _prepare(ns, node_dir, hostname)
    netns.check_twin_address(listen_addr, f"snmpd listen address of {hostname}")
    conf = node_dir / "snmpd.conf"
    text = snmpd_config(
        hostname=hostname,
        listen_addr=listen_addr,
        port=port,
        user=user,
        auth_pass=auth_pass,
        priv_pass=priv_pass,
        if_names=if_names,
    )
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(text, encoding="utf-8")
    persist = node_dir / "snmp"
    persist.mkdir(mode=0o700, exist_ok=True)
    pidfile, log = node_dir / "snmpd.pid", node_dir / "snmpd.log"
    env = {
        **_BASE_ENV,
        "MIBS": "",
        "SNMP_PERSISTENT_DIR": str(persist),
        "SNMPCONFPATH": str(persist),
    }
    return _launch(
        "snmpd",
        ns,
        hostname,
        [SNMPD, "-f", "-C", "-c", str(conf), "-p", str(pidfile), "-Lf", str(log)],
        env=env,
        out_path=node_dir / "snmpd.out",
        pidfile=pidfile,
        logfile=log,
        ready=lambda pid: listening(pid, "udp", listen_addr, port),
        cleanup=[pidfile],
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- services


def start_services(
    spec_path: Path, state_dir: Path, *, python: str = sys.executable, timeout: float = 15.0
) -> DaemonProc:
    """Start `python -m agent.lab.services SPEC` (root namespace process, twin sockets).

    The spec must name a ready_file; its record is returned once every socket is bound.
    """
    from agent.lab.services import load_spec  # noqa: PLC0415 - keeps daemons importable alone

    spec = load_spec(spec_path)
    if spec.ready_file is None:
        raise LabError(f"service spec {spec_path} has no ready_file")
    ready = Path(spec.ready_file)
    ready.unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    project = Path(__file__).resolve().parents[2]
    env = {**_BASE_ENV, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"}
    return _launch(
        "services",
        None,
        "services",
        [python, "-m", "agent.lab.services", str(spec_path)],
        env=env,
        out_path=state_dir / "services.out",
        pidfile=ready,
        logfile=state_dir / "services.out",
        ready=lambda pid: _pidfile_is(ready, pid),
        cleanup=[ready],
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- emulated APIs


def start_api_server(
    ns: str,
    node_dir: Path,
    hostname: str,
    kind: str,
    module: str,
    args: Sequence[str],
    *,
    address: str,
    port: int,
    timeout: float = 15.0,
) -> DaemonProc:
    """Start `python -m module args...` (a platform twin's emulated management API) in `ns`,
    ready once it listens on `address:port`. It runs with this interpreter, so it imports the
    same package; its output goes to `<node_dir>/<kind>.out`."""
    _prepare(ns, node_dir, hostname)
    root = str(Path(__file__).resolve().parents[2])
    env = {**_BASE_ENV, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}
    log = node_dir / f"{kind}.log"
    return _launch(
        kind,
        ns,
        hostname,
        [sys.executable, "-m", module, *args],
        env=env,
        out_path=node_dir / f"{kind}.out",
        pidfile=node_dir / f"{kind}.pid",
        logfile=log,
        ready=lambda pid: listening(pid, "tcp", address, port),
        timeout=timeout,
    )


def gen_tls_cert(cert_path: Path, key_path: Path, name: str, address: str) -> str:
    """A new self-signed certificate for a twin device's HTTPS (CN `name`, IP SAN `address`)
    and its key, written 0600, replacing the last `lab up`'s (`agent.mtls.new_identity`);
    returns its pin 'sha256:<hex of the DER certificate>'."""
    return mtls.new_identity(
        cert_path, key_path, name, error=LabError, address=address, replace=True
    )

"""Twin namespace primitives: commands in a namespace, the root blackhole, in-namespace sockets.

Imports only the standard library and agent.errors; never netmiko, pysnmp or paramiko.

Safety model: every twin address is in 198.18.0.0/15 (`TWIN_NET`); `ensure_blackhole()` makes the
root namespace drop that range, and `socket_in()` refuses to hand out a socket of the root
namespace, so a probe or a service can only ever talk inside the twin.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agent.errors import LabError, SafetyError

TWIN_NET = ipaddress.IPv4Network("198.18.0.0/15")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_INIT_NETNS = "/proc/1/ns/net"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_switch_lock = threading.RLock()


def check_name(name: str) -> str:
    """Return `name` if it is a safe namespace name (no path separators, no leading dot)."""
    if not _NAME_RE.match(name):
        raise LabError(
            f"invalid namespace name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def check_twin_address(address: str, what: str = "address") -> ipaddress.IPv4Address:
    """Parse `address` and raise SafetyError unless it lies in the twin range 198.18.0.0/15."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise SafetyError(
            f"{what} {address!r} is not an IPv4 address inside the twin range {TWIN_NET}"
        ) from exc
    if ip not in TWIN_NET:
        raise SafetyError(
            f"{what} {address} is outside the twin range {TWIN_NET}",
            hint="twin hosts, services and probe targets only use 198.18.0.0/15",
        )
    return ip


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (in namespace `netns` if given) and return the finished process, text mode.

    `ip ...` commands use `ip -n NS ...`; anything else runs under `ip netns exec NS`.
    With `check`, a non-zero exit raises LabError naming the command and its stderr.
    """
    cmd = list(argv)
    if netns is not None:
        check_name(netns)
        if cmd and cmd[0] in ("ip", "/usr/sbin/ip", "/sbin/ip") and cmd[1:2] != ["netns"]:
            cmd = [cmd[0], "-n", netns, *cmd[1:]]
        else:
            cmd = ["ip", "netns", "exec", netns, *cmd]
    shown = " ".join(cmd)
    try:
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise LabError(f"`{shown}`: program not found ({exc.filename})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{shown}` did not finish within {timeout:g} s") from exc
    if check and done.returncode != 0:
        err = (done.stderr or done.stdout).strip() or "no output"
        raise LabError(f"`{shown}` failed (exit {done.returncode}): {err}")
    return done


def ensure_blackhole() -> None:
    """Make the root namespace drop 198.18.0.0/15, then verify it; SafetyError if unsure.

    Also refuses when a more specific 198.18.0.0/15 route in the root namespace leaves through
    the interface of a default route (that would send twin traffic off the machine).
    """
    run(["ip", "route", "replace", "blackhole", str(TWIN_NET)])
    routes = _json(run(["ip", "-j", "route", "show", "root", str(TWIN_NET)]).stdout)
    if not any(r.get("type") == "blackhole" and r.get("dst") == str(TWIN_NET) for r in routes):
        raise SafetyError(
            f"blackhole route for {TWIN_NET} not present in the root namespace after install"
        )
    defaults = _json(run(["ip", "-j", "route", "show", "default"]).stdout)
    outward = {str(r["dev"]) for r in defaults if "dev" in r}
    for r in routes:
        if r.get("type") == "blackhole":
            continue
        gateway = r.get("gateway")
        if r.get("dev") in outward or (
            isinstance(gateway, str) and ipaddress.ip_address(gateway) not in TWIN_NET
        ):
            raise SafetyError(
                f"root namespace route {r.get('dst')} via {gateway or r.get('dev')} would send "
                "twin traffic off the machine",
                hint="remove that route; twin routes in the root namespace must use a twin veth",
            )


def _json(text: str) -> list[dict[str, object]]:
    text = text.strip()
    if not text:
        return []
    data = json.loads(text)
    if not isinstance(data, list):
        raise LabError(f"unexpected `ip -j` output: {text[:200]}")
    return [d for d in data if isinstance(d, dict)]


def netns_path(name: str) -> Path:
    return NETNS_DIR / check_name(name)


def exists(name: str) -> bool:
    """True if the named network namespace exists (a file under /run/netns)."""
    return netns_path(name).exists()


def create(name: str) -> None:
    """Create namespace `name` with its loopback up; LabError if it already exists."""
    if exists(name):
        raise LabError(
            f"namespace {name} already exists", hint="another lab or agent may hold this name"
        )
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def delete(name: str) -> None:
    """Delete namespace `name`; does nothing if it does not exist."""
    if exists(name):
        run(["ip", "netns", "delete", name])


def pids(name: str) -> list[int]:
    """PIDs of the processes whose network namespace is `name` (empty if it does not exist)."""
    if not exists(name):
        return []
    out = run(["ip", "netns", "pids", name]).stdout
    return [int(p) for p in out.split()]


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Switch the *calling thread* into network namespace `name` for the body, then back.

    Sockets created in the body belong to `name` for life. Only one thread switches at a time.
    Refuses (SafetyError) a namespace that is the machine's root network namespace.
    """
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise LabError(f"network namespace {name} does not exist") from exc
    try:
        _refuse_root(target, name)
        with _switch_lock:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target, f"enter namespace {name}")
                try:
                    yield
                finally:
                    _setns(home, f"return from namespace {name}", fatal=True)
            finally:
                os.close(home)
    finally:
        os.close(target)


def socket_in(
    name: str,
    family: int = socket.AF_INET,
    type: int = socket.SOCK_STREAM,
) -> socket.socket:
    """A new socket that lives in network namespace `name` (created there with setns)."""
    with inside(name):
        return socket.socket(family, type)


def _setns(fd: int, what: str, *, fatal: bool = False) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        msg = f"setns failed to {what}: {os.strerror(err)}"
        if fatal:
            raise SafetyError(msg + "; this thread is left in a twin namespace")
        raise LabError(msg, hint="run as root (CAP_SYS_ADMIN) on Linux")


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        pass
    try:  # readlink may work where stat is denied
        m = re.fullmatch(r"net:\[(\d+)\]", os.readlink(path))
    except OSError:
        return None
    return int(m.group(1)) if m else None


# The namespaces a twin socket must never live in: init's (when readable; a protected PID 1 hides
# it) and the one this process started in, which for the agent is the root namespace.
_FORBIDDEN = {i for i in (_netns_inode(_INIT_NETNS), _netns_inode("/proc/self/ns/net")) if i}


def _refuse_root(fd: int, name: str) -> None:
    if not _FORBIDDEN:
        raise SafetyError(f"cannot tell whether namespace {name} is the root namespace")
    if os.fstat(fd).st_ino in _FORBIDDEN:
        raise SafetyError(
            f"namespace {name} is the root network namespace (or the one this process started "
            "in); twin traffic must stay in the twin"
        )

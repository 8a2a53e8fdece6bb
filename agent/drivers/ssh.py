"""Owns SSH: pinned host keys checked before authenticating, credentials, a persistent shell.
Must not import netmiko, pysnmp, the engine or the CLI; socket and paramiko errors stop here."""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import io
import logging
import re
import resource
import secrets as pysecrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko

from agent.audit.redact import scrub
from agent.drivers.base import Target, Timeouts
from agent.errors import (
    AuthError,
    ConnectError,
    CordonError,
    DeviceError,
    DeviceTimeout,
    HostKeyError,
)
from agent.secrets import resolve

_RSA_ALGOS = ("rsa-sha2-512", "rsa-sha2-256")

# paramiko logs socket errors of closing sessions; without a handler Python would print them on
# stderr. Errors reach the caller as DeviceErrors instead; an application's handlers still apply.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key: 'SHA256:' + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> paramiko.PKey:
    """A public key from 'ssh-ed25519 AAAA... [comment]' (as pinned inline in the inventory)."""
    parts = line.split()
    if len(parts) < 2:
        raise ValueError("a pinned host key is written 'TYPE BASE64 [comment]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the pinned host key's base64 data is invalid") from None
    try:
        return paramiko.PKey.from_type_string(parts[0], blob)
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read pinned host key of type {parts[0]!r}: {exc}") from None


_kh_lock = threading.Lock()
_kh_cache: dict[Path, tuple[tuple[int, int], paramiko.HostKeys]] = {}


def _known_hosts(path: Path) -> paramiko.HostKeys | None:
    """The parsed known_hosts file (cached until it changes); None if it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    with _kh_lock:
        hit = _kh_cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        keys = paramiko.HostKeys()
        keys.load(str(path))
        _kh_cache[path] = (stamp, keys)
        return keys


@dataclass(frozen=True)
class Pins:
    """The host keys a device may present, and where they were pinned (for messages)."""

    keys: tuple[paramiko.PKey, ...]
    source: str


def pinned_keys(target: Target) -> Pins:
    """The device's inline `ssh.host_key`, else its entries in the group known_hosts file."""
    dev = target.device
    if dev.ssh.host_key:
        try:
            return Pins((parse_public_key(dev.ssh.host_key),), "the inventory (ssh.host_key)")
        except ValueError as exc:
            raise HostKeyError(
                target.name, "connect", f"pinned host key unusable: {exc}", expected=None, seen="-"
            ) from None
    if target.known_hosts is None:
        return Pins((), "nowhere (no ssh.host_key, no group known_hosts)")
    keys = _known_hosts(target.known_hosts)
    if keys is None:
        return Pins((), f"{target.known_hosts} (missing)")
    port = dev.ssh.port
    name = target.address if port == 22 else f"[{target.address}]:{port}"
    found = keys.lookup(name)
    return Pins(tuple(found.values()) if found else (), str(target.known_hosts))


def _key_algorithms(keys: tuple[paramiko.PKey, ...]) -> list[str]:
    algos: list[str] = []
    for key in keys:
        for name in _RSA_ALGOS if key.get_name() == "ssh-rsa" else (key.get_name(),):
            if name not in algos:
                algos.append(name)
    return algos


def load_private_key(target: Target) -> paramiko.PKey:
    """The device's SSH client key, resolved from its reference now (never cached)."""
    ref = target.device.ssh.key
    assert ref is not None
    text = resolve(ref, base_dir=target.base_dir, what=f"{target.name}: ssh.key")
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text + "\n"))
        except paramiko.PasswordRequiredException:
            raise AuthError(
                target.name,
                "connect",
                "the SSH client key is encrypted; Cordon needs an unencrypted key file (0600)",
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise AuthError(
        target.name, "connect", "the SSH client key cannot be read (ed25519, ECDSA or RSA)"
    )


def _safe(exc: BaseException) -> str:
    """An exception's text, scrubbed of secrets and shortened, for our own messages."""
    text = scrub(str(exc) or type(exc).__name__)
    return text if len(text) < 300 else text[:300] + "..."


@contextmanager
def translated(target: Target, operation: str, timeout: float) -> Iterator[None]:
    """Turn socket/paramiko errors raised inside the block into the project's DeviceErrors."""
    try:
        yield
    except CordonError:
        raise
    except (TimeoutError, paramiko.buffered_pipe.PipeTimeout):
        raise DeviceTimeout(
            target.name,
            operation,
            f"no answer from {target.address} within {timeout:g} s",
            hint="check the management path to the device (link, route, ACL)",
        ) from None
    except paramiko.AuthenticationException as exc:
        if "timeout" in str(exc).lower():
            raise DeviceTimeout(
                target.name, operation, f"no authentication answer within {timeout:g} s"
            ) from None
        raise AuthError(target.name, operation, f"authentication refused: {_safe(exc)}") from None
    except paramiko.SSHException as exc:
        text = str(exc)
        if "banner" in text.lower() or "timeout" in text.lower():
            raise DeviceTimeout(
                target.name, operation, f"SSH handshake did not finish within {timeout:g} s"
            ) from None
        raise ConnectError(target.name, operation, f"SSH failed: {_safe(exc)}") from None
    except EOFError:
        raise ConnectError(target.name, operation, "the device closed the session") from None
    except ConnectionRefusedError:
        raise ConnectError(
            target.name, operation, f"{target.address}:{target.device.ssh.port} refused"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):  # ours, not the device's
            raise ConnectError(
                target.name,
                operation,
                "this process has no file descriptor left (open-file limit "
                f"{_nofile_soft():,}): {exc.strerror}",
                hint="raise the open-file hard limit (`ulimit -Hn`, LimitNOFILE=) or hold "
                "fewer warm sessions",
            ) from None
        if exc.errno == errno.EHOSTUNREACH:  # nothing answered ARP (or the last router's)
            raise DeviceTimeout(
                target.name,
                operation,
                f"no answer from {target.address}: no route to host (the device or its "
                "management link is down)",
                hint="check the management path to the device (link, route, ACL)",
            ) from None
        raise ConnectError(
            target.name, operation, f"{target.address}: {exc.strerror or _safe(exc)}"
        ) from None


def _nofile_soft() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _tcp(target: Target, timeout: float) -> socket.socket:
    port = target.device.ssh.port
    with translated(target, "connect", timeout):
        return socket.create_connection((target.address, port), timeout=timeout)


def _negotiate(
    target: Target, timeouts: Timeouts, algorithms: list[str] | None
) -> paramiko.Transport:
    sock = _tcp(target, timeouts.connect)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeouts.connect
    transport.handshake_timeout = timeouts.connect
    transport.auth_timeout = timeouts.connect
    if algorithms:
        transport.get_security_options().key_types = algorithms
    try:
        with translated(target, "connect", timeouts.connect):
            transport.start_client(timeout=timeouts.connect)
    except BaseException:
        transport.close()
        raise
    return transport


def open_transport(target: Target, timeouts: Timeouts) -> paramiko.Transport:
    """An authenticated SSH transport to `target` whose host key matched its pin.

    The server's key is compared with the pin after key exchange and before any credential is
    sent; no pin, or another key, raises HostKeyError naming both fingerprints.
    """
    pins = pinned_keys(target)
    algorithms = _key_algorithms(pins.keys)
    try:
        transport = _negotiate(target, timeouts, algorithms or None)
    except ConnectError as exc:
        if not algorithms or isinstance(exc, DeviceTimeout):
            raise
        # The server may hold no key of the pinned type: learn what it presents, then refuse.
        transport = _negotiate(target, timeouts, None)
    try:
        seen = transport.get_remote_server_key()
        if not any(seen == key for key in pins.keys):
            expected = ", ".join(fingerprint(k) for k in pins.keys) or None
            where = f"{target.address}:{target.device.ssh.port}"
            what = (
                f"changed host key: {where} presented another key than the one pinned in "
                if pins.keys
                else f"unknown host key: {where} has no pinned key in "
            )
            raise HostKeyError(
                target.name,
                "connect",
                f"{what}{pins.source}; refusing to authenticate",
                expected=expected,
                seen=f"{seen.get_name()} {fingerprint(seen)}",
            )
        _authenticate(transport, target, timeouts)
    except BaseException:
        transport.close()
        raise
    return transport


def _authenticate(transport: paramiko.Transport, target: Target, timeouts: Timeouts) -> None:
    ssh = target.device.ssh
    if not ssh.username:
        raise AuthError(target.name, "connect", "no SSH username in the inventory")
    if not ssh.key and not ssh.password:
        raise AuthError(target.name, "connect", "no SSH key or password reference")
    with translated(target, "connect", timeouts.connect):
        if ssh.key:
            try:
                transport.auth_publickey(ssh.username, load_private_key(target))
                return
            except paramiko.AuthenticationException:
                if not ssh.password:
                    raise AuthError(
                        target.name,
                        "connect",
                        f"the device refused the SSH key of user {ssh.username!r}",
                        hint="check the key reference and the device's authorized keys",
                    ) from None
        assert ssh.password is not None
        secret = resolve(ssh.password, base_dir=target.base_dir, what=f"{target.name}: ssh")
        try:
            transport.auth_password(ssh.username, secret)
        except paramiko.AuthenticationException:
            raise AuthError(
                target.name, "connect", f"the device refused the password of {ssh.username!r}"
            ) from None


def abort(transport: paramiko.Transport | None) -> None:
    """Drop a session at once, discarding unsent bytes (TCP reset, SO_LINGER 0): commands
    queued for a device we gave up on must never reach it later, when its link comes back."""
    if transport is None:
        return
    sock = transport.sock
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        transport.close()


# --------------------------------------------------------------------------- waiting


def wait_readable(chan: paramiko.Channel, timeout: float) -> bool:
    """Wait up to `timeout` s for `chan` to have data (stdout or stderr), EOF or close; True if
    it does. poll(2), never select(2): select cannot watch a descriptor numbered 1,024 or more
    (ValueError), and a process holding hundreds of warm sessions has those. The descriptor is
    paramiko's channel pipe (made on the first `fileno()`, closed with the channel)."""
    poller = select.poll()  # a plain Python object: no descriptor of its own
    poller.register(chan.fileno(), select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


# --------------------------------------------------------------------------- persistent shell

_SHELL = "exec env LC_ALL=C /bin/sh"


@dataclass(frozen=True)
class Run:
    """One command run in the shell: its exit code and both output streams."""

    command: str
    rc: int
    out: str
    err: str


class Shell:
    """A long-lived `/bin/sh` on one SSH channel: each command costs a round trip, not a new
    session. Exit codes and stderr come back per command (random end markers)."""

    def __init__(self, transport: paramiko.Transport, target: Target, timeouts: Timeouts) -> None:
        self.target = target
        self.timeouts = timeouts
        with translated(target, "connect", timeouts.connect):
            self.chan = transport.open_session(timeout=timeouts.connect)
            self.chan.exec_command(_SHELL)
            self.chan.fileno()  # paramiko's pipe (2 descriptors), made now rather than mid-command

    @property
    def closed(self) -> bool:
        return bool(self.chan.closed or self.chan.exit_status_ready())

    def close(self) -> None:
        self.chan.close()

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        operation: str,
        timeout: float | None = None,
    ) -> Run:
        """Run `command` (shell syntax: the caller quotes), feeding `stdin` through a here-doc."""
        limit = self.timeouts.command if timeout is None else timeout
        token = f"__CORDON_{pysecrets.token_hex(8)}"
        if stdin is not None:
            if any(line.strip() == token for line in stdin.splitlines()):
                raise DeviceError(self.target.name, operation, "stdin holds the end marker")
            body = stdin if stdin.endswith("\n") else stdin + "\n"
            script = f"{command} <<'{token}'\n{body}{token}\n"
        else:
            script = f"{command} </dev/null\n"
        script += f"printf '\\n{token} %d\\n' $?; printf '\\n{token}\\n' >&2\n"
        done_out = re.compile(rf"\n{token} (\d+)\n")
        done_err = f"\n{token}\n".encode()
        out, err = b"", b""
        rc: int | None = None
        err_done = False
        deadline = time.monotonic() + limit
        with translated(self.target, operation, limit):
            if self.closed:
                raise EOFError
            self.chan.sendall(script.encode())
            while rc is None or not err_done:
                while self.chan.recv_ready():
                    out += self.chan.recv(65536)
                while self.chan.recv_stderr_ready():
                    err += self.chan.recv_stderr(65536)
                if rc is None and (m := done_out.search(out.decode("utf-8", "replace"))):
                    rc = int(m.group(1))
                err_done = err_done or done_err in err
                if rc is not None and err_done:
                    break
                if self.closed and not self.chan.recv_ready():
                    raise EOFError
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait_readable(self.chan, min(left, 1.0))
        text = out.decode("utf-8", "replace")
        cut = text.rfind(f"\n{token} ")
        etext = err.decode("utf-8", "replace")
        ecut = etext.rfind(f"\n{token}\n")
        assert rc is not None
        return Run(command, rc, text[:cut], etext[:ecut] if ecut >= 0 else etext)

"""Owns pinned TLS for the drivers of HTTPS management APIs (FortiOS REST, Stormshield serverd,
AOS-CX REST): a device's pin (its inventory `https.certificate`, else its line in the group's
`tls_pins` file), and a connection whose server certificate is checked against that pin before a
single byte of a request (and so of a credential) is sent. Pinning replaces CA validation: a
hospital's appliances carry self-signed or internal-CA certificates, and a CA's word alone would
let anyone it signed for impersonate a firewall.
Imports the driver contract's `Target` and the error tree only; the standard library's `ssl` and
`http.client` carry the traffic."""

from __future__ import annotations

import errno
import hashlib
import http.client
import re
import ssl
from pathlib import Path

from agent.drivers.base import Target
from agent.errors import CertificateError, ConnectError, DeviceTimeout

_HINT = "check the management path to the device (link, route, ACL)"
_LINE = re.compile(r"^(?P<device>[a-z0-9][a-z0-9-]*)\s+(?P<pin>sha256:[0-9a-f]{64})\s*$")


def pin_for(target: Target) -> str | None:
    """The device's pinned certificate digest ('sha256:<hex>'), None when it has none."""
    https = target.device.https
    if https is not None and https.certificate is not None:
        return https.certificate
    if target.tls_pins is None:
        return None
    try:
        text = Path(target.tls_pins).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m is not None and m.group("device") == target.name:
            return m.group("pin")
    return None


def fingerprint(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def context() -> ssl.SSLContext:
    """TLS 1.2 or newer; the certificate is checked by its pin (`connect`), not by a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection whose every TCP + TLS handshake checks the server certificate
    against the device's pin before a request is written: the first one (`connect`) and any
    that http.client makes by itself when the device closed a kept-alive connection (its
    `auto_open`: without this check, a request after the device's close would go over a
    certificate nobody looked at, with its credential)."""

    def __init__(self, target: Target, port: int, timeout: float, operation: str) -> None:
        super().__init__(target.address, port, timeout=timeout, context=context())
        self.target = target
        self.operation = operation
        self.handshakes = 0  # TCP + TLS handshakes made (each a few round trips)

    def connect(self) -> None:
        target, operation = self.target, self.operation
        https = target.device.https
        port = https.port if https is not None else 443
        where = f"{target.address} (HTTPS port {port})"
        limit = self.timeout if isinstance(self.timeout, int | float) else 0.0
        self.handshakes += 1
        try:
            super().connect()
        except TimeoutError as exc:  # as the SSH transport says it: the address, the bound, a hint
            self.close()
            raise DeviceTimeout(
                target.name, operation, f"no answer from {where} within {limit:g} s", hint=_HINT
            ) from exc
        except OSError as exc:
            self.close()
            if exc.errno == errno.EHOSTUNREACH:  # nothing answered ARP: as silent as a timeout
                raise DeviceTimeout(
                    target.name,
                    operation,
                    f"no answer from {where}: no route to host (the device or its management "
                    "link is down)",
                    hint=_HINT,
                ) from exc
            if isinstance(exc, ConnectionRefusedError):
                raise ConnectError(target.name, operation, f"{where} refused") from exc
            raise ConnectError(target.name, operation, f"{where}: {exc}") from exc
        expected = pin_for(target)
        sock = self.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        seen = fingerprint(der) if der else "no certificate"
        if expected is None or seen != expected:
            self.close()
            raise CertificateError(target.name, operation, expected=expected, seen=seen)


def connect(target: Target, timeout: float, operation: str = "connect") -> PinnedHTTPSConnection:
    """An HTTPS connection to the device's management API, its certificate checked against the
    pin (again on every re-connection: `PinnedHTTPSConnection`). Raises CertificateError
    (nothing sent) on no pin or another certificate, ConnectError / DeviceTimeout when the
    device does not answer."""
    https = target.device.https
    port = https.port if https is not None else 443
    conn = PinnedHTTPSConnection(target, port, timeout, operation)
    conn.connect()
    return conn


__all__ = ["PinnedHTTPSConnection", "connect", "context", "fingerprint", "pin_for"]

"""Mutual TLS with pinned certificates, shared by the probe channel (`agent.probe.channel`) and
the daemon's API over TCP (`agent.api.tcp`): TLS 1.2 or newer (the standard library's `ssl`),
each side checking the other's certificate against a pin ('sha256:' and the hex SHA-256 of its
DER encoding), never a CA's word.

- A server accepts only the client certificates it was given as files: each is loaded as a trust
  anchor of its own (partial chains allowed: a leaf is its own anchor), so OpenSSL refuses any
  other certificate, and any client that cannot prove it holds the key, during the handshake;
  the server then compares the pin of the certificate shown with the ones it knows (the last
  word, and the identity).
- A client checks the server's certificate against the pin it was given right after the
  handshake and before a single byte is sent (`PinnedContext`, or `peer_pin` by hand).

Also makes a new identity: a self-signed ECDSA P-256 certificate and its key (`cryptography`),
the key written 0600. Every failure raises the error type the caller names (a `CordonError`
subclass), with the file and the cause, never key material. Imports the standard library,
`cryptography` and `agent.errors`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.errors import CordonError

# cryptography's x509 and key modules load in the two functions that read or make a certificate
# (`certificate_pin`, `new_identity`): every `--local` command imports this module through the
# probe channel and most never touch a certificate (~15-27 ms of a cold start, #18)

__all__ = [
    "PIN_RE",
    "PinMismatch",
    "PinnedContext",
    "certificate_pin",
    "client_context",
    "fingerprint",
    "new_identity",
    "peer_pin",
    "pinned_client_context",
    "server_context",
]

PIN_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class PinMismatch(ssl.SSLError):
    """The server showed a certificate other than the pinned one (raised by `PinnedContext`
    before anything is sent; an `ssl.SSLError`, so HTTP clients report it as a TLS failure)."""

    def __init__(self, seen: str | None, pinned: str) -> None:
        super().__init__(f"the server showed certificate {seen or 'none'}, not the pinned {pinned}")
        self.seen = seen
        self.pinned = pinned


def fingerprint(der: bytes) -> str:
    """The pin of a certificate: 'sha256:' and the hex SHA-256 of its DER encoding."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def certificate_pin(path: Path, *, error: type[CordonError]) -> str:
    """The pin of the PEM certificate in `path` (`error` if it cannot be read)."""
    from cryptography import x509  # noqa: PLC0415 - on use (#18)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise error(f"cannot read certificate {path}: {exc}") from None
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def peer_pin(sock: ssl.SSLSocket | ssl.SSLObject) -> str | None:
    """The pin of the certificate the other side showed (None: it showed none)."""
    der = sock.getpeercert(binary_form=True)
    return fingerprint(der) if der else None


def _base(purpose: ssl._SSLMethod) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def server_context(
    cert: Path, key: Path, trusted: Iterable[Path], *, error: type[CordonError], what: str
) -> ssl.SSLContext:
    """A server's side: its certificate and key, and the client certificates it accepts (files;
    at least one). A client without one of them fails the handshake."""
    files = list(trusted)
    if not files:
        raise error(f"{what}: no client certificate is trusted: every client would be refused")
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf is its own anchor
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise error(
            f"{what}: cannot load the TLS identity ({cert}, key {key}): {_why(exc)}"
        ) from None
    for path in files:
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise error(f"{what}: cannot load the client certificate {path}: {_why(exc)}") from None
    return ctx


def client_context(cert: Path, key: Path, *, error: type[CordonError], what: str) -> ssl.SSLContext:
    """A client's side: its certificate and key; the server's certificate is NOT checked here:
    the caller compares `peer_pin` with its pin after the handshake, before sending anything
    (or uses `pinned_client_context`, which does)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise error(
            f"{what}: cannot load the TLS identity ({cert}, key {key}): {_why(exc)}"
        ) from None
    return ctx


class PinnedContext(ssl.SSLContext):
    """A client context whose every connection is checked against `pin` as soon as the handshake
    ends, inside `wrap_socket` (so before an HTTP client writes its request): a certificate other
    than the pinned one closes the connection and raises `PinMismatch`."""

    pin: str = ""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        tls = super().wrap_socket(sock, *args, **kwargs)
        if kwargs.get("do_handshake_on_connect", True) is False:
            tls.do_handshake()
        seen = peer_pin(tls)
        if seen != self.pin:
            tls.close()
            raise PinMismatch(seen, self.pin)
        return tls


def pinned_client_context(
    cert: Path | None, key: Path | None, pin: str, *, error: type[CordonError], what: str
) -> PinnedContext:
    """A client context for the server pinned by `pin`, presenting `cert`/`key` if given."""
    if not PIN_RE.match(pin):
        raise error(f"{what}: {pin[:80]!r} is not a pin: 'sha256:' and 64 lower-case hex digits")
    ctx = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.pin = pin
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin, checked in wrap_socket, replaces a CA
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise error(
                f"{what}: cannot load the client certificate ({cert}, key {key}): {_why(exc)}"
            ) from None
    return ctx


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def new_identity(
    cert_path: Path,
    key_path: Path,
    name: str,
    *,
    error: type[CordonError],
    address: str | None = None,
    replace: bool = False,
) -> str:
    """A new self-signed certificate (ECDSA P-256, CN `name`, 10 years; with `address`, that IP
    address as its subject alternative name) and its key, both written 0600 (refuses to
    overwrite unless `replace`, as the twin does at each `lab up`); returns the certificate's
    pin."""
    from cryptography import x509  # noqa: PLC0415 - on use (#18)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        # its own trust anchor: the peer loads exactly this certificate as the one it accepts
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    if address is not None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise error(f"{address!r} is not an IP address (for {cert_path})") from None
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip)]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    for path, data in (
        (key_path, pem_key),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
    ):
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise error(f"{path} already exists; not overwritten") from None
        except OSError as exc:
            raise error(f"cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))

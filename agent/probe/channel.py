"""The probe point's authenticated channel: mutual TLS (TLS 1.2 or newer, the standard library's
`ssl`) where each side pins the other's certificate, never a CA's word.

- The probe (server) accepts one client certificate only: the daemon's, given to it as a file;
  OpenSSL checks the client proved its key for that certificate (the handshake), and the probe
  then compares the SHA-256 of the certificate presented with that file's.
- The daemon (client) checks the probe's certificate against the pin of the inventory
  (`control.certificate`, or the probe id's line in the group tls_pins) before sending a byte.

Also makes a new identity (a self-signed ECDSA P-256 certificate and its key, `cryptography`,
already Cordon's dependency). Imports the standard library, `cryptography` and `agent.errors`."""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.errors import ProbeError


def fingerprint(der: bytes) -> str:
    """The pin of a certificate: 'sha256:' and the hex SHA-256 of its DER encoding."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def certificate_pin(path: Path) -> str:
    """The pin of the PEM certificate in `path`."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ProbeError(f"cannot read certificate {path}: {exc}") from None
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def peer_pin(sock: ssl.SSLSocket) -> str | None:
    der = sock.getpeercert(binary_form=True)
    return fingerprint(der) if der else None


def server_context(cert: Path, key: Path, client_cert: Path) -> ssl.SSLContext:
    """The probe's side: its certificate, and the daemon's as the only one a client may show."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=str(client_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(
            f"cannot load the probe's TLS identity ({cert}, {key}) or the daemon's "
            f"certificate ({client_cert}): {exc}"
        ) from None
    return ctx


def client_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The daemon's side: its certificate; the probe's is checked by its pin after the
    handshake (`agent.probe.client`), not by a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot load the daemon's probe identity ({cert}): {exc}") from None
    return ctx


def new_identity(cert_path: Path, key_path: Path, name: str) -> str:
    """A new self-signed certificate (ECDSA P-256, CN `name`, 10 years) and its key, both written
    0600 (refuses to overwrite); returns the certificate's pin."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        # its own trust anchor: the peer loads exactly this certificate as the one it accepts
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for path, data in (
        (key_path, pem_key),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
    ):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ProbeError(f"{path} already exists; not overwritten") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))

"""The probe point's authenticated channel: mutual TLS (TLS 1.2 or newer) where each side pins the
other's certificate, never a CA's word. The TLS itself is `agent.mtls` (shared with the daemon's
API over TCP); this module gives it the probe's words and its error (`ProbeError`).

- The probe (server) accepts one client certificate only: the daemon's, given to it as a file;
  OpenSSL checks the client proved its key for that certificate (the handshake), and the probe
  then compares the SHA-256 of the certificate presented with that file's.
- The daemon (client) checks the probe's certificate against the pin of the inventory
  (`control.certificate`, or the probe id's line in the group tls_pins) before sending a byte.

Imports `agent.mtls` and `agent.errors`."""

from __future__ import annotations

import ssl
from pathlib import Path

from agent import mtls
from agent.errors import ProbeError

fingerprint = mtls.fingerprint
peer_pin = mtls.peer_pin


def certificate_pin(path: Path) -> str:
    """The pin of the PEM certificate in `path`."""
    return mtls.certificate_pin(path, error=ProbeError)


def server_context(cert: Path, key: Path, client_cert: Path) -> ssl.SSLContext:
    """The probe's side: its certificate, and the daemon's as the only one a client may show."""
    return mtls.server_context(
        cert, key, [client_cert], error=ProbeError, what="the probe's TLS (daemon certificate)"
    )


def client_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The daemon's side: its certificate; the probe's is checked by its pin after the
    handshake (`agent.probe.client`), not by a CA."""
    return mtls.client_context(cert, key, error=ProbeError, what="the daemon's probe identity")


def new_identity(cert_path: Path, key_path: Path, name: str) -> str:
    """A new self-signed certificate and its key (`agent.mtls.new_identity`); returns its pin."""
    return mtls.new_identity(cert_path, key_path, name, error=ProbeError)

"""The daemon's API (and a crisis-cell view beyond loopback) over TCP: TLS 1.2 or newer with
client certificates, for nodes and operators on other machines, in addition to the Unix socket.

Settings (read here, validated before anything listens):
    CORDON_API_LISTEN      IP:PORT to listen on (unset: no TCP listener)
    CORDON_API_TLS_CERT    this daemon's certificate (PEM; `cordon api keygen` makes one)
    CORDON_API_TLS_KEY     file:PATH of its key (readable by the daemon's user only; never logged)
    CORDON_API_ADVERTISE   https://HOST:PORT that clients are redirected to (recorded in
                           `cordon_nodes`); default https://<CORDON_API_LISTEN>

Who may connect: the client certificates of the roles file (`certificates:`, one PEM file per
operator certificate, `agent.api.auth`), each its own trust anchor (`agent.mtls`): a client
without one of them fails the TLS handshake; the request then acts as that certificate's user,
with that user's roles (`Policy.identify_certificate`). Pins, not a CA: the same rule as the
probe channel and the devices' HTTPS (a CA would admit whoever it signs; removing a file from
the roles file and restarting revokes one certificate, no CRL needed).

A client refused during the handshake (no certificate, one not pinned, no TLS) is audited as
`tls.refused`, rate-limited (`agent.api.handshake`).

Imports aiohttp, `agent.mtls`, `agent.secrets`, `agent.settings`, `agent.api.auth`,
`agent.api.handshake`, `agent.errors`.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from agent import mtls, settings
from agent.api.auth import Policy
from agent.api.handshake import RefusalLog, TlsSite
from agent.errors import ConfigError, SecretError
from agent.secrets import check_file, ref_path

__all__ = ["ServerTls", "TcpListen", "api_listen", "host_port", "server_tls", "start_tcp"]

_LISTEN = "CORDON_API_LISTEN"


@dataclass(frozen=True)
class ServerTls:
    """This daemon's TLS identity and the client certificates it accepts."""

    context: ssl.SSLContext
    cert: Path
    pin: str  # this daemon's certificate's pin: what its clients pin (CORDON_API_PIN)


@dataclass(frozen=True)
class TcpListen:
    host: str
    port: int
    advertise: str  # https://HOST:PORT
    tls: ServerTls


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_port(value: str, var: str, hint: str) -> tuple[str, Address, int]:
    """`IP:PORT` or `[IPv6]:PORT` as (host text, address, port); `ConfigError` naming `var`."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{var}={value!r} is not HOST:PORT", hint=hint)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{var}={value!r}: {host!r} is not an IP address (names are not resolved)", hint=hint
        ) from None
    # ASCII digits only: '²'.isdigit() is true, int('²') raises
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{var}={value!r}: the port must be 1-65535", hint=hint)
    return str(addr), addr, int(port_text)


def server_tls(policy: Policy) -> ServerTls | None:
    """The daemon's TLS identity (CORDON_API_TLS_CERT and _KEY), trusting the roles file's client
    certificates; None when no certificate is set. Any problem: `ConfigError` (exit 2)."""
    cfg = settings.current()
    if cfg.api_tls_cert is None and cfg.api_tls_key is None:
        return None
    hint = (
        "set CORDON_API_TLS_CERT to the daemon's certificate and CORDON_API_TLS_KEY to "
        "file:PATH of its key (`cordon api keygen CERT KEY` makes both)"
    )
    if cfg.api_tls_cert is None or cfg.api_tls_key is None:
        missing = "CORDON_API_TLS_CERT" if cfg.api_tls_cert is None else "CORDON_API_TLS_KEY"
        raise ConfigError(f"{missing} is not set: TLS needs the certificate and its key", hint=hint)
    if not cfg.api_tls_key.startswith("file:") or len(cfg.api_tls_key) == 5:
        raise ConfigError(
            "CORDON_API_TLS_KEY must be a file reference, file:PATH (TLS loads the key from a "
            "file; the value itself is never shown)",
            hint=hint,
        )
    key = ref_path(cfg.api_tls_key, Path.cwd())
    check_file(key, what="the daemon's API TLS key (CORDON_API_TLS_KEY)")
    if not policy.certificate_files:
        raise SecretError(
            f"the API over TLS would admit nobody: {policy.source} lists no client certificate",
            hint="list each operator's certificate under `certificates:` in the roles file",
        )
    what = "the daemon's API over TLS"
    ctx = mtls.server_context(
        cfg.api_tls_cert, key, policy.certificate_files, error=ConfigError, what=what
    )
    pin = mtls.certificate_pin(cfg.api_tls_cert, error=ConfigError)
    return ServerTls(ctx, cfg.api_tls_cert, pin)


def api_listen(policy: Policy) -> TcpListen | None:
    """CORDON_API_LISTEN and its TLS, validated; None when unset (the Unix socket only)."""
    cfg = settings.current()
    if not cfg.api_listen:
        if cfg.api_advertise:  # it names where clients reach this node's TCP listener: none
            raise ConfigError(
                "CORDON_API_ADVERTISE is set but CORDON_API_LISTEN is not: there is no API "
                "over TCP to advertise (other nodes' clients would be sent nowhere)",
                hint=f"set {_LISTEN}=IP:PORT (with CORDON_API_TLS_CERT and _KEY) to serve the "
                "API over TCP, or unset CORDON_API_ADVERTISE",
            )
        return None
    hint = f"set {_LISTEN} to an address of this host and a port (10.0.0.5:8600), or unset it"
    host, addr, port = host_port(cfg.api_listen, _LISTEN, hint)
    tls = server_tls(policy)
    if tls is None:
        raise ConfigError(
            f"{_LISTEN} is set but CORDON_API_TLS_CERT and CORDON_API_TLS_KEY are not: the API "
            "is never served over TCP without TLS and client certificates",
            hint="`cordon api keygen CERT KEY` makes the daemon's certificate and key",
        )
    if cfg.api_advertise:
        advertise = _https_url(cfg.api_advertise, "CORDON_API_ADVERTISE")
    elif addr.is_unspecified:
        raise ConfigError(
            f"{_LISTEN}={cfg.api_listen}: listening on every address, the daemon cannot tell "
            "which one other nodes' clients should use",
            hint="set CORDON_API_ADVERTISE=https://HOST:PORT (this node's name or address)",
        )
    else:
        advertise = f"https://{f'[{host}]' if ':' in host else host}:{port}"
    return TcpListen(host, port, advertise, tls)


def _https_url(value: str, var: str) -> str:
    try:
        parts = urlsplit(value)  # an unclosed [ of an IPv6 host raises here
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.scheme != "https" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"{var}={value[:200]!r} is not https://HOST:PORT",
            hint=f"set {var} to https://HOST:PORT (no path), or unset it",
        )
    return value.rstrip("/")


async def start_tcp(
    app: web.Application, host: str, port: int, context: ssl.SSLContext, *, var: str
) -> web.AppRunner:
    """Serve `app` on host:port over TLS with `context`, each refused handshake audited
    (`agent.api.handshake`, rate-limited); `await runner.cleanup()` stops it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await TlsSite(runner, host, port, context, RefusalLog(f"api {host}:{port}")).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({var}): {exc.strerror}",
            hint=f"choose an address of this host and a free port in {var}",
        ) from None
    except BaseException:
        await runner.cleanup()
        raise
    return runner

"""Talking to the daemon, or to the same API served inside this process (--local).

`connect` yields a `Conn`: the typed client of the daemon's socket, or of a daemon's API over TLS
when `CORDON_API_URL` is set (with `CORDON_API_PIN`, the client certificate `CORDON_API_CLIENT_CERT`
and its key `CORDON_API_CLIENT_KEY=file:PATH`; the certificate also lets the client follow a
standby's redirect to the active node); what the client noted (a redirect followed, an answer
from a standby) is said on stderr. With --local, a typed client of the same API answered in
this process (`agent.api.local`: the API's rules over the service, no socket, no HTTP), over the
same journal, authorized (roles file, OS user or --token) and audited exactly as an order sent
to the daemon.

Imports the typed client and `agent.cli.options`; the HTTP client (httpx) only for the daemon;
the API's rules, the service, the daemon's lock, the audit pipeline and the flow sources (the
twin's prober among them) only for --local (a plain `cordon status` stays light).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent import settings
from agent.api.client import TypedClient
from agent.cli import loading
from agent.cli.options import Opts
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.service.service import Service

__all__ = ["Conn", "connect"]


@dataclass
class Conn:
    client: TypedClient
    service: Service | None = None  # --local: the engine in this process


@contextlib.contextmanager
def connect(o: Opts, *, changes: bool = False, drives: bool = False) -> Iterator[Conn]:
    """The daemon's client; with --local, a client of the same API served in this process.

    `changes`: the command changes something, so --local is refused while a daemon owns the
    state directory (the two would drive the same runs). `drives`: this process will drive a
    run (--local), so it gets the twin's flow probes when the twin is up.
    """
    cfg = settings.current()
    if cfg.api_pin and not cfg.api_url:  # it would be ignored: the socket has no certificate
        raise ConfigError(
            "CORDON_API_PIN is set but CORDON_API_URL is not: the pin is that of the daemon's "
            "certificate at CORDON_API_URL; without it the command goes to the daemon's socket "
            "and the pin would be ignored",
            hint="set CORDON_API_URL=https://HOST:PORT of the daemon with this certificate, or "
            "unset CORDON_API_PIN",
        )
    if not o.local:
        from agent.api.client import Client  # noqa: PLC0415 - httpx: not for --local (#18)

        cert, key = _client_identity()
        if cfg.api_url:
            daemon = Client(url=cfg.api_url, pin=cfg.api_pin, cert=cert, key=key, token=o.token)
        else:
            daemon = Client(o.socket_path(), cert=cert, key=key, token=o.token)
        with daemon as client:
            try:
                yield Conn(TypedClient(client))
            finally:
                for note in client.notes:
                    sys.stderr.write(f"cordon: {note}\n")
        return
    with loading():
        from agent import audit  # noqa: PLC0415 - --local only
        from agent.api.auth import (  # noqa: PLC0415
            Policy,
            check_local_roles,
            default_roles_path,
        )
        from agent.api.local import LocalClient  # noqa: PLC0415
        from agent.daemon.lock import state_lock  # noqa: PLC0415
        from agent.inventory import default_path  # noqa: PLC0415
        from agent.service.service import local  # noqa: PLC0415

    audit.configure(console=False)
    check_local_roles(o.roles or default_roles_path(), uid=os.geteuid(), state_dir=o.state_dir)
    policy = Policy.load(o.roles)
    with contextlib.ExitStack() as stack:
        if changes:
            stack.enter_context(state_lock(o.state_dir, shared=True))
        service = stack.enter_context(local(o.inventory or default_path(), o.state_dir))
        if drives:
            from agent.lab.verifier import twin_source  # noqa: PLC0415
            from agent.verify.sources import production_sources  # noqa: PLC0415

            twin = twin_source(service.inv, deferred=True)  # built on a first flow check
            service.sources = (
                *production_sources(service.inv, service.pool),
                *([twin] if twin is not None else []),
            )
        yield Conn(TypedClient(LocalClient(service, policy, token=o.token)), service)


def _client_identity() -> tuple[Path | None, Path | None]:
    """The CLI's client certificate and its key's file (`file:PATH`, checked like any secret
    file), or (None, None)."""
    cfg = settings.current()
    if cfg.api_client_cert is None and cfg.api_client_key is None:
        return None, None
    if cfg.api_client_cert is None or cfg.api_client_key is None:
        missing = "CORDON_API_CLIENT_" + ("CERT" if cfg.api_client_cert is None else "KEY")
        raise ConfigError(
            f"{missing} is not set: a client certificate needs both the certificate and its key",
            hint="set CORDON_API_CLIENT_CERT=PATH and CORDON_API_CLIENT_KEY=file:PATH",
        )
    ref = cfg.api_client_key
    if not ref.startswith("file:") or len(ref) == 5:
        raise ConfigError(
            "CORDON_API_CLIENT_KEY must be a file reference, file:PATH (its value is not shown)",
            hint="set CORDON_API_CLIENT_KEY=file:PATH (a file readable by you only)",
        )
    from agent.secrets import check_file, ref_path  # noqa: PLC0415 - TLS only

    key = ref_path(ref, Path.cwd())
    check_file(key, what="your API client key (CORDON_API_CLIENT_KEY)")
    return cfg.api_client_cert, key

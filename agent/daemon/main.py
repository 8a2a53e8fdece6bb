"""`cordon daemon`: one long-running process per state directory, wiring the engine (`Service`,
with its APScheduler jobs) to the API on a Unix socket, and over TCP with TLS and client
certificates when `CORDON_API_LISTEN` is set (`agent.api.tcp`), until SIGTERM or SIGINT.
Sharing a PostgreSQL state with other daemons, it records its API address in `cordon_nodes`
(`agent.api.nodes`), where a standby finds the active node's to redirect an order.

The composition root: imports the service (`agent.service.service`), the API (`agent.api.http`)
and its roles policy (`agent.api.auth`), the crisis cell's read-only view (`agent.view`, served
on TCP when `CORDON_VIEW_LISTEN` is set: loopback in plain HTTP, beyond it over the API's TLS),
the audit trail and the drivers' open-file limit (raised at start), and chooses the engine's
flow sources (the production ones, `agent.verify.sources`, and the twin's prober,
`agent.lab.verifier`, when a twin of the inventory is up): with the CLI, the only module that
imports the twin. Nothing here decides or renders; nothing below the daemon imports it.

In the state directory, besides the journal and the job store: `daemon.lock` (held exclusively
while a daemon runs) and `daemon.json` (its pid, socket...), both `agent.daemon.lock`'s, which a
`--local` command uses without importing this module (#18).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, audit
from agent.api.auth import Policy
from agent.api.nodes import Directory
from agent.daemon.lock import LOCK_FILE, STATE_FILE, read_state, state_lock
from agent.drivers.limits import raise_nofile
from agent.errors import ConfigError
from agent.service.service import DAEMON_ACTOR, Service
from agent.settings import current as current_settings
from agent.verify.sources import production_sources

if TYPE_CHECKING:  # aiohttp: imported when the daemon serves, never by `--local` (#18)
    from agent.api.tcp import ServerTls, TcpListen

__all__ = ["LOCK_FILE", "STATE_FILE", "DaemonConfig", "read_state", "run", "state_lock"]


@dataclass(frozen=True)
class DaemonConfig:
    inventory: Path
    state_dir: Path
    socket: Path
    roles: Path
    poll_interval: float = 30.0  # seconds between drift polls; 0 turns polling off
    group: str | None = None  # the group whose members may connect to the socket


@dataclass(frozen=True)
class _Tcp:
    tls: ServerTls | None = None  # the daemon's certificate (the API over TCP, a TLS view)
    api: TcpListen | None = None  # CORDON_API_LISTEN


@dataclass
class _Life:
    started: bool = False
    signal: str | None = None


def run(cfg: DaemonConfig) -> None:
    """Serve until SIGTERM/SIGINT; the socket, the lock and daemon.json are gone afterwards."""
    from agent.api.tcp import api_listen, server_tls  # noqa: PLC0415 - aiohttp: not `--local`
    from agent.lab.verifier import twin_source  # noqa: PLC0415 - the twin's, if one is up

    audit.configure()
    raise_nofile(_say)  # warm sessions to every device: soft open-file limit up to the hard one
    policy = Policy.load(cfg.roles)
    tls = server_tls(policy)  # CORDON_API_TLS_CERT/_KEY: refused now if unusable
    tcp = api_listen(policy)  # CORDON_API_LISTEN: refused now if bad, or without TLS
    view = None  # the view's modules (jinja2, its templates) only in a daemon serving it (#16)
    if current_settings().view_listen:
        from agent.view import listen_address  # noqa: PLC0415 - the daemon only, not `--local`

        view = listen_address(tls=tls is not None)  # CORDON_VIEW_LISTEN: loopback, or with TLS
    _tls_served(tls, tcp, view)  # a certificate that nothing serves: refused, not ignored
    with state_lock(cfg.state_dir, shared=False):
        service = Service(cfg.inventory, cfg.state_dir, poll_interval=cfg.poll_interval)
        twin = twin_source(service.inv)
        service.sources = (
            *production_sources(service.inv, service.pool),
            *([twin] if twin is not None else []),
        )
        service.announce = _say  # active/standby: the role changes, said on the daemon's log
        life = _Life()
        try:
            asyncio.run(_serve(service, policy, cfg, life, view, _Tcp(tls, tcp)))
        finally:
            service.stop()
            if life.started:
                with audit.bind(actor=DAEMON_ACTOR):
                    audit.get_logger().info(
                        "daemon.stopped",
                        pid=os.getpid(),
                        socket=str(cfg.socket),
                        signal=life.signal,
                        outcome="stopped" if life.signal else "failed",
                    )
                _say(f"stopped ({life.signal or 'on an error'})")


def _tls_served(tls: ServerTls | None, api: TcpListen | None, view: tuple[str, int] | None) -> None:
    """The daemon's certificate (CORDON_API_TLS_CERT/_KEY) serves the API over TCP or a view
    beyond loopback; set with neither, it would be validated and then never used (and its pin
    logged as if it served): `ConfigError`."""
    from agent.view.server import is_loopback  # noqa: PLC0415 - with the view (#18)

    if tls is None or api is not None or (view is not None and not is_loopback(view[0])):
        return
    view_is = (
        "CORDON_VIEW_LISTEN is unset"
        if view is None
        else f"the view on {view[0]} (CORDON_VIEW_LISTEN) is loopback, in plain HTTP"
    )
    raise ConfigError(
        "CORDON_API_TLS_CERT and CORDON_API_TLS_KEY are set but nothing would be served over "
        f"TLS: CORDON_API_LISTEN is unset and {view_is}",
        hint="set CORDON_API_LISTEN=IP:PORT to serve the API over TLS (or CORDON_VIEW_LISTEN "
        "beyond loopback), or unset CORDON_API_TLS_CERT and CORDON_API_TLS_KEY",
    )


async def _serve(  # noqa: PLR0915 - two more for the lazy imports of aiohttp (#18)
    service: Service,
    policy: Policy,
    cfg: DaemonConfig,
    life: _Life,
    view: tuple[str, int] | None = None,
    tcp: _Tcp | None = None,
) -> None:
    from agent.api.http import make_app, start  # noqa: PLC0415 - aiohttp: not `--local` (#18)
    from agent.api.tcp import start_tcp  # noqa: PLC0415

    tcp = tcp or _Tcp()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop, life)
    url = current_settings().state_url
    directory = Directory(url, service.node_id) if url is not None else None
    runner = await start(
        make_app(service, policy, directory=directory), cfg.socket, group=cfg.group
    )
    state_file = cfg.state_dir / STATE_FILE
    view_runner = None
    tcp_runner = None
    try:
        if tcp.api is not None:  # the API over TCP: TLS, client certificates
            tcp_app = make_app(service, policy, directory=directory)
            tcp_runner = await start_tcp(
                tcp_app, tcp.api.host, tcp.api.port, tcp.api.tls.context, var="CORDON_API_LISTEN"
            )
        if directory is not None:  # where other nodes' clients reach this one
            api = tcp.api
            directory.record(api.advertise if api else None, api.tls.pin if api else None)
        if view is not None:  # the crisis cell's read-only page: loopback, or over TLS
            from agent.view import make_view_app, start_view  # noqa: PLC0415
            from agent.view.server import is_loopback  # noqa: PLC0415

            plain = is_loopback(view[0])
            view_app = make_view_app(service, policy, listen=view if plain else None)
            ctx = None if plain or tcp.tls is None else tcp.tls.context
            view_runner = await start_view(view_app, *view, ssl_context=ctx)
        service.start()  # after the socket: a second daemon on it was refused before any job
        life.started = True
        _write_state(state_file, cfg)
        with audit.bind(actor=DAEMON_ACTOR):
            audit.get_logger().info(
                "daemon.started",
                pid=os.getpid(),
                version=__version__,
                socket=str(cfg.socket),
                inventory=str(cfg.inventory),
                state_dir=str(cfg.state_dir),
                roles=policy.source,
                poll_interval=cfg.poll_interval,
                view=f"{view[0]}:{view[1]}" if view else None,
                api_tcp=tcp.api.advertise if tcp.api else None,
                api_pin=tcp.tls.pin if tcp.tls else None,
                open_runs=service.journal.open_runs(),
                node=service.node_id,
                role="active" if service.may_drive() else "standby",
                flow_sources=[s.name for s in service.sources],
                outcome="listening",
            )
        _say(f"listening on {cfg.socket} (pid {os.getpid()}, state {cfg.state_dir})")
        if tcp.api is not None:
            _say(
                f"API over TLS on {_host(tcp.api.host)}:{tcp.api.port}, advertised as "
                f"{tcp.api.advertise}, certificate {tcp.api.tls.pin}"
            )
        if view is not None:
            scheme = "http" if is_loopback(view[0]) else "https"
            _say(f"crisis-cell view on {scheme}://{_host(view[0])}:{view[1]}/view (read-only)")
        await stop.wait()
    finally:
        if view_runner is not None:
            await view_runner.cleanup()
        if tcp_runner is not None:
            await tcp_runner.cleanup()
        if directory is not None:
            directory.close()
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            if cfg.socket.is_socket():
                cfg.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _on_signal(sig: signal.Signals, stop: asyncio.Event, life: _Life) -> None:
    life.signal = life.signal or sig.name
    stop.set()


def _write_state(path: Path, cfg: DaemonConfig) -> None:
    body = {
        "pid": os.getpid(),
        "socket": str(cfg.socket.absolute()),
        "inventory": str(cfg.inventory.absolute()),
        "state_dir": str(cfg.state_dir.absolute()),
        "started_at": time.time(),
        "version": __version__,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.chmod(0o640)
    tmp.replace(path)


def _say(text: str) -> None:
    """One plain line for the service manager's log (the audit trail has the details)."""
    sys.stderr.write(f"cordon daemon: {text}\n")
    sys.stderr.flush()
